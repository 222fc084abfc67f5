// The storage account the three apps share: Functions host storage (AzureWebJobsStorage), one
// Flex Consumption deployment container per app, the agent config drop container, and the
// containers and tables the code writes (turn archive, audit, dead letters, tool calls, ...).
// Shared keys are off: every caller uses Entra ID.

param location string
param tags object
param name string
@description('Flex Consumption deployment package containers, one per app.')
param deploymentContainerNames array
param agentConfigsContainerName string
@description('Containers the code writes (main.bicep lists them).')
param dataContainerNames array
@description('Tables the code writes (main.bicep lists them).')
param tableNames array
@description('Zone-redundant by default: the turn archive and the audit log are kept for years.')
@allowed([
  'Standard_ZRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
  'Standard_LRS'
])
param skuName string = 'Standard_ZRS'
@description('The container the kernel writes audit anchors to (kernel/governance/anchor.py); one of dataContainerNames.')
param auditAnchorContainerName string = 'audit-anchors'
@description('Days each audit anchor blob stays immutable (time-based WORM retention); 0 leaves the container without a policy.')
@minValue(0)
param auditAnchorRetentionDays int = 365

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Flex Consumption supports identity-only storage (deployment container and host storage
    // both use the app's user-assigned identity), so shared key access can be switched off.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in deploymentContainerNames: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

resource agentConfigs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: agentConfigsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource dataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in dataContainerNames: {
  parent: blobService
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

// Audit anchors are never overwritten, so a time-based retention policy costs nothing and means
// nobody with table write access can rebuild an audit chain without the anchors giving it away.
// The policy is created unlocked; lock it (az storage container immutability-policy lock) once
// the retention period is settled: a locked policy can only be extended.
resource anchorContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: auditAnchorContainerName
}

resource anchorRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (auditAnchorRetentionDays > 0) {
  parent: anchorContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditAnchorRetentionDays
    allowProtectedAppendWrites: false
  }
  dependsOn: [
    dataContainers
  ]
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for table in tableNames: {
  parent: tableService
  name: table
}]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output tableEndpoint string = account.properties.primaryEndpoints.table
