// Durable Task Scheduler (the managed Durable Functions backend) with one task hub per app: two
// apps on one hub would each run (or fail to find) the other's orchestrations and activities.

param location string
param tags object
param schedulerName string
param taskHubNames array
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'
@description('Client IP ranges allowed to reach the scheduler; an empty list denies all traffic.')
param ipAllowlist array = [
  '0.0.0.0/0'
]

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: schedulerName
  location: location
  tags: tags
  properties: {
    sku: {
      name: skuName
    }
    ipAllowlist: ipAllowlist
  }
}

resource taskHubs 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = [for hub in taskHubNames: {
  parent: scheduler
  name: hub
}]

output schedulerName string = scheduler.name
output taskHubNames array = [for (hub, i) in taskHubNames: taskHubs[i].name]
output endpoint string = scheduler.properties.endpoint
