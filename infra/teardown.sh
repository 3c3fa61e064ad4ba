#!/usr/bin/env bash
# Delete everything infra/deploy.sh created: the whole resource group.
set -Eeuo pipefail

PROG="teardown.sh"
STEP="start"

usage() {
    cat <<'USAGE'
Usage: infra/teardown.sh [options]

Deletes the resource group made by infra/deploy.sh and everything in it (container
app, session pool, registry and its images, Log Analytics workspace and logs,
managed identity and its role assignments). This cannot be undone.

Options:
  -g, --resource-group NAME  resource group (env AZURE_RESOURCE_GROUP; default piston-sessions-rg)
  -y, --yes                  do not ask for confirmation (needed without a terminal)
      --no-wait              return once Azure has accepted the deletion
  -h, --help                 show this help and exit
USAGE
}

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${BASH_SOURCE[0]%/*}/lib.sh"

RESOURCE_GROUP="${AZURE_RESOURCE_GROUP:-piston-sessions-rg}"
ASSUME_YES=no
WAIT_ARGS=()

STEP="read arguments"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        -g | --resource-group)
            [[ -n "${2-}" && "${2-}" != -* ]] || die "option $1 needs a value (see --help)"
            RESOURCE_GROUP="$2"
            shift 2
            ;;
        -y | --yes)
            ASSUME_YES=yes
            shift
            ;;
        --no-wait)
            WAIT_ARGS=(--no-wait)
            shift
            ;;
        *)
            die "unknown argument '$1' (see --help)"
            ;;
    esac
done

step "check tools"
command -v az >/dev/null 2>&1 ||
    die "the Azure CLI ('az') is not on PATH; install it: https://learn.microsoft.com/cli/azure/install-azure-cli"

step "check Azure login"
az account show --output none >/dev/null 2>&1 ||
    die "not logged in to Azure: run 'az login' (and 'az account set --subscription <id>')"

step "look for resource group $RESOURCE_GROUP"
if [[ "$(az group exists --name "$RESOURCE_GROUP")" != true ]]; then
    say "resource group $RESOURCE_GROUP does not exist; nothing to delete"
    exit 0
fi

step "confirm"
if [[ "$ASSUME_YES" != yes ]]; then
    [[ -t 0 ]] || die "refusing to delete $RESOURCE_GROUP without --yes (no terminal to ask on)"
    printf 'Delete resource group %s and everything in it? Type its name to confirm: ' "$RESOURCE_GROUP" >&2
    read -r answer
    [[ "$answer" == "$RESOURCE_GROUP" ]] || die "not confirmed; nothing was deleted"
fi

step "delete resource group $RESOURCE_GROUP"
az group delete --name "$RESOURCE_GROUP" --yes ${WAIT_ARGS[@]+"${WAIT_ARGS[@]}"}
STEP="done"
if [[ ${#WAIT_ARGS[@]} -gt 0 ]]; then
    say "deletion of $RESOURCE_GROUP accepted; follow it with: az group show --name $RESOURCE_GROUP"
else
    say "deleted $RESOURCE_GROUP"
fi
