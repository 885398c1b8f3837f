"""Persistence: the store port, the key scheme, the hash chain, the append algorithms and the backends.

Nothing here imports ``projections``; only the backend modules name a database driver.
"""
