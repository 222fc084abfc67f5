// AOS on Azure: one deployment package, three Function Apps (kernel, realm, mcp) on Flex
// Consumption, talking only through Service Bus topics, with managed identity everywhere.
//
//   az deployment group create -g <rg> --parameters infra/main.bicepparam
//
// The messaging topology comes from the agent configs (`aos topology`); it lives in
// infra/topology.parameters.json and tests/infra fails when that file drifts from the configs.

targetScope = 'resourceGroup'

@description('Short name that prefixes every resource (lowercase letters and digits).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'aos'

@description('Environment name, used in resource names and tags (dev, test, prod).')
@maxLength(8)
param environmentName string = 'dev'

param location string = resourceGroup().location

@description('Messaging topology in the shape `aos topology` prints; see infra/topology.parameters.json.')
param topology object

@description('Blob container where new or changed agent configs are dropped.')
param agentConfigsContainerName string = 'agent-configs'

@description('Blob container that archives every turn in full.')
param turnsContainerName string = 'turns'

@description('Table that indexes archived turns.')
param turnsTableName string = 'turns'

@description('Table that holds the hash-chained audit log.')
param auditTableName string = 'audit'

@description('Durable Functions backend: the managed Durable Task Scheduler, or Azure Storage (queues and tables in the shared account).')
@allowed([
  'DurableTaskScheduler'
  'AzureStorage'
])
param durableBackend string = 'DurableTaskScheduler'

@description('Durable task hub name (AOS_TASK_HUB; host.json reads it).')
param taskHubName string = 'aos'

@allowed([
  'Consumption'
  'Dedicated'
])
param durableTaskSchedulerSku string = 'Consumption'

@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

param pythonVersion string = '3.11'

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Create an Azure Machine Learning workspace for LoRA training and online endpoints.')
param deployMachineLearning bool = false

@description('OpenAI-compatible inference endpoint (Azure OpenAI, AI Foundry, an Azure ML online endpoint). Empty: the labelled offline provider.')
param inferenceEndpointUrl string = ''

@description('Topics each app publishes to (Azure Service Bus Data Sender is granted on exactly these).')
param sendTopicsByRole object = {
  kernel: [
    'agent-events'
  ]
  realm: [
    'agent-events'
    'agent-outputs'
    'mcp-requests'
  ]
  mcp: [
    'mcp-responses'
    // the remote MCP tools (send_event, ask_agent) publish events to agents
    'agent-events'
  ]
}

@description('Which app consumes each subscription name of the topology (Data Receiver is granted on those topics).')
param subscriptionOwners object = {
  realm: 'realm'
  kernel: 'kernel'
  'mcp-gateway': 'mcp'
}

param tags object = {}

var appRoles = [
  'kernel'
  'realm'
  'mcp'
]
var token = toLower(uniqueString(subscription().id, resourceGroup().id, namePrefix, environmentName))
var baseName = '${namePrefix}-${environmentName}'
var allTags = union(tags, {
  application: 'aos'
  environment: environmentName
})
var useDurableTaskScheduler = durableBackend == 'DurableTaskScheduler'
var topics = topology.topics
var appNames = [for role in appRoles: 'func-${baseName}-${role}-${take(token, 6)}']
var deploymentContainers = [for role in appRoles: 'deploy-${role}']
var receiveTopicsByRole = toObject(appRoles, role => role, role => map(filter(topics, topic => length(filter(topic.subscriptions, sub => (subscriptionOwners[?sub.name] ?? '') == role)) > 0), topic => topic.name))

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: allTags
    logAnalyticsName: 'log-${baseName}-${take(token, 6)}'
    appInsightsName: 'appi-${baseName}-${take(token, 6)}'
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: allTags
    name: take('st${namePrefix}${environmentName}${token}', 24)
    deploymentContainerNames: deploymentContainers
    agentConfigsContainerName: agentConfigsContainerName
    turnsContainerName: turnsContainerName
    turnsTableName: turnsTableName
    auditTableName: auditTableName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    tags: allTags
    name: 'sb-${baseName}-${take(token, 8)}'
    skuName: serviceBusSku
    topics: topics
  }
}

