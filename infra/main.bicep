// Piston v2 compatible backend on Azure Container Apps. Submissions run in a
// dynamic session pool, either the built-in PythonLTS code interpreter or this
// project's own image as a custom container (containerType); the backend reaches
// the pool with a user-assigned managed identity. See infra/README.md; deployed
// by infra/deploy.sh (az bicep build, validate, what-if, then create).
//
// Checked offline by tests/unit/test_infra.py: checkov's Azure policies
// (checkov -f infra/main.bicep --framework bicep), and our own policies on the
// tree pycep-parser reads (infra/bicepcheck.py). Property names follow the ARM
// spec Azure/azure-rest-api-specs specification/app/resource-manager/
// Microsoft.App/ContainerApps/stable/2025-07-01/SessionPools.json and the same
// objects in azure-mgmt-appcontainers 5.1.0 (models SessionPoolProperties,
// CustomContainerTemplate, SessionRegistryCredentials, SessionIngress,
// SessionContainerResources, ManagedIdentitySetting, SessionNetworkConfiguration).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- naming

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Lowercase prefix of every resource name: ^[a-z][a-z0-9]*$, 3-12 characters (deploy.sh checks the pattern).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'piston'

@description('Session pool name. Azure requires ^[a-z][a-z0-9]*$ and 3-63 characters: no hyphens or capitals.')
@minLength(3)
@maxLength(63)
param sessionPoolName string = '${namePrefix}pool'

@description('Container app name: lowercase letters, digits and hyphens, starting with a letter, at most 32 characters.')
@minLength(2)
@maxLength(32)
param containerAppName string = '${namePrefix}-api'

@description('Tags added to every resource.')
param tags object = {}

// ---------------------------------------------------------------- session pool

@description('Only Dynamic pools can be created.')
@allowed([
  'Dynamic'
])
param poolManagementType string = 'Dynamic'

@description('''PythonLTS: Microsoft's Python code interpreter sessions (Python only, no image to build).
CustomContainer: each session runs this project's image in session mode (SERVICE_ROLE=session), so every
language of the image runs on Azure, inside our own sandbox inside the session's Hyper-V boundary.''')
@allowed([
  'PythonLTS'
  'CustomContainer'
])
param containerType string = 'PythonLTS'

@description('Most sessions alive at once; requests beyond it get 404 from the pool (service maximum 600).')
@minValue(1)
@maxValue(600)
param maxConcurrentSessions int = 20

@description('Sessions kept warm (allocated before any call). Warm sessions cost money while idle: keep this low.')
@minValue(0)
@maxValue(600)
param readySessionInstances int = 1

@description('Timed: a session is destroyed after cooldownPeriodInSeconds without a call.')
@allowed([
  'Timed'
])
param lifecycleType string = 'Timed'

@description('Idle seconds before a session is destroyed (service range 300-3600).')
@minValue(300)
@maxValue(3600)
param cooldownPeriodInSeconds int = 300

@description('EgressDisabled: code in a session cannot reach the network (and cannot pip install).')
@allowed([
  'EgressDisabled'
  'EgressEnabled'
])
param sessionNetworkStatus string = 'EgressDisabled'

@description('CustomContainer only: vCPU of each session (the image compiles C++ and Java: 1.0 or more is comfortable).')
@allowed([
  '0.25'
  '0.5'
  '0.75'
  '1.0'
  '1.25'
  '1.5'
  '1.75'
  '2.0'
])
param sessionCpu string = '1.0'

// Guess: the same cpu/memory pairs as a Consumption container app (cpu x 2Gi); the ARM spec only types
// memory as a string ("e.g. 250Mb"), and the docs' custom-container examples use 0.25 / 0.5Gi.
@description('CustomContainer only: memory of each session, paired with sessionCpu (1.0 -> 2Gi).')
param sessionMemory string = '2Gi'

// ---------------------------------------------------------------- container app

@description('Backend image, e.g. <registry>.azurecr.io/piston-backend:<tag>; with CustomContainer also the image of every session. Empty: deploy everything except the container app, and with CustomContainer the pool too (the first pass of deploy.sh, before the image exists).')
param containerImage string = ''

