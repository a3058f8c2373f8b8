"""`make run`'s loop (scripts/dev_loop.py): the whole loop starts, and a SIGTERM to it stops every service
it started (it used to leave five running)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import need
from tests.mqtt import free_port

ROOT = Path(__file__).resolve().parents[2]


def _ours(marker: str) -> list[int]:
    """Processes whose environment carries our private data directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"APPLIANCE_DATA_DIR={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_sigterm_stops_every_service_of_the_loop(tmp_path: Path) -> None:
    need("mosquitto")
    need("softhsm2-util")
    data = str(tmp_path / "var")
    web, dashboard = free_port(), free_port()
    env = {
        **os.environ,
        "APPLIANCE_DATA_DIR": data,
        "APPLIANCE_WEB__PORT": str(web),
        "PROVINCE_DASHBOARD_PORT": str(dashboard),
        "APPLIANCE_CONFIG": "",
    }
    loop = subprocess.Popen(
        [sys.executable, "scripts/dev_loop.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/login", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert loop.poll() is None, "the loop ended on its own"
            time.sleep(0.5)
        else:
            pytest.fail("the web UI did not answer")
        started = [pid for pid in _ours(data) if pid != loop.pid]
        assert len(started) >= 5, started  # broker, province, outbox, telemetry, web UI
        loop.send_signal(signal.SIGTERM)
        loop.wait(60)
        for _ in range(60):
            left = [pid for pid in _ours(data) if Path(f"/proc/{pid}").exists()]
            if not left:
                break
            time.sleep(0.5)
        assert not left, f"still running after SIGTERM: {left}"
    finally:
        if loop.poll() is None:
            loop.kill()
        for pid in _ours(data):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
