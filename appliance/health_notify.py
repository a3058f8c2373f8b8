"""systemd readiness and watchdog, without a systemd Python library (sd_notify(3) protocol).

A service unit with ``Type=notify`` and ``WatchdogSec=`` gives the process ``$NOTIFY_SOCKET`` and
``$WATCHDOG_USEC``. ``start_watchdog(checks)`` sends ``READY=1`` and then, every half watchdog period,
runs every check and sends ``WATCHDOG=1`` only when all of them pass. A check is a real probe of the
thing the service is for (the database takes a write lock, the MQTT loop has beaten recently, the signer
worker is alive), so a hung main loop stops feeding the watchdog and systemd restarts the service.

Outside systemd (no ``$NOTIFY_SOCKET``) every function is a no-op and ``start_watchdog`` returns None.

Where to call it (the lead wires these):
  - ``appliance serve``: after the web app is listening:
    ``start_watchdog([database_writable(settings.db_url_path), web_beat.fresh, signer_beat.fresh])``
  - ``appliance outbox run``: after the first connect attempt:
    ``start_watchdog([database_writable(db_path), mqtt_beat.fresh])`` with ``mqtt_beat.beat()`` called from the
    MQTT loop / sender loop on every turn.
  - ``province serve``: ``start_watchdog([database_writable(catalogue_path), receiver_beat.fresh])``.
  Call ``stopping()`` when a SIGTERM starts the shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

Check = Callable[[], bool]


def _socket_address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):  # abstract namespace
        return "\0" + addr[1:]
    return addr


def notify(message: str) -> bool:
    """Send one sd_notify datagram (e.g. ``"READY=1"``, ``"STATUS=..."``); False when not under systemd
    or when the socket cannot be reached."""
    addr = _socket_address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.settimeout(2.0)  # a notify socket nobody reads must not hang the service
            s.connect(addr)
            s.sendall(message.encode())
    except OSError as err:
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), err)
        return False
    return True


def ready(status: str | None = None) -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    return notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Half the watchdog period in seconds, or None when systemd did not arm a watchdog for this process."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


class Heartbeat:
    """Set by a loop on every turn; ``fresh`` is a check that fails when the loop has not turned for
    ``max_age`` seconds (a hung MQTT loop, a dead signer worker)."""

    def __init__(self, name: str, max_age: float) -> None:
        self.name = name
        self.max_age = max_age
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self._last = time.monotonic()

    def fresh(self) -> bool:
        with self._lock:
            age = time.monotonic() - self._last
        if age > self.max_age:
            log.warning("%s has not beaten for %.0f s", self.name, age)
            return False
        return True


def sqlite_file(url: str) -> Path | None:
    """The database file behind an SQLAlchemy SQLite URL (None for other databases)."""
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def http_alive(url: str, timeout: float = 5.0) -> Check:
    """A check that the local web server answers `url` (any HTTP status below 500)."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own server on loopback, with the box's certificate

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310
                return int(resp.status) < 500
        except urllib.error.HTTPError as err:
            return err.code < 500
        except OSError as err:
            log.warning("web self-check %s failed: %s", url, err)
            return False

    return check


def when_listening(host: str, port: int, then: Callable[[], object], timeout: float = 120.0) -> threading.Thread:
    """Run `then` in a thread once `host:port` accepts connections (e.g. READY=1 after uvicorn starts)."""

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    break
            except OSError:
                time.sleep(0.2)
        then()

    thread = threading.Thread(target=wait, name="sd-ready", daemon=True)
    thread.start()
    return thread


def database_writable(path: Path, timeout: float = 5.0) -> Check:
    """A check that the SQLite database at `path` can take its write lock (the file system is writable,
    the disk is not read-only after an SD-card error, no other process holds the lock forever)."""

    def check() -> bool:
        try:
            con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
            finally:
                con.close()
        except sqlite3.Error as err:
            log.warning("database %s is not writable: %s", path, err)
            return False
        return True

    return check


def run_checks(checks: Sequence[Check]) -> list[int]:
    """Indexes of the checks that failed (a check that raises has failed)."""
    failed: list[int] = []
    for i, check in enumerate(checks):
        try:
            ok = bool(check())
        except Exception:  # a broken probe must not kill the feeder: it just does not feed
            log.exception("health check %d raised", i)
            ok = False
        if not ok:
            failed.append(i)
    return failed


class Watchdog:
    """The feeder thread; ``stop()`` ends it (tests, shutdown)."""

    def __init__(self, checks: Sequence[Check], interval: float) -> None:
        self.checks = list(checks)
        self.interval = interval
        self.fed = 0
        self.withheld = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        healthy = True
        while not self._stop.is_set():
            failed = run_checks(self.checks)
            if not failed:
                notify("WATCHDOG=1")
                self.fed += 1
                if not healthy:
                    notify("STATUS=healthy")
                healthy = True
            else:
                self.withheld += 1
                notify(f"STATUS=unhealthy: check(s) {','.join(map(str, failed))} failed")
                healthy = False
            self._stop.wait(self.interval)


def start_watchdog(checks: list[Callable[[], bool]], *, status: str | None = None) -> Watchdog | None:
    """Tell systemd the service is ready and feed its watchdog while every check passes.

    Returns the running feeder, or None when not started by systemd with a watchdog (READY=1 is still sent
    when there is a notify socket)."""
    if _socket_address() is None:
        return None
    failed = run_checks(checks)
    if failed:
        log.warning("starting with failing health check(s) %s", failed)
    ready(status)
    interval = watchdog_interval()
    if interval is None:
        return None
    return Watchdog(checks, interval).start()
