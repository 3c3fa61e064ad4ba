"""The Azure Container Apps dynamic session-pool executor."""