@description('Comma-separated API keys the backend accepts (API_KEYS). The ingress is public, so keys are required; kept as a container app secret.')
@secure()
@minLength(16)
param apiKeys string

@description('Replicas kept running. 0 scales to zero when idle (cheaper, slower first request).')
@minValue(0)
@maxValue(300)
param minReplicas int = 1

@minValue(1)
@maxValue(300)
param maxReplicas int = 5

@description('HTTP scale rule: concurrent requests per replica before another replica is added.')
@minValue(1)
param httpConcurrentRequests int = 20

@description('vCPU per replica (a Consumption pair with containerMemory: 0.5/1Gi, 1.0/2Gi, 2.0/4Gi).')
@allowed([
  '0.25'
  '0.5'
  '0.75'
  '1.0'
  '1.25'
  '1.5'
  '1.75'
  '2.0'
])
param containerCpu string = '0.5'

param containerMemory string = '1Gi'

@allowed([
  'Basic'
  'Standard'
  'Premium'
])
param registrySku string = 'Basic'

@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------------------------------------------------------------- constants

// Built-in role definitions (GUIDs are the same in every tenant).
var sessionExecutorRoleId = '0fb8eba5-a2bb-4abe-b1c1-49dfad359bb0' // Azure ContainerApps Session Executor
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull

// Must match the Dockerfile (EXPOSE, PORT) and gunicorn.conf.py's default. Sessions run the same
// image, so the pool's ingress.targetPort is the same port.
var containerPort = 8000

var isCustomContainer = containerType == 'CustomContainer'

// Registry names are global: 5-50 alphanumerics.
var registryName = '${namePrefix}${uniqueString(resourceGroup().id)}'

var deployApp = !empty(containerImage)

// A CustomContainer pool is created with its image, so it waits for the image like the app.
var deployPool = !isCustomContainer || deployApp

// ---------------------------------------------------------------- resources

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${namePrefix}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource env 'Microsoft.App/managedEnvironments@2025-07-01' = {
  name: '${namePrefix}-env'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

// checkov (tests/unit/test_infra.py) passes this registry on admin user, anonymous pull and zone
// redundancy; the three checks below do not fit a small judge deployment:
resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  // checkov:skip=CKV_AZURE_139: private networking needs Premium, a VNet-integrated environment and a private endpoint; az acr build (ACR Tasks) needs the public endpoint. Pulls authenticate with Entra (AcrPull), the admin user is off.
  // checkov:skip=CKV_AZURE_166: quarantine blocks every pull until a scanner marks the image verified; there is no scanner here, so the app and sessions could never start.
  // checkov:skip=CKV_AZURE_163: image scanning is Microsoft Defender for Containers, a subscription plan; the check only asks for the Standard SKU, which scans nothing by itself.
  name: registryName
  location: location
  tags: tags
  sku: {
    name: registrySku
  }
  properties: {
    adminUserEnabled: false
  }
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${namePrefix}-id'
  location: location
  tags: tags
}

// CustomContainer sessions pull their image with an identity of their own that holds AcrPull and
// nothing else: not the backend's, which may call the pool. Its lifecycle is None (below), so code
// in a session cannot mint a token with it anyway.
resource sessionIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (isCustomContainer) {
  name: '${namePrefix}-session-id'
  location: location
  tags: tags
}

