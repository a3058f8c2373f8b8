"""appliance.health_notify speaks the sd_notify datagram protocol to a real AF_UNIX socket, and feeds the
watchdog only while every health check passes."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import health_notify
from tests.mqtt import wait_for


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s period -> checks every 0.05 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield s
    s.close()


def _recv(s: socket.socket) -> str:
    return s.recv(4096).decode()


def test_ready_then_watchdog_only_while_checks_pass(notify_socket: socket.socket, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    sqlite3.connect(db).close()
    beat = health_notify.Heartbeat("mqtt loop", max_age=3600)
    healthy = {"value": True}
    dog = health_notify.start_watchdog([health_notify.database_writable(db), beat.fresh, lambda: healthy["value"]])
    assert dog is not None
    try:
        assert _recv(notify_socket) == "READY=1"
        assert _recv(notify_socket) == "WATCHDOG=1"
        healthy["value"] = False
        seen = [_recv(notify_socket) for _ in range(6)]
        assert any(m.startswith("STATUS=unhealthy: check(s) 2 failed") for m in seen)
        # once the unhealthy status is reported, nothing feeds the watchdog any more
        first = next(i for i, m in enumerate(seen) if m.startswith("STATUS=unhealthy"))
        assert "WATCHDOG=1" not in seen[first:]
        healthy["value"] = True
        wait_for(lambda: _recv(notify_socket) == "WATCHDOG=1", 10, "feeding to resume")
    finally:
        dog.stop()
    assert dog.fed >= 2 and dog.withheld >= 1


def test_database_check_fails_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    check = health_notify.database_writable(db, timeout=0.2)
    assert check() is True
    holder.execute("BEGIN IMMEDIATE")
    try:
        # the probe waits up to its busy timeout, then reports the database as not writable
        assert check() is False
    finally:
        holder.execute("ROLLBACK")
    assert check() is True


def test_stale_heartbeat_and_raising_check_count_as_failures() -> None:
    beat = health_notify.Heartbeat("signer", max_age=0.0)
    assert beat.fresh() is False

    def broken() -> bool:
        raise RuntimeError("probe bug")

    assert health_notify.run_checks([lambda: True, broken, beat.fresh]) == [1, 2]


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert health_notify.notify("READY=1") is False
    assert health_notify.start_watchdog([lambda: True]) is None


def test_watchdog_for_another_pid_is_ignored(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert health_notify.watchdog_interval() is None
    assert health_notify.start_watchdog([lambda: True]) is None
    assert _recv(notify_socket) == "READY=1"  # still ready, but no feeder for someone else's watchdog


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"appliance-test-{id(monkeypatch)}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        assert health_notify.stopping() is True
        assert _recv(s) == "STOPPING=1"
    finally:
        s.close()


def test_telemetry_run_reports_ready_feeds_the_watchdog_and_stops_cleanly(tmp_path: Path) -> None:
    """`appliance telemetry run` as systemd starts it (no broker reachable: readings go to the buffer)."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:  # drain like systemd does, or a full socket queue blocks the sender
        while not done.is_set():
            try:
                seen.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000", "APPLIANCE_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "telemetry", "run", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr").open("wb"),
    )
    try:
        assert wait_for(lambda: seen.count("WATCHDOG=1") >= 2 or proc.poll() is not None, 60)
        assert "READY=1" in seen, (seen, (tmp_path / "stderr").read_text()[-2000:])
        assert seen.index("READY=1") < seen.index("WATCHDOG=1")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert wait_for(lambda: "STOPPING=1" in seen, 10)
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
        reader.join(5)
        sock.close()
    assert proc.returncode == 0
    assert (tmp_path / "data" / "telemetry-buffer.db").exists()
    assert '"buffered"' in out.decode()
