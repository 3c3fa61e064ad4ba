"""Local emulator of Azure Container Apps dynamic sessions (data plane), the Container Apps
managed-identity token endpoint and a read-only slice of ARM for session pools.

Run it with ``python -m emulator``; drive it from tests with ``emulator.testing.EmulatorProcess``.
"""

from .app import close_app, create_app
from .settings import Settings

__all__ = ["Settings", "close_app", "create_app"]
