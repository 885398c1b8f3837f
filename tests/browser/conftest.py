"""Headless Chromium for the HTML pages (Debian's ``chromium``): installed when missing, never skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


def _install() -> None:
    if os.geteuid() != 0:
        pytest.fail("chromium is missing and this is not root: `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary (``LEDGER_CHROMIUM`` or /usr/bin/chromium), installed with apt-get when missing."""
    path = os.environ.get("LEDGER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _install()
        path = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(path).exists(), f"no chromium at {path}"
    return path


class Browser:
    """Runs one headless Chromium per call: the DOM after load, or a screenshot."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary = binary
        self.profile = profile

    def _run(self, *args: str) -> str:
        cmd = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def dom(self, page: Path) -> str:
        return self._run("--dump-dom", page.as_uri())

    def screenshot(self, page: Path, out: Path, size: tuple[int, int] = (1280, 1400)) -> bytes:
        self._run(f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", "--hide-scrollbars",
                  page.as_uri())
        return out.read_bytes()


@pytest.fixture(scope="session")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Browser:
    return Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
