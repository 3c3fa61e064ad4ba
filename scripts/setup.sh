#!/usr/bin/env bash
# Install everything the service needs on Debian 12 (bookworm), idempotently:
# system packages (bubblewrap, compilers and language runtimes), the Python venv with
# requirements.txt, the sandbox launcher and the precompiled C++ headers. Run as root (the local sandbox drops
# each submission to its own uid and creates cgroups, which needs root).
#   EXTRA_PACKAGES="golang-go" ./scripts/setup.sh   to add more languages.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
trap 'echo "setup.sh: failed at: ${BASH_COMMAND}" >&2' ERR

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root (or install sudo)" >&2; exit 1; }
    SUDO="sudo"
fi

PACKAGES=(bubblewrap gcc g++ libc6-dev default-jdk-headless nodejs bash perl ruby php-cli python3 python3-venv procps)
# shellcheck disable=SC2206
PACKAGES+=(${EXTRA_PACKAGES:-})
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A runtime already installed outside apt (e.g. NodeSource's node) counts as present.
filtered=()
for pkg in "${missing[@]}"; do
    case "$pkg" in
        nodejs) [ -x /usr/bin/node ] && continue ;;
        default-jdk-headless) [ -x /usr/bin/javac ] && continue ;;
    esac
    filtered+=("$pkg")
done
if [ "${#filtered[@]}" -gt 0 ]; then
    step "apt-get install ${filtered[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${filtered[@]}"
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    step "create .venv with $PYTHON"
    "$PYTHON" -m venv .venv
fi
step "pip install -r requirements.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt

# ---- infra tools (owner: infra): checkov, pycep-parser and hadolint for tests/unit/test_infra.py and
# test_dockerfile.py. A venv of their own: checkov's pins (packaging<24) conflict with requirements.txt.
if [ ! -x .venv-tools/bin/python ]; then
    step "create .venv-tools with $PYTHON"
    "$PYTHON" -m venv .venv-tools
fi
step "pip install -r requirements-tools.txt (into .venv-tools)"
.venv-tools/bin/python -m pip install -q --disable-pip-version-check -r requirements-tools.txt
# ---- end of infra tools

step "build the sandbox launcher"
.venv/bin/python -c "from backend.config import load_settings; from backend.executors.local.launcher import ensure_launcher; print(ensure_launcher(load_settings().sandbox_state_dir))"
step "precompile the C++ headers (bits/stdc++.h, iostream) for the c++ runtime's flags"
SANDBOX_PCH_DIR="${SANDBOX_PCH_DIR:-/usr/local/lib/piston-pch}" .venv/bin/python -m backend.executors.local.precompiled build
echo "setup complete"
