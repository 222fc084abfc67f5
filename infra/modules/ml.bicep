// Optional Azure Machine Learning workspace for LoRA training jobs and online endpoints. It uses
// the platform's storage account, Key Vault and Application Insights.

param location string
param tags object
param name string
param storageAccountId string
param keyVaultId string
param appInsightsId string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  properties: {
    friendlyName: name
    storageAccount: storageAccountId
    keyVault: keyVaultId
    applicationInsights: appInsightsId
    publicNetworkAccess: 'Enabled'
    // The shared storage account has shared keys off, so the workspace must use its identity.
    systemDatastoresAuthMode: 'identity'
  }
}

output name string = workspace.name
output id string = workspace.id
