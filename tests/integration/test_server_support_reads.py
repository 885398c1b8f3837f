"""``GET .../support`` is computed in the server's read workers (``cli.server_reads``), over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from benchmarks.serve_load import READ_TOKEN, WRITE_TOKEN, ServerProcess
from tests.integration.test_server import SUPPORT_POLICY, ledger_cli, read_workers
from tests.unit.test_feeds import alert, webhook

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

FACTS = [
    {"type": "ticket_opened", "contract": "sup-d", "ticket": "T-1", "at": "2026-10-05T10:00:00-04:00",
     "severity": "level1"},
    {"type": "ticket_responded", "ticket": "T-1", "at": "2026-10-05T10:12:00-04:00"},
]


def _get(server: ServerProcess, path: str, accept: str | None = None, timeout: float = 60) -> bytes:
    conn = server.connection(timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {READ_TOKEN}", **({"Accept": accept} if accept else {})}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        return body
    finally:
        conn.close()


def test_support_is_read_in_the_workers(store_url: str, tmp_path: Path) -> None:
    """With the read workers stopped a support read waits while writes go on; then it is the CLI's bytes."""
    (tmp_path / "sup.toml").write_text(SUPPORT_POLICY)
    ledger_cli(store_url, "contract", "register", str(tmp_path / "sup.toml"))
    (tmp_path / "facts.ndjson").write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    ledger_cli(store_url, "import", str(tmp_path / "facts.ndjson"))
    month = ("--contract", "sup-d", "--month", "2026-10")
    support = "/v1/contracts/sup-d/months/2026-10/support"
    server = ServerProcess(store_url)
    try:
        assert _get(server, support) == ledger_cli(store_url, "support", *month, "--format", "json")
        workers = read_workers(server.proc.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            for accept in (None, "text/html"):
                with pytest.raises(TimeoutError):  # computed in a worker: nothing answers it now
                    _get(server, support, accept, timeout=1.5)
            # The writer is not a worker: a write is answered meanwhile.
            hook = webhook(alert("sup1", probe="http", service="other"))
            status, body, _ = server.request("POST", "/v1/hooks/alertmanager", hook, token=WRITE_TOKEN)
            assert status == 200, body
            assert json.loads(body)["imported"] == 1
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        assert _get(server, support) == ledger_cli(store_url, "support", *month, "--format", "json")
        html = ledger_cli(store_url, "support", *month, "--format", "html")
        assert _get(server, support, "text/html") == html
        assert _get(server, support + "?position=1", "text/html") == ledger_cli(
            store_url, "support", *month, "--position", "1", "--format", "html")
        assert read_workers(server.proc.pid) == workers
    finally:
        code, err = server.stop()
        assert code == 0, err
