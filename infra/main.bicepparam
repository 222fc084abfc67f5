// Development environment. The topology is generated from the agent configs: regenerate
// infra/topology.parameters.json with `aos topology` (tests/infra fails when it drifts).
using './main.bicep'

param namePrefix = 'aos'
param environmentName = 'dev'
param durableBackend = 'DurableTaskScheduler'
param durableTaskSchedulerSku = 'Consumption'
param serviceBusSku = 'Standard'
param maximumInstanceCount = 40
param instanceMemoryMB = 2048
param deployMachineLearning = false
param inferenceEndpointUrl = ''
param topology = loadJsonContent('topology.parameters.json').parameters.topology.value
param tags = {
  owner: 'platform-team'
}
