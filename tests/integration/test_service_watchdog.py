"""The services speak sd_notify as systemd expects: READY=1 once serving, then WATCHDOG=1 while healthy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mqtt import free_port


def notify_socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(1.0)
    return s


def messages_until(sock: socket.socket, wanted: set[str], timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not wanted <= set(seen):
        try:
            seen.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            continue
    return seen


@pytest.mark.slow
def test_web_service_reports_ready_and_feeds_the_watchdog(tmp_path: Path) -> None:
    sock = notify_socket(tmp_path / "notify")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "1000000",  # feed every 0.5 s
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve", "--no-scanner", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen = messages_until(sock, {"READY=1", "WATCHDOG=1"}, timeout=60)
        assert "READY=1" in seen, seen
        assert seen.count("WATCHDOG=1") >= 1, seen
        assert seen.index("READY=1") < seen.index("WATCHDOG=1")
        # the web server really answered before READY: the check probes /login
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        proc.terminate()
        proc.wait(15)
        sock.close()
