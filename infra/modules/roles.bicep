// Least-privilege data-plane role assignments for one app's managed identity.
//   storage       Blob Data Owner (host storage and the Flex deployment container need it),
//                 Table Data Contributor (turns, audit), Queue Data Contributor only with the
//                 Azure Storage Durable backend (its control and work-item queues)
//   Service Bus   Data Sender on the topics the app publishes to, Data Receiver on the topics it
//                 has subscriptions on (topic scope, never the namespace)
//   Key Vault     Secrets User (read secret values; cannot list or write)
//   Durable Task  Data Contributor on the task hubs the app works in, never the scheduler: its
//                 own, and for the kernel the realm's too (it raises MCP answers in the realm's
//                 turns). With the Azure Storage backend the hubs live in the storage account,
//                 which the queue, table and blob roles above already cover.
// Model endpoints (Cognitive Services OpenAI User, the ML scoring role) are granted to the realm
// identity only, in openai-access.bicep and ml-access.bicep.
//   App Insights  Monitoring Metrics Publisher (Entra ID authenticated telemetry ingestion)

param principalId string
param storageAccountName string
param serviceBusNamespaceName string
param sendTopics array
param receiveTopics array
param keyVaultName string
param appInsightsName string
param useDurableTaskScheduler bool
param schedulerName string
@description('Task hubs (names) the identity may use; empty with the Azure Storage backend.')
param taskHubNames array

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roleIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  durableTaskDataContributor: '0ad04412-c4d5-4796-b79c-f76d14c8d402'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

resource sendTopicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = [for topic in sendTopics: {
  parent: namespace
  name: topic
}]

resource receiveTopicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' existing = [for topic in receiveTopics: {
  parent: namespace
  name: topic
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource taskHubs 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' existing = [for hub in taskHubNames: {
  name: '${schedulerName}/${hub}'
}]

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!useDurableTaskScheduler) {
  name: guid(storage.id, principalId, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
  }
}

resource busSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (topic, i) in sendTopics: {
  name: guid(sendTopicResources[i].id, principalId, roleIds.serviceBusDataSender)
  scope: sendTopicResources[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
  }
}]

resource busReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (topic, i) in receiveTopics: {
  name: guid(receiveTopicResources[i].id, principalId, roleIds.serviceBusDataReceiver)
  scope: receiveTopicResources[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
  }
}]

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
  }
}

resource durableTaskContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (hub, i) in taskHubNames: {
  name: guid(taskHubs[i].id, principalId, roleIds.durableTaskDataContributor)
  scope: taskHubs[i]
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.durableTaskDataContributor)
  }
}]
