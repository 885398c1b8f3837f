"""The PostgreSQL backend, the only importer of psycopg: recorder, view, schema and roles, connections.

A sub-package because the backend is over 1,000 lines: ``recorder`` (the log, its
write session, opening a store), ``view`` (the reporting view), ``schema`` (triggers,
insert checks, roles), ``connect`` (libpq parameters, the datastore).
"""
