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
@description('Topics in the shape `aos topology` prints: [{name, subscriptions: [{name, rules: [{name, sql}], max_delivery_count}]}].')
param topics array
param lockDuration string = 'PT5M'
param defaultMessageTimeToLive string = 'P14D'

var subscriptions = flatten(map(topics, topic => map(topic.subscriptions, sub => {
  topic: topic.name
  name: sub.name
  maxDeliveryCount: sub.max_delivery_count
  ruleCount: length(sub.rules)
})))

var rules = flatten(map(topics, topic => flatten(map(topic.subscriptions, sub => map(sub.rules, rule => {
  topic: topic.name
  subscription: sub.name
  name: rule.name
  sql: rule.sql
})))))

var filteredSubscriptions = filter(subscriptions, sub => sub.ruleCount > 0)

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

resource topicResources 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = [for topic in topics: {
  parent: namespace
  name: topic.name
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
    lockDuration: lockDuration
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

resource defaultRuleOverrides 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for sub in filteredSubscriptions: {
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
output topicNames array = [for topic in topics: topic.name]
