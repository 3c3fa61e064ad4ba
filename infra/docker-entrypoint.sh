#!/bin/sh
# Entrypoint of the backend image: choose the user, then exec the command (CMD).
#
# Root or not:
# - The local sandbox (USE_LOCAL_EXECUTOR=true, the default, or FALLBACK_TO_LOCAL=true)
#   starts each submission as its own unprivileged uid (SANDBOX_UID_BASE + slot,
#   60000+) and creates cgroups for it. Changing uid needs root (CAP_SETUID and
#   CAP_SETGID), so in that mode the backend keeps the container's root. Submissions
#   never run as root; the cost is that a bug in the backend itself runs as root.
# - The Azure mode (USE_LOCAL_EXECUTOR=false and FALLBACK_TO_LOCAL=false) only makes
#   HTTPS calls to the session pool, so the backend drops to the 'app' user
#   (uid/gid 10001, created in the Dockerfile) before it starts, and no root process
#   is left in the container.
# - Started with --user (not root), it runs as that user whatever the mode (the
#   local sandbox then reports itself degraded on /ready).
#
# Session role (SERVICE_ROLE=session: a session of a CustomContainer pool, see
# infra/main.bicep): the service runs the local executor and nothing else, so it keeps
# root for the sandbox like the local mode; inside the session's Hyper-V boundary
# that gives each run its own uid, the strongest separation there (the probe and
# /health say which mode the sandbox got). The pool authenticates callers, so the
# session needs no API keys, and it needs no way back to the backend or Azure: the
# variables below are removed before the service starts, should a template ever set
# them. (What stops code in a session minting tokens is managedIdentitySettings
# lifecycle None in the pool; this only keeps the service's own environment clean.)
set -eu

APP_UID="${APP_UID:-10001}"
APP_GID="${APP_GID:-10001}"

# Same spellings as backend/config.py's boolean parser.
is_true() {
    case "$(printf '%s' "$1" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

if [ "$#" -eq 0 ]; then
    echo "docker-entrypoint: no command given" >&2
    exit 64
fi

needs_root=no
if is_true "${USE_LOCAL_EXECUTOR:-true}" || is_true "${FALLBACK_TO_LOCAL:-false}"; then
    needs_root=yes
fi

role="$(printf '%s' "${SERVICE_ROLE:-api}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')"
if [ "$role" = session ]; then
    needs_root=yes
    unset API_KEYS POOL_MANAGEMENT_ENDPOINT SESSION_POOL_NAME AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP \
        AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_TENANT_ID AZURE_CLIENT_CERTIFICATE_PATH \
        AZURE_FEDERATED_TOKEN_FILE IDENTITY_ENDPOINT IDENTITY_HEADER IDENTITY_SERVER_THUMBPRINT \
        MSI_ENDPOINT MSI_SECRET
fi

if [ "$(id -u)" = 0 ] && [ "$needs_root" = no ]; then
    export HOME=/tmp
    exec setpriv --reuid="$APP_UID" --regid="$APP_GID" --clear-groups --no-new-privs -- "$@"
fi
exec "$@"