// SessionPools.json 2025-07-01: environmentId (create-only, a workload-profiles environment),
// customContainerTemplate {registryCredentials {server, identity}, containers [{name, image, env,
// resources {cpu, memory}}], ingress {targetPort}}, managedIdentitySettings [{identity, lifecycle}]
// (lifecycle None | Main, default None). PythonLTS pools take none of them (null leaves them out).
resource pool 'Microsoft.App/sessionPools@2025-07-01' = if (deployPool) {
  name: sessionPoolName
  location: location
  tags: tags
  identity: isCustomContainer ? {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${sessionIdentity.id}': {}
    }
  } : null
  properties: {
    poolManagementType: poolManagementType
    containerType: containerType
    environmentId: isCustomContainer ? env.id : null
    customContainerTemplate: isCustomContainer ? {
      registryCredentials: {
        server: registry.properties.loginServer
        identity: sessionIdentity.id
      }
      containers: [
        {
          name: 'session'
          image: containerImage
          // Session mode: the local executor, no API keys, no pool endpoint, no Azure identity.
          // Nothing here is a secret, and nothing points back at the backend.
          env: [
            {
              name: 'SERVICE_ROLE'
              value: 'session'
            }
            {
              name: 'PORT'
              value: string(containerPort)
            }
          ]
          resources: {
            cpu: json(sessionCpu)
            memory: sessionMemory
          }
        }
      ]
      ingress: {
        targetPort: containerPort
      }
    } : null
    // None: the identity only pulls the image; code in a session can never get a token for it.
    managedIdentitySettings: isCustomContainer ? [
      {
        identity: sessionIdentity.id
        lifecycle: 'None'
      }
    ] : null
    scaleConfiguration: {
      maxConcurrentSessions: maxConcurrentSessions
      readySessionInstances: readySessionInstances
    }
    dynamicPoolConfiguration: {
      lifecycleConfiguration: {
        lifecycleType: lifecycleType
        cooldownPeriodInSeconds: cooldownPeriodInSeconds
      }
    }
    sessionNetworkConfiguration: {
      status: sessionNetworkStatus
    }
  }
  dependsOn: [
    sessionAcrPull
  ]
}

// The backend's identity may run code in this pool, and only in this pool.
resource sessionExecutor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deployPool) {
  name: guid(pool.id, identity.id, sessionExecutorRoleId)
  scope: pool
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', sessionExecutorRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Piston backend executes submissions in the session pool'
  }
}

// The app pulls its image with the same identity: the registry has no admin user.
resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, identity.id, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Piston backend pulls its image'
  }
}

// Sessions of a CustomContainer pool pull the same image with their own identity. deploy.sh creates
// this in its first pass, minutes before the pool, so the role has propagated when the pool pulls.
resource sessionAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (isCustomContainer) {
  name: guid(registry.id, sessionIdentity.id, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRoleId)
    principalId: sessionIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    description: 'Piston sessions pull their image'
  }
}

resource app 'Microsoft.App/containerApps@2025-07-01' = if (deployApp) {
  name: containerAppName
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    environmentId: env.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: containerPort
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registry.properties.loginServer
          identity: identity.id
        }
      ]
      secrets: [
        {
          name: 'api-keys'
          value: apiKeys
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'backend'
          image: containerImage
          resources: {
            cpu: json(containerCpu)
            memory: containerMemory
          }
          env: [
            {
              name: 'PORT'
              value: string(containerPort)
            }
            {
              name: 'USE_LOCAL_EXECUTOR'
              value: 'false'
            }
            {
              name: 'FALLBACK_TO_LOCAL'
              value: 'false'
            }
            {
              name: 'SESSION_POOL_TYPE'
              value: containerType
            }
            {
              name: 'POOL_MANAGEMENT_ENDPOINT'
              value: pool.properties.poolManagementEndpoint
            }
            {
              name: 'AZURE_CLIENT_ID'
              value: identity.properties.clientId
            }
            {
              name: 'API_KEYS'
              secretRef: 'api-keys'
            }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/health'
                port: containerPort
              }
              initialDelaySeconds: 2
              periodSeconds: 3
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/health'
                port: containerPort
              }
              periodSeconds: 15
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/ready'
                port: containerPort
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(httpConcurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
  dependsOn: [
    acrPull
    sessionExecutor
  ]
}

// ---------------------------------------------------------------- outputs

@description('Public URL of the backend; empty while the app is not deployed.')
output appUrl string = deployApp ? 'https://${app.properties.configuration.ingress.fqdn}' : ''

@description('Data-plane endpoint of the session pool (the app gets it as POOL_MANAGEMENT_ENDPOINT); empty while the pool is not deployed. CustomContainer: https://<pool>.<environment>.<region>.azurecontainerapps.io')
output poolManagementEndpoint string = deployPool ? pool.properties.poolManagementEndpoint : ''

output containerType string = containerType

output containerAppName string = containerAppName
output sessionPoolName string = sessionPoolName
output registryName string = registry.name
output registryLoginServer string = registry.properties.loginServer
output identityClientId string = identity.properties.clientId
