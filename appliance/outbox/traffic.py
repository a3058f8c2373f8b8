"""What the sender put on the link, kept across restarts in one small JSON file beside the database, so
the health publisher (another process) can report it: segment bytes (payload), everything published
(wire: topics and payloads, MQTT framing excluded) and segment bytes sent more than once (resent).
Beside them, the last package transfer the receiver completed: the segment bytes that transfer put on the
link and the seconds it took (the link's recent throughput, as the outbox actually carried it).

The counters only grow (like Prometheus counters) from `since`; the file is replaced atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

FILE_NAME = "outbox-traffic.json"


@dataclass(frozen=True, slots=True)
class Traffic:
    payload_bytes: int = 0
    wire_bytes: int = 0
    resent_bytes: int = 0
    since: str = ""  # ISO 8601 UTC: when counting started on this box
    # the last completed package transfer: segment bytes it published, its duration, when it completed
    last_bytes: int = 0
    last_seconds: float = 0.0
    last_at: str = ""  # ISO 8601 UTC; "" = no transfer completed yet

    def plus(self, payload: int, wire: int, resent: int) -> Traffic:
        return replace(
            self,
            payload_bytes=self.payload_bytes + payload,
            wire_bytes=self.wire_bytes + wire,
            resent_bytes=self.resent_bytes + resent,
        )

    def completed(self, carried: int, seconds: float, at: datetime) -> Traffic:
        """The same totals with `carried` bytes in `seconds` as the last completed transfer."""
        return replace(
            self, last_bytes=carried, last_seconds=round(seconds, 3), last_at=at.isoformat(timespec="seconds")
        )


def path_for(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def read(path: Path) -> Traffic | None:
    """The counters, or None when the sender never wrote them (or the file is unreadable)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Traffic(
            payload_bytes=max(0, int(raw["payload_bytes"])),
            wire_bytes=max(0, int(raw["wire_bytes"])),
            resent_bytes=max(0, int(raw["resent_bytes"])),
            since=str(raw.get("since") or ""),
            last_bytes=max(0, int(raw.get("last_bytes") or 0)),
            last_seconds=max(0.0, float(raw.get("last_seconds") or 0.0)),
            last_at=str(raw.get("last_at") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start(path: Path) -> Traffic:
    """The totals to continue from (a new `since` when there are none)."""
    return read(path) or Traffic(since=datetime.now(UTC).isoformat(timespec="seconds"))


def write(path: Path, totals: Traffic) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(totals)), encoding="utf-8")
    tmp.replace(path)