module durableTask 'modules/durabletask.bicep' = if (useDurableTaskScheduler) {
  name: 'durabletask'
  params: {
    location: location
    tags: allTags
    schedulerName: 'dts-${baseName}-${take(token, 6)}'
    taskHubName: taskHubName
    skuName: durableTaskSchedulerSku
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: allTags
    name: take('kv-${baseName}-${token}', 24)
  }
}

module machineLearning 'modules/ml.bicep' = if (deployMachineLearning) {
  name: 'machinelearning'
  params: {
    location: location
    tags: allTags
    name: 'mlw-${baseName}-${take(token, 6)}'
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
  }
}

resource identities 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = [for role in appRoles: {
  name: 'id-${baseName}-${role}'
  location: location
  tags: allTags
}]

module roleAssignments 'modules/roles.bicep' = [for (role, i) in appRoles: {
  name: 'roles-${role}'
  params: {
    principalId: identities[i].properties.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    sendTopics: sendTopicsByRole[role]
    receiveTopics: receiveTopicsByRole[role]
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    useDurableTaskScheduler: useDurableTaskScheduler
    schedulerName: useDurableTaskScheduler ? durableTask.outputs.schedulerName : ''
    taskHubName: taskHubName
  }
}]

module functionApps 'modules/functionapp.bicep' = [for (role, i) in appRoles: {
  name: 'app-${role}'
  params: {
    location: location
    tags: union(allTags, {
      'aos-app-role': role
    })
    name: appNames[i]
    planName: 'plan-${baseName}-${role}'
    identityId: identities[i].id
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainers[i]
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: union({
      AOS_APP_ROLES: role
      AOS_TASK_HUB: taskHubName
      // The kernel raises MCP tool answers in the realm's turns (one hub today; see docs/deployment.md).
      AOS_REALM_TASK_HUB: taskHubName
      AOS_STORAGE: 'azure'
      AOS_MESSAGING: 'azure'
      AOS_KEY_VAULT_URL: keyVault.outputs.uri
      AOS_INFERENCE_ENDPOINT: inferenceEndpointUrl
      // Configs dropped into this container are mirrored by every instance into its state folder.
      AOS_CONFIG_CONTAINER: agentConfigsContainerName
      AOS_STATE_DIR: '/tmp/aos'
      AZURE_CLIENT_ID: identities[i].properties.clientId
      AzureWebJobsStorage__accountName: storage.outputs.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identities[i].properties.clientId
      ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
      ServiceBusConnection__credential: 'managedidentity'
      ServiceBusConnection__clientId: identities[i].properties.clientId
      APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.appInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identities[i].properties.clientId};Authorization=AAD'
    }, useDurableTaskScheduler ? {
      // host.json keeps the Azure Storage default; these settings switch the backend without editing it.
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
      // Identity-based: an endpoint and a client id, no key.
      DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTask.outputs.endpoint};Authentication=ManagedIdentity;ClientID=${identities[i].properties.clientId}'
    } : {})
  }
  dependsOn: [
    roleAssignments
  ]
}]

output resourceGroupName string = resourceGroup().name
output kernelAppName string = functionApps[0].outputs.name
output realmAppName string = functionApps[1].outputs.name
output mcpAppName string = functionApps[2].outputs.name
output appNames array = [for (role, i) in appRoles: functionApps[i].outputs.name]
output kernelEndpoint string = 'https://${functionApps[0].outputs.defaultHostName}/api'
output realmEndpoint string = 'https://${functionApps[1].outputs.defaultHostName}/api'
output mcpEndpoint string = 'https://${functionApps[2].outputs.defaultHostName}/api'
output storageAccountName string = storage.outputs.name
output agentConfigsContainerName string = agentConfigsContainerName
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output keyVaultUri string = keyVault.outputs.uri
output durableTaskSchedulerEndpoint string = useDurableTaskScheduler ? durableTask.outputs.endpoint : ''
output machineLearningWorkspaceName string = deployMachineLearning ? machineLearning.outputs.name : ''
