"""Executors: where submissions run (the local sandbox or an Azure session pool)."""
