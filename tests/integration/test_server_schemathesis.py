"""A schemathesis run against ``ledger serve``'s /openapi.json, on a loopback port, on both stores.

No request it makes may get a 500, and every answer must match the document: its status
codes, content types and schemas (the checks beside ``not_a_server_error``). Seeded and
bounded in examples (not in time, which would skip operations on a busy machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from benchmarks.serve_load import ROOT, WRITE_TOKEN, ServerProcess
from cli.main import cli
from cli.openapi import document

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")


def test_schemathesis_finds_no_server_error(store_url: str, tmp_path: Path) -> None:
    policy = ROOT / "ledger" / "examples" / "sla-a.toml"
    result = CliRunner().invoke(cli, ["--store", store_url, "contract", "register", str(policy)])
    assert result.exit_code == 0, result.output
    server = ServerProcess(store_url)
    try:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
               "PYTHONPATH": str(Path(__file__).parent), "NO_COLOR": "1"}
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run",
             f"http://127.0.0.1:{server.port}/openapi.json", "--checks", ",".join(CHECKS),
             "--header", f"Authorization: Bearer {WRITE_TOKEN}", "--max-examples", "5", "--seed", "21",
             "--workers", "1", "--phases", "coverage,fuzzing"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        code, err = server.stop()
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # Every operation of the document (but /openapi.json itself, which schemathesis leaves out).
    operations = sum(len(methods) for path, methods in document()["paths"].items() if path != "/openapi.json")
    assert f"Tested: {operations}\n" in run.stdout, run.stdout[-4000:]
    assert " passed" in run.stdout
    assert "Traceback" not in err
    assert code == 0, err
