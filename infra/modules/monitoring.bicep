// Log Analytics workspace and workspace-based Application Insights.
// Local (key-based) ingestion is disabled: the apps authenticate with their managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and need Monitoring Metrics Publisher, see roles.bicep.

param location string
param tags object
param logAnalyticsName string
param appInsightsName string
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
// Not a secret: with DisableLocalAuth the instrumentation key alone cannot ingest anything.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
