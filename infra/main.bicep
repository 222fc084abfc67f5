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

@description('Blob container where new or changed agent configs are dropped (AOS_CONFIG_CONTAINER); every app instance mirrors it.')
param agentConfigsContainerName string = 'agent-configs'

@description('Durable Functions backend: the managed Durable Task Scheduler, or Azure Storage (queues and tables in the shared account).')
@allowed([
  'DurableTaskScheduler'
  'AzureStorage'
])
param durableBackend string = 'DurableTaskScheduler'

@description('Each app gets its own Durable task hub, <prefix><role> (aoskernel, aosrealm, aosmcp): apps sharing a hub would take each other\'s orchestration work items. host.json reads AOS_TASK_HUB.')
@minLength(3)
@maxLength(30)
param taskHubNamePrefix string = 'aos'

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

@description('Default OpenAI-compatible endpoint for agents that name none (AOS_INFERENCE_ENDPOINT; keyless or with a Key Vault reference). Empty: the labelled offline provider.')
param inferenceEndpointUrl string = ''

@description('Model or deployment name sent to the default endpoint when an agent names no adapter (AOS_INFERENCE_MODEL).')
param inferenceModel string = ''

@description('App settings that inference endpoint configs read as ${env:NAME}: base URLs and deployment names, e.g. { AZURE_OPENAI_BASE_URL: \'https://<resource>.openai.azure.com/openai/v1/\' }. Never a key: keys live in Key Vault and configs name them as ${secret:NAME}.')
param modelEndpointSettings object = {}

@description('Resource id of an Azure OpenAI or AI Foundry (Cognitive Services) account the agents call with Entra ID; the realm identity gets Cognitive Services OpenAI User on it. Empty: no assignment.')
param azureOpenAiAccountId string = ''

@description('Role the realm identity gets on the Azure ML workspace (deployMachineLearning) to call its online endpoints with Entra ID. Default: AzureML Data Scientist; a custom role holding only Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action is narrower.')
param machineLearningScoringRoleId string = 'f6c7c914-8db3-469d-8ca1-694a8f32e121'

@description('Longest an MCP tool call may take, server start-up included (hh:mm:ss): the mcp app renews a request\'s Service Bus lock and lets its function run this long. MCP server configs allow start-up up to 600 s and calls up to 3600 s.')
param toolCallMaxDuration string = '01:15:00'

@description('Days the realm keeps the Durable history of a finished turn, command or schedule (AOS_HISTORY_RETENTION_DAYS; purged hourly, the archive record and the agent state stay). Approvals past their deadline and the tool-call claims of the mcp app go after the same time. 0 keeps every history. Keep it longer than any publisher may re-send a message id: a re-sent event whose turn was purged runs again.')
param historyRetentionDays string = '7'

