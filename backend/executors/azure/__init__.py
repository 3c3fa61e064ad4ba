"""Azure Container Apps dynamic sessions: one connection, one executor per pool kind."""

from __future__ import annotations

import logging

from backend.config import PoolType, Settings
from backend.executors.base import Executor

log = logging.getLogger(__name__)


def build_pool_executor(settings: Settings) -> Executor:
    """The executor for the configured pool's kind (SESSION_POOL_TYPE, else ARM's containerType)."""
    from backend.executors.azure.connection import PoolConnection
    from backend.executors.azure.credentials import build_credential
    from backend.executors.azure.custom import CustomContainerExecutor
    from backend.executors.azure.endpoint import EndpointError, resolve_pool
    from backend.executors.azure.executor import SessionPoolExecutor

    credential = build_credential(settings)
    endpoint: str | None = None
    pool_type = settings.session_pool_type
    if pool_type is PoolType.AUTO or not settings.pool_management_endpoint:
        try:
            target = resolve_pool(settings, credential)
            endpoint, pool_type = target.endpoint, target.pool_type
        except EndpointError as exc:
            # Resolved again lazily; the kind must be chosen now.
            if pool_type is PoolType.AUTO:
                pool_type = PoolType.PYTHON_LTS
                log.warning("cannot read the session pool's type (%s); assuming PythonLTS: set SESSION_POOL_TYPE", exc)
    connection = PoolConnection(settings, pool_type, endpoint=endpoint, credential=credential)
    if pool_type is PoolType.CUSTOM_CONTAINER:
        return CustomContainerExecutor(settings, connection)
    return SessionPoolExecutor(settings, connection)
