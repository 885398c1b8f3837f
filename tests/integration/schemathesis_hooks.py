"""Schemathesis hooks for ``test_server_schemathesis`` (loaded through SCHEMATHESIS_HOOKS).

POST /v1/events takes NDJSON, which schemathesis has no serializer for: its body is a
string in the document, sent as it is, like text/plain.
"""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
