// Development environment. The topology is generated from the agent configs: regenerate
// infra/topology.parameters.json with `aos topology --bicep-params infra/topology.parameters.json`
// (tests/infra fails when it drifts).
using './main.bicep'

param namePrefix = 'aos'
param environmentName = 'dev'
param durableBackend = 'DurableTaskScheduler'
param durableTaskSchedulerSku = 'Consumption'
param taskHubNamePrefix = 'aos'
param serviceBusSku = 'Standard'
param maximumInstanceCount = 40
param instanceMemoryMB = 2048
param deployMachineLearning = false
param inferenceEndpointUrl = ''
// Endpoint configs (agent_configs/endpoints) read their URLs from these settings; keys never go
// here (they live in Key Vault). Set azureOpenAiAccountId to let the realm sign in to the account.
param modelEndpointSettings = {
  AZURE_OPENAI_BASE_URL: ''
  AZUREML_LORA_URL: ''
  FOUNDRY_BASE_URL: ''
}
param azureOpenAiAccountId = ''
param topology = loadJsonContent('topology.parameters.json').parameters.topology.value
param tags = {
  owner: 'platform-team'
}
