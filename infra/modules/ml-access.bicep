// Lets one identity call the Azure ML workspace's online endpoints with Entra ID (auth mode
// aad_token): a role holding Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action
// on the workspace. main.bicep passes AzureML Data Scientist unless told a narrower custom role.

param workspaceName string
param principalId string
@description('Role definition id (a GUID) to grant on the workspace.')
param roleDefinitionId string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
}

resource scoring 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roleDefinitionId)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
  }
}