@description('Topics each app publishes to (Azure Service Bus Data Sender is granted on exactly these).')
param sendTopicsByRole object = {
  kernel: [
    'agent-events'
    // workflow tool steps ask the MCP gateway
    'mcp-requests'
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
  workflows: 'kernel'
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
var realmIndex = indexOf(appRoles, 'realm')
var taskHubs = toObject(appRoles, role => role, role => '${taskHubNamePrefix}${role}')
// The hubs each identity works in: its own, and for the kernel also the realm's, where it raises
// MCP tool answers in waiting turns (a durable client bound to %AOS_REALM_TASK_HUB%).
var taskHubsByRole = {
  kernel: [
    taskHubs.kernel
    taskHubs.realm
  ]
  realm: [
    taskHubs.realm
  ]
  mcp: [
    taskHubs.mcp
  ]
}
// Tables and containers the code writes (tests/infra checks this list against the code). The
// adapters would create them on first use; declaring them makes the account complete and reviewable.
var dataTables = [
  'agents'
  'approvals'
  'audit'
  'auditchains'
  'configregister'
  'deadletters'
  'inferencecache'
  'quotas'
  'ratelimits'
  'toolcalls'
  'turns'
  'usage'
  'workflowruns'
]
var dataContainers = [
  'audit-anchors'
  'deadletters'
  'toolcalls'
  'turns'
]
var topics = topology.topics
// The topology flattened for the Service Bus module. Lock durations are whole seconds in the
// topology (kernel/topology.py explains each); Service Bus documents them as PT1M, PT5M.
var subscriptions = flatten(map(topics, topic => map(topic.subscriptions, sub => {
  topic: topic.name
  name: sub.name
  maxDeliveryCount: sub.max_delivery_count
  lockDuration: ((sub.lock_duration_seconds % 60) == 0) ? 'PT${sub.lock_duration_seconds / 60}M' : 'PT${sub.lock_duration_seconds}S'
  hasRules: !empty(sub.rules)
})))
var rules = flatten(map(topics, topic => flatten(map(topic.subscriptions, sub => map(sub.rules, rule => {
  topic: topic.name
  subscription: sub.name
  name: rule.name
  sql: rule.sql
})))))
// Settings only one app needs. The mcp app's gateway holds a request for a whole tool call.
var roleSettings = {
  kernel: {}
  realm: {
    AOS_HISTORY_RETENTION_DAYS: historyRetentionDays
  }
  mcp: {
    AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration: toolCallMaxDuration
    AzureFunctionsJobHost__functionTimeout: toolCallMaxDuration
    AOS_HISTORY_RETENTION_DAYS: historyRetentionDays
  }
}
var openAiAccountParts = split(empty(azureOpenAiAccountId) ? '/subscriptions/${subscription().subscriptionId}/resourceGroups/${resourceGroup().name}/providers/Microsoft.CognitiveServices/accounts/none' : azureOpenAiAccountId, '/')
var machineLearningWorkspaceName = 'mlw-${baseName}-${take(token, 6)}'
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
    dataContainerNames: dataContainers
    tableNames: dataTables
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    tags: allTags
    name: 'sb-${baseName}-${take(token, 8)}'
    skuName: serviceBusSku
    topicNames: map(topics, topic => topic.name)
    subscriptions: subscriptions
    rules: rules
  }
}

module durableTask 'modules/durabletask.bicep' = if (useDurableTaskScheduler) {
  name: 'durabletask'
  params: {
    location: location
    tags: allTags
    schedulerName: 'dts-${baseName}-${take(token, 6)}'
    taskHubNames: [for role in appRoles: taskHubs[role]]
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
    name: machineLearningWorkspaceName
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
    taskHubNames: useDurableTaskScheduler ? taskHubsByRole[role] : []
  }
}]

// Model endpoints, for the realm identity only (the realm's activities make every model call).
module openAiAccess 'modules/openai-access.bicep' = if (!empty(azureOpenAiAccountId)) {
  name: 'openai-access'
  scope: resourceGroup(openAiAccountParts[2], openAiAccountParts[4])
  params: {
    accountName: last(openAiAccountParts)
    principalId: identities[realmIndex].properties.principalId
  }
}

module machineLearningAccess 'modules/ml-access.bicep' = if (deployMachineLearning) {
  name: 'ml-access'
  params: {
    workspaceName: machineLearningWorkspaceName
    principalId: identities[realmIndex].properties.principalId
    roleDefinitionId: machineLearningScoringRoleId
  }
  dependsOn: [
    machineLearning
  ]
}

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
      AOS_TASK_HUB: taskHubs[role]
      // The kernel raises MCP tool answers in the realm app's turns, in the realm's task hub.
      AOS_REALM_TASK_HUB: taskHubs.realm
      AOS_STORAGE: 'azure'
      AOS_MESSAGING: 'azure'
      AOS_KEY_VAULT_URL: keyVault.outputs.uri
      AOS_INFERENCE_ENDPOINT: inferenceEndpointUrl
      AOS_INFERENCE_MODEL: inferenceModel
      // Configs dropped into this container are mirrored by every instance into its state folder
      // (polled: kernel/config/drop.py, and the realm's five-minute config sync timer).
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
    }, roleSettings[role], modelEndpointSettings, useDurableTaskScheduler ? {
      // host.json keeps the Azure Storage default; these settings switch the backend without editing it.
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
      // Identity-based: an endpoint and a client id, no key. The hub comes from AOS_TASK_HUB.
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
output taskHubNames object = taskHubs
output machineLearningWorkspaceName string = deployMachineLearning ? machineLearningWorkspaceName : ''
