# Piston v2 compatible backend: Flask served by gunicorn, with the local bubblewrap
# sandbox and its language toolchains. One image serves both executors and the sessions:
#   local sandbox (default):  docker run -p 8000:8000 piston-backend
#   Azure session pool:       USE_LOCAL_EXECUTOR=false POOL_MANAGEMENT_ENDPOINT=... AZURE_CLIENT_ID=...
#   a session of a CustomContainer pool:  SERVICE_ROLE=session (local executor, no API keys,
#                             no secrets; infra/main.bicep's customContainerTemplate sets it)
# Built in Azure by infra/deploy.sh (az acr build). tests/unit/test_dockerfile.py
# checks this file against the repository and runs hadolint on it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
# Python dependencies go into a venv that the runtime stage copies whole.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

# The sandbox (bubblewrap), the toolchains submissions run with (Debian's python3,
# gcc/g++, Java, Node.js, bash), tini as PID 1 (reaps orphans of sandboxed programs)
# and setpriv (util-linux, already in the base) for the entrypoint.
# The man1 directory works around default-jdk-headless failing to install on slim images.
# More languages, as with scripts/setup.sh: --build-arg EXTRA_PACKAGES="ruby php-cli golang-go".
ARG EXTRA_PACKAGES=""
# DL3008 (pin apt versions): not pinned on purpose. Bookworm's archive keeps only the
# current version of each package, so a pin breaks the build at the next point release;
# the base image tag fixes the distribution, and security updates should come in.
# hadolint ignore=DL3008
RUN set -eux; \
    mkdir -p /usr/share/man/man1; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        bash \
        bubblewrap \
        ca-certificates \
        default-jdk-headless \
        g++ \
        gcc \
        libc6-dev \
        nodejs \
        python3 \
        tini \
        ${EXTRA_PACKAGES}; \
    rm -rf /var/lib/apt/lists/*

# Unprivileged account the entrypoint switches to when the local sandbox is off.
# (The sandbox's per-slot uids 60000+ need no account.)
RUN groupadd --system --gid 10001 app; \
    useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000

WORKDIR /app

# Only what the service needs, plus the smoke test and its cases for in-container checks.
COPY infra/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
COPY requirements.txt gunicorn.conf.py app.py test_session_pool.py ./
COPY backend/ ./backend/
COPY test_cases/ ./test_cases/
# Precompiled C++ headers for the c++ runtime's exact flags (backend.executors.local.precompiled.py),
# the same step as scripts/setup.sh; the service checks them at start and rebuilds if stale.
RUN python -m backend.executors.local.precompiled build

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=4)"]

# No USER instruction on purpose: the image starts as root and the entrypoint decides.
# The local sandbox needs root to start every submission under its own unprivileged
# uid (60000+slot) and to create cgroups; with USE_LOCAL_EXECUTOR=false and
# FALLBACK_TO_LOCAL=false (the Azure deployment) the entrypoint drops to uid 10001
# ('app') before gunicorn starts. See infra/docker-entrypoint.sh.
ENTRYPOINT ["/usr/bin/tini", "--", "/bin/sh", "/usr/local/bin/docker-entrypoint"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]
