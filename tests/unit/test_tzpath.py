"""``zoneinfo`` imported with the time-zone path from the disk cache (issue 17): the same path, no residue.

Each case runs in a fresh interpreter: ``zoneinfo`` sets its search path once, when imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import tzpath

ROOT = Path(__file__).resolve().parents[2]

# Prints what a process ends with: zoneinfo's path, whether sysconfig read its build
# configuration, whether PYTHONTZPATH is left in the environment, and a zone's offset.
_PROBE = """
import json, os, sys
{before}
import sysconfig, zoneinfo
from datetime import datetime
paris = datetime(2026, 7, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
print(json.dumps({{"tzpath": list(zoneinfo.TZPATH), "config_read": sysconfig._CONFIG_VARS is not None,
                  "env": os.environ.get("PYTHONTZPATH"), "offset": str(paris.utcoffset())}}))
"""
_PRELOAD = "from ledger.tzpath import import_zoneinfo; import_zoneinfo()"


def _run(before: str, env: dict[str, str]) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONTZPATH", "LEDGER_CACHE_DIR")}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)], cwd=ROOT,
                         env={**full, **env}, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.fixture(scope="module")
def plain() -> dict[str, object]:
    """What zoneinfo sets by itself, without the ledger."""
    return _run("", {})


def test_the_cached_path_is_zoneinfos_own(tmp_path: Path, plain: dict[str, object]) -> None:
    env = {"LEDGER_CACHE_DIR": str(tmp_path)}
    first = _run(_PRELOAD, env)  # reads sysconfig once and keeps the value
    (kept,) = tmp_path.glob("tzpath-*")
    second = _run(_PRELOAD, env)  # from the cache: the build configuration is never read
    assert plain["config_read"] is True
    assert first["config_read"] is True
    assert second["config_read"] is False
    for result in (first, second):
        assert result["tzpath"] == plain["tzpath"]
        assert result["env"] is None  # the variable was set for the import alone
        assert result["offset"] == "2:00:00"
    assert kept.read_text(encoding="utf-8") == os.pathsep.join(plain["tzpath"]) + "#end\n"  # type: ignore[arg-type]


def test_a_cut_or_foreign_cache_file_is_not_trusted(tmp_path: Path, plain: dict[str, object]) -> None:
    env = {"LEDGER_CACHE_DIR": str(tmp_path)}
    _run(_PRELOAD, env)
    (kept,) = tmp_path.glob("tzpath-*")
    kept.write_text("/nowhere", encoding="utf-8")  # cut short: no end mark
    again = _run(_PRELOAD, env)
    assert again["tzpath"] == plain["tzpath"]
    assert again["config_read"] is True


def test_the_callers_variable_and_a_disabled_cache_win(tmp_path: Path, plain: dict[str, object]) -> None:
    mine = _run(_PRELOAD, {"LEDGER_CACHE_DIR": str(tmp_path), "PYTHONTZPATH": "/usr/share/zoneinfo"})
    assert mine["tzpath"] == ["/usr/share/zoneinfo"]
    assert mine["env"] == "/usr/share/zoneinfo"
    assert not list(tmp_path.iterdir())  # nothing cached: zoneinfo read the caller's variable
    off = _run(_PRELOAD, {"LEDGER_CACHE_DIR": ""})
    assert off["tzpath"] == plain["tzpath"]
    assert off["config_read"] is True


def test_the_key_is_the_configuration_files_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "_sysconfigdata_x.py"
    config.write_text("build_time_vars = {}\n", encoding="utf-8")
    monkeypatch.setenv("LEDGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tzpath, "build_config_file", lambda: str(config))
    before = tzpath.cache_file()
    assert before is not None
    assert before == tzpath.cache_file()
    config.write_text("build_time_vars = {'TZPATH': '/elsewhere'}\n", encoding="utf-8")  # rebuilt
    assert tzpath.cache_file() not in (None, before)
    config.unlink()
    assert tzpath.cache_file() is None  # not where it was: zoneinfo asks sysconfig itself


def test_this_interpreters_configuration_file_is_found() -> None:
    import sysconfig

    found = tzpath.build_config_file()
    assert found is not None
    assert os.path.basename(found) == sysconfig._get_sysconfigdata_name() + ".py"  # type: ignore[attr-defined]
    assert os.path.isfile(found)


def test_the_cli_reads_the_path_from_the_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONTZPATH"}
    env["LEDGER_CACHE_DIR"] = str(tmp_path)
    ledger = Path(sys.executable).with_name("ledger")
    subprocess.run([str(ledger), "--store", f"sqlite:///{tmp_path / 'l.db'}", "init"], cwd=tmp_path, env=env,
                   capture_output=True, check=True)
    assert len(list(tmp_path.glob("tzpath-*"))) == 1
