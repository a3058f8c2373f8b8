"""The health collector: every reading runs in its own daemon thread under its own deadline.

A reading that hangs (a wedged USB scanner, a token driver stuck in C) is reported as a timeout and its
field stays null; the collection finishes on time. A reading still hung from the previous round is not
started again, so hung threads never pile up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.settings import Settings
from appliance.telemetry import pi, probes
from appliance.telemetry.schema import Reading, ReadingError

log = logging.getLogger(__name__)

Probe = Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    value: Any = None
    error: str | None = None


@dataclass
class Deadlines:
    """Runs callables in daemon threads; remembers the ones still running past their deadline."""

    _hung: dict[str, threading.Thread] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_all(self, probes_: Mapping[str, Probe], timeouts: Mapping[str, float]) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        boxes: dict[str, list[Outcome]] = {}
        threads: dict[str, tuple[threading.Thread, float]] = {}
        for name, fn in probes_.items():
            with self._lock:
                old = self._hung.get(name)
                if old is not None and old.is_alive():
                    results[name] = Outcome(error="still hung from an earlier reading")
                    continue
                self._hung.pop(name, None)
            box: list[Outcome] = []
            boxes[name] = box

            def target(fn: Probe = fn, box: list[Outcome] = box) -> None:
                try:
                    box.append(Outcome(value=fn()))
                except Exception as err:  # noqa: BLE001 - a failed reading is data, not a crash
                    box.append(Outcome(error=f"{type(err).__name__}: {err}".replace("\n", " ")[:300]))

            t = threading.Thread(target=target, name=f"reading-{name}", daemon=True)
            t.start()
            threads[name] = (t, time.monotonic() + timeouts.get(name, 5.0))
        for name, (t, deadline) in threads.items():
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                with self._lock:
                    self._hung[name] = t
                log.warning("reading %s timed out", name)
                results[name] = Outcome(error=f"timeout after {timeouts.get(name, 5.0):g} s")
            else:
                results[name] = boxes[name][0] if boxes[name] else Outcome(error="no result")
        return results


DEFAULT_TIMEOUTS: dict[str, float] = {
    "scanner": 15.0,
    "camera": 10.0,
    "tokens": 20.0,
    "disk": 5.0,
    "cpu_temp_c": 5.0,
    "power": 5.0,
    "memory": 2.0,
    "uptime_s": 2.0,
    "clock": 5.0,
    "outbox": 10.0,
    "fleet": 2.0,
    "link": 10.0,  # the connect itself gives up after LINK_CONNECT_S
    "roster": 10.0,
}
LINK_CONNECT_S = 5.0  # broadband check: TCP connect + TLS handshake to the broker


@dataclass
class Collector:
    """Builds `Reading`s for one box. `overrides` replaces probes by name (tests inject a hung one)."""

    settings: Settings
    firmware: pi.Firmware = field(default_factory=pi.Vcgencmd)
    fleet_file: Path = probes.FLEET_RUN_FILE
    timeouts: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    overrides: dict[str, Probe] = field(default_factory=dict)
    with_tokens: bool = True
    link_rtt_ms: float | None = None
    _deadlines: Deadlines = field(default_factory=Deadlines)

    def probes(self, now: datetime) -> dict[str, Probe]:
        s = self.settings
        found: dict[str, Probe] = {
            "scanner": lambda: probes.scanner(s),
            "camera": lambda: probes.camera(s),
            "disk": lambda: probes.disk(s.data_dir),
            "cpu_temp_c": lambda: pi.cpu_temp(self.firmware),
            "power": lambda: pi.power(self.firmware),
            "memory": probes.memory,
            "uptime_s": probes.uptime_s,
            "clock": probes.clock,
            "outbox": lambda: probes.outbox(s, now, self.link_rtt_ms),
            "fleet": lambda: probes.fleet_run(self.fleet_file),
            "link": lambda: probes.link(s, deadline_s=min(LINK_CONNECT_S, self.timeouts["link"])),
            "roster": lambda: probes.roster(s, now),
        }
        if self.with_tokens:
            found["tokens"] = lambda: probes.tokens(s, timeout_s=max(1.0, self.timeouts["tokens"] - 1))
        found.update(self.overrides)
        return found

    def collect(self, now: datetime | None = None) -> Reading:
        now = now or datetime.now(UTC)
        outcomes = self._deadlines.run_all(self.probes(now), self.timeouts)
        values = {k: o.value for k, o in outcomes.items() if o.error is None}
        errors = [ReadingError(item=k, error=o.error) for k, o in sorted(outcomes.items()) if o.error is not None]
        return Reading(
            device_id=self.settings.device_id,
            commune_code=self.settings.commune_code,
            boot_id=probes.boot_id(),
            at=now,
            version=probes.software_version(),
            errors=errors,
            **values,
        )
