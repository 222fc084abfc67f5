// Lets one identity call an Azure OpenAI or AI Foundry (Cognitive Services) account's models with
// Entra ID: Cognitive Services OpenAI User (inference only: no keys, no deployments). Deployed at
// the account's resource group, which may be another one than the platform's.

param accountName string
param principalId string

// Built-in role: Cognitive Services OpenAI User.
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = {
  name: accountName
}

resource openAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, openAiUserRoleId)
  scope: account
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
  }
}
