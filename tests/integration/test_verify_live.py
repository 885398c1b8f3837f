"""`ledger verify` on a live ledger: appends landing while it runs never raise a false alarm.

Another process imports small batches without pause while verify runs again and again,
on both stores. Verify must check one consistent state of the store (the log and its key
index as of one instant): before it did, an append committed between its walk of the log
and its read of the key index made the two disagree, and verify exited 3 on an honest ledger.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from ledger.bootstrap import open_ledger
from ledger.verify import verify
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
LINE = '{"type":"probe_failed","service":"s%d","probe":"p","at":"2026-10-04T09:15:00Z","id":"%s"}'
PRELOAD = 6000  # more than one page of every paged read
ROUNDS = 12

# The importer: batches of 10 facts, one transaction each, until the stop file appears.
WRITER = """
import sys, pathlib
from ledger.bootstrap import open_ledger
from tests.integration.test_verify_live import LINE
from tests.lines import import_lines
url, stop = sys.argv[1], pathlib.Path(sys.argv[2])
led = open_ledger(url)
n = 0
while not stop.exists():
    import_lines(led, [(LINE % (i % 7, f"w{i}")).encode() for i in range(n, n + 10)])
    n += 10
led.close()
print(n)
"""


def test_verify_never_fails_while_another_process_imports(store_url: str, tmp_path: Path,
                                                          runner: CliRunner) -> None:
    led = open_ledger(store_url)
    import_lines(led, [(LINE % (i % 7, f"e{i}")).encode() for i in range(PRELOAD)])
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, store_url, str(stop)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while led.recorder.last_position() == PRELOAD:  # the importer is running
            assert writer.poll() is None, writer.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        moved = 0
        for round_ in range(ROUNDS):
            before = led.recorder.last_position()
            if round_ % 2:
                result = verify(led.recorder)
                assert result.ok, result.problem
                assert before <= result.position
            else:
                out = runner.invoke(cli, ["--store", store_url, "verify"])
                assert out.exit_code == 0, out.output
                assert out.stdout.startswith("ok: ")
            moved += led.recorder.last_position() > before
        # Appends really landed while verify ran, round after round.
        assert moved >= ROUNDS // 2
    finally:
        stop.touch()
        out_b, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err.decode()
    assert int(out_b) > 0
    final = verify(led.recorder)
    assert final.ok, final.problem
    assert final.position == led.recorder.last_position() == PRELOAD + int(out_b)
    led.close()
