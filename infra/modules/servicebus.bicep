// The Service Bus namespace and the messaging topology `aos topology` prints: topics,
// subscriptions and SQL filter rules. Local (SAS) auth is off: apps connect with their identity.
//
// A subscription created through ARM always gets a `$Default` rule with a TrueFilter. Rules are
// OR-ed, so for a subscription that declares its own rules the `$Default` rule is overwritten with
// a filter that matches nothing; subscriptions with no rules keep the TrueFilter (every message).

param location string
param tags object
param name string
@allowed([
  'Standard'
  'Premium'
])
param skuName string = 'Standard'
@description('Topic names of the topology `aos topology` prints.')
param topicNames array
@description('Its subscriptions, flattened by main.bicep: [{topic, name, maxDeliveryCount, lockDuration, hasRules}].')
param subscriptions array
@description('Its SQL filter rules, flattened: [{topic, subscription, name, sql}].')
param rules array
param defaultMessageTimeToLive string = 'P14D'

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource topicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = [for topic in topicNames: {
  parent: namespace
  name: topic
  properties: {
    defaultMessageTimeToLive: defaultMessageTimeToLive
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    enableBatchedOperations: true
    supportOrdering: true
  }
}]

resource subscriptionResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [for sub in subscriptions: {
  name: '${namespace.name}/${sub.topic}/${sub.name}'
  properties: {
    maxDeliveryCount: sub.maxDeliveryCount
    // Per subscription, from the topology: one minute for the quick consumers, five for the
    // MCP gateway, whose deliveries last a whole tool call (kernel/topology.py, LOCK_SECONDS).
    lockDuration: sub.lockDuration
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    enableBatchedOperations: true
  }
  dependsOn: [
    topicResources
  ]
}]

resource ruleResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for rule in rules: {
  name: '${namespace.name}/${rule.topic}/${rule.subscription}/${rule.name}'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: rule.sql
    }
  }
  dependsOn: [
    subscriptionResources
  ]
}]

// `if(` without a space: the form pycep-parser 0.7.1 (tests/infra) reads in a filtered loop.
resource defaultRuleOverrides 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for sub in subscriptions: if(sub.hasRules) {
  name: '${namespace.name}/${sub.topic}/${sub.name}/$Default'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '1=0'
    }
  }
  dependsOn: [
    subscriptionResources
  ]
}]

output name string = namespace.name
output id string = namespace.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output topicNames array = topicNames
