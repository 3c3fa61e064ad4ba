#!/usr/bin/env bash
# Deploy the backend to Azure Container Apps with a PythonLTS or CustomContainer session pool.
# Run infra/deploy.sh --help for the steps and options; infra/README.md has the rest.
set -Eeuo pipefail

PROG="deploy.sh"
STEP="start"

usage() {
    cat <<'EOF'
Usage: infra/deploy.sh [options]

Deploys the Piston backend to Azure Container Apps (session pool executor):
  1. checks the tools (az, python3), compiles main.bicep (az bicep build) and checks the login
  2. creates the resource group (--what-if: it must exist already)
  3. checks the deployment before creating anything: az deployment group validate,
     then az deployment group what-if (prints the changes); --what-if stops here
  4. deploys infra/main.bicep: Log Analytics, Container Apps environment (workload
     profiles), container registry, managed identities, the session pool and role
     assignments (the container app too, once it has an image; a CustomContainer
     pool also waits for the image)
  5. builds the image in the registry (az acr build)
  6. rolls it out: PythonLTS: az containerapp update --image, or on the first run a
     second Bicep deployment (validated first) that creates the container app.
     CustomContainer: always that second deployment, which gives the pool's
     sessions and the app the new image
  7. waits until GET <url>/ready answers 200
  8. runs: test_session_pool.py --endpoint <url> (with the repo's .venv python if there is one)

Options:
  -g, --resource-group NAME  resource group (env AZURE_RESOURCE_GROUP; default piston-sessions-rg)
  -l, --location REGION      Azure region (env AZURE_LOCATION; default westus2)
  -p, --prefix PREFIX        resource name prefix, ^[a-z][a-z0-9]{2,11}$ (env NAME_PREFIX; default piston)
  -t, --tag TAG              image tag (env IMAGE_TAG; default: UTC time, e.g. 20260101120000)
  -c, --container-type TYPE  session pool type: PythonLTS (Python only) or CustomContainer
                             (this image in every session: all its languages) (env CONTAINER_TYPE;
                             default PythonLTS). A pool keeps its type: tear down to switch.
      --what-if              compile, validate and print what-if for the first pass; create nothing
      --ready-timeout SEC    how long to wait for /ready (default 300)
      --skip-smoke-test      stop after /ready answers
  -h, --help                 show this help and exit

Environment:
  API_KEYS      comma-separated API keys for the backend (at least 16 characters). Default: keep
                the app's current keys, else generate one. Read them back with:
                az containerapp secret show -g <group> -n <prefix>-api --secret-name api-keys --query value -o tsv
  SMOKE_PYTHON  interpreter for the smoke test (default: python3; any Python 3.9+, no packages needed)
EOF
}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

need_value() { # option, value
    [[ -n "${2-}" && "${2-}" != -* ]] || die "option $1 needs a value (see --help)"
}

# ---------------------------------------------------------------- arguments

RESOURCE_GROUP="${AZURE_RESOURCE_GROUP:-piston-sessions-rg}"
LOCATION="${AZURE_LOCATION:-westus2}"
PREFIX="${NAME_PREFIX:-piston}"
TAG="${IMAGE_TAG:-}"
CONTAINER_TYPE="${CONTAINER_TYPE:-PythonLTS}"
READY_TIMEOUT=300
SMOKE_TEST=yes
WHAT_IF=no

STEP="read arguments"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        -g | --resource-group)
            need_value "$1" "${2-}"
            RESOURCE_GROUP="$2"
            shift 2
            ;;
        -l | --location)
            need_value "$1" "${2-}"
            LOCATION="$2"
            shift 2
            ;;
        -p | --prefix)
            need_value "$1" "${2-}"
            PREFIX="$2"
            shift 2
            ;;
        -t | --tag)
            need_value "$1" "${2-}"
            TAG="$2"
            shift 2
            ;;
        -c | --container-type)
            need_value "$1" "${2-}"
            CONTAINER_TYPE="$2"
            shift 2
            ;;
        --what-if)
            WHAT_IF=yes
            SMOKE_TEST=no
            shift
            ;;
        --ready-timeout)
            need_value "$1" "${2-}"
            READY_TIMEOUT="$2"
            shift 2
            ;;
        --skip-smoke-test)
            SMOKE_TEST=no
            shift
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
done

[[ "$PREFIX" =~ ^[a-z][a-z0-9]{2,11}$ ]] ||
    die "prefix '$PREFIX' must match ^[a-z][a-z0-9]{2,11}$ (it names the session pool, which allows no hyphens)"
[[ "$CONTAINER_TYPE" == PythonLTS || "$CONTAINER_TYPE" == CustomContainer ]] ||
    die "container type '$CONTAINER_TYPE' must be PythonLTS or CustomContainer (main.bicep @allowed)"
[[ "$READY_TIMEOUT" =~ ^[0-9]+$ ]] || die "--ready-timeout must be a number of seconds"
[[ -z "$TAG" || "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "tag '$TAG' is not a valid image tag"

case "${BASH_SOURCE[0]}" in
    */*) INFRA_DIR="${BASH_SOURCE[0]%/*}" ;;
    *) INFRA_DIR="." ;;
esac
INFRA_DIR="$(cd "$INFRA_DIR" && pwd)"
REPO_ROOT="$(cd "$INFRA_DIR/.." && pwd)"
APP_NAME="${PREFIX}-api"
IMAGE_REPOSITORY="piston-backend"

# ---------------------------------------------------------------- 1. preflight (only the resource group is created before step 4)

step "check tools"
command -v az >/dev/null 2>&1 ||
    die "the Azure CLI ('az') is not on PATH; install it: https://learn.microsoft.com/cli/azure/install-azure-cli"
command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH"
[[ -f "$INFRA_DIR/main.bicep" && -f "$INFRA_DIR/main.parameters.json" ]] ||
    die "main.bicep or main.parameters.json missing in $INFRA_DIR"
[[ -f "$REPO_ROOT/Dockerfile" ]] || die "no Dockerfile at $REPO_ROOT"
if [[ "$SMOKE_TEST" == yes ]]; then
    # test_session_pool.py needs only the standard library (Python 3.9+); any python3 runs it.
    SMOKE_PYTHON="${SMOKE_PYTHON:-python3}"
    [[ -f "$REPO_ROOT/test_session_pool.py" ]] || die "test_session_pool.py not found in $REPO_ROOT"
    "$SMOKE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1 ||
        die "$SMOKE_PYTHON is not Python 3.9 or newer (needed by test_session_pool.py): set SMOKE_PYTHON, or pass --skip-smoke-test"
fi

WORK_DIR="$(mktemp -d)"
cleanup() { rm -rf "$WORK_DIR"; }
trap cleanup EXIT

# Compiled once: a Bicep error stops here, before the login or any call that changes Azure.
TEMPLATE="$WORK_DIR/main.json"
step "compile main.bicep (az bicep build)"
az bicep build --file "$INFRA_DIR/main.bicep" --outfile "$TEMPLATE"
[[ -s "$TEMPLATE" ]] || die "az bicep build wrote no template to $TEMPLATE"

step "check Azure login"
az account show --output none >/dev/null 2>&1 ||
    die "not logged in to Azure: run 'az login' (and 'az account set --subscription <id>')"
SUBSCRIPTION="$(az account show --query name --output tsv)"
say "subscription: $SUBSCRIPTION"

# ---------------------------------------------------------------- 2. resource group

# Group-scope validate and what-if need the group. A new group is empty and costs nothing;
# --what-if creates nothing at all, so there it must exist already.
if [[ "$WHAT_IF" == yes ]]; then
    step "check resource group $RESOURCE_GROUP"
    [[ "$(az group exists --name "$RESOURCE_GROUP")" == true ]] ||
        die "resource group $RESOURCE_GROUP does not exist; what-if runs against a group: create it (az group create --name $RESOURCE_GROUP --location $LOCATION) or deploy without --what-if"
else
    step "create resource group $RESOURCE_GROUP in $LOCATION"
    az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
fi

# ---------------------------------------------------------------- 3-4. validate, what-if, then deploy the infrastructure

step "look for an existing container app $APP_NAME"
EXISTING_IMAGE="$(az containerapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
    --query 'properties.template.containers[0].image' --output tsv 2>/dev/null || true)"
if [[ -n "$EXISTING_IMAGE" ]]; then
    say "found, running $EXISTING_IMAGE"
    if [[ -z "${API_KEYS:-}" ]]; then
        API_KEYS="$(az containerapp secret show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
            --secret-name api-keys --query value --output tsv 2>/dev/null || true)"
    fi
else
    say "not found: the first Bicep pass skips it, the second creates it with the new image"
fi
if [[ -z "${API_KEYS:-}" ]]; then
    API_KEYS="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
    say "generated a new API key (read it back with the command in --help)"
fi
(( ${#API_KEYS} >= 16 )) || die "API_KEYS must be at least 16 characters (main.bicep: @minLength(16))"
export API_KEYS

# The secret goes to az in a private parameters file, not on the command line.
SECRET_PARAMS="$WORK_DIR/secret.parameters.json"
(
    umask 077
    python3 - "$SECRET_PARAMS" <<'PY'
import json
import os
import sys

body = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {"apiKeys": {"value": os.environ["API_KEYS"]}},
}
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    json.dump(body, fh)
PY
)

deployment() { # verb (validate | what-if | create), deployment name, image ('' = no container app), az options...
    local verb="$1" name="$2" image="$3"
    shift 3
    az deployment group "$verb" \
        --resource-group "$RESOURCE_GROUP" \
        --name "$name" \
        --template-file "$TEMPLATE" \
        --parameters "@$INFRA_DIR/main.parameters.json" \
        --parameters "@$SECRET_PARAMS" \
        --parameters location="$LOCATION" namePrefix="$PREFIX" containerAppName="$APP_NAME" \
        containerType="$CONTAINER_TYPE" containerImage="$image" \
        "$@"
}

preflight() { # deployment name, image: ARM checks the whole deployment, then prints what would change
    step "validate deployment $1 (az deployment group validate)"
    deployment validate "$1" "$2" --output none
    step "what-if of deployment $1"
    deployment what-if "$1" "$2"
}

deploy_bicep() { # deployment name, image; prints the outputs as JSON
    deployment create "$1" "$2" --query properties.outputs --output json
}

output() { # outputs JSON, name
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]]["value"])' "$1" "$2"
}

preflight "${PREFIX}-infra" "$EXISTING_IMAGE"
if [[ "$WHAT_IF" == yes ]]; then
    STEP="done"
    say "--what-if: validated; nothing was created or changed"
    [[ -n "$EXISTING_IMAGE" ]] ||
        say "the first deployment has a second pass after the image build (the container app$([[ "$CONTAINER_TYPE" == CustomContainer ]] && echo ' and the pool')): it is validated before it runs"
    exit 0
fi

step "deploy infrastructure (main.bicep)"
OUTPUTS="$(deploy_bicep "${PREFIX}-infra" "$EXISTING_IMAGE")"
REGISTRY_NAME="$(output "$OUTPUTS" registryName)"
REGISTRY_SERVER="$(output "$OUTPUTS" registryLoginServer)"
POOL_ENDPOINT="$(output "$OUTPUTS" poolManagementEndpoint)"
say "registry $REGISTRY_SERVER, pool ${POOL_ENDPOINT:-(created with the image, below)}"

# ---------------------------------------------------------------- 5. image

TAG="${TAG:-$(date -u +%Y%m%d%H%M%S)}"
IMAGE="$REGISTRY_SERVER/$IMAGE_REPOSITORY:$TAG"
step "build $IMAGE in the registry (az acr build)"
# --file is relative to the build context (the repository root).
az acr build \
    --registry "$REGISTRY_NAME" \
    --image "$IMAGE_REPOSITORY:$TAG" \
    --file Dockerfile \
    "$REPO_ROOT"

# ---------------------------------------------------------------- 6. roll out

if [[ -n "$EXISTING_IMAGE" && "$CONTAINER_TYPE" == PythonLTS ]]; then
    step "update container app $APP_NAME to $IMAGE"
    az containerapp update --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" --image "$IMAGE" --output none
else
    # CustomContainer: the pool caches its image at create/update, so a new tag goes through Bicep.
    preflight "${PREFIX}-app" "$IMAGE"
    step "deploy $IMAGE to the container app$([[ "$CONTAINER_TYPE" == CustomContainer ]] && echo ' and the session pool') (main.bicep, second pass)"
    OUTPUTS="$(deploy_bicep "${PREFIX}-app" "$IMAGE")"
    POOL_ENDPOINT="$(output "$OUTPUTS" poolManagementEndpoint)"
fi

step "read the app URL"
FQDN="$(az containerapp show --name "$APP_NAME" --resource-group "$RESOURCE_GROUP" \
    --query properties.configuration.ingress.fqdn --output tsv)"
[[ -n "$FQDN" ]] || die "container app $APP_NAME has no ingress FQDN"
APP_URL="https://$FQDN"

# ---------------------------------------------------------------- 7. readiness

step "wait for $APP_URL/ready (up to ${READY_TIMEOUT}s)"
python3 - "$APP_URL/ready" "$READY_TIMEOUT" <<'PY'
import sys
import time
import urllib.error
import urllib.request

url, limit = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + limit
last = "no answer yet"
while True:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            if reply.status == 200:
                print(f"ready: {url}", file=sys.stderr)
                sys.exit(0)
            last = f"HTTP {reply.status}"
    except urllib.error.HTTPError as exc:
        last = f"HTTP {exc.code} {exc.read(300)!r}"
    except OSError as exc:
        last = str(exc)
    if time.monotonic() >= deadline:
        sys.exit(f"not ready after {limit:.0f}s; last answer: {last}")
    time.sleep(5)
PY

# ---------------------------------------------------------------- 8. smoke test

if [[ "$SMOKE_TEST" == yes ]]; then
    step "smoke test: $SMOKE_PYTHON test_session_pool.py --endpoint $APP_URL"
    # The key goes through the environment (test_session_pool.py reads PISTON_API_KEY).
    (cd "$REPO_ROOT" && PISTON_API_KEY="${API_KEYS%%,*}" "$SMOKE_PYTHON" test_session_pool.py --endpoint "$APP_URL")
fi

STEP="done"
say "deployed $IMAGE"
say "backend:  $APP_URL"
say "pool:     $POOL_ENDPOINT ($CONTAINER_TYPE)"
say "API key:  az containerapp secret show -g $RESOURCE_GROUP -n $APP_NAME --secret-name api-keys --query value -o tsv"
