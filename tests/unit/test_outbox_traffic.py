"""The sender's byte counters reach the health reading: the file the sender keeps, read by the probe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from appliance.outbox import traffic
from appliance.settings import load_settings
from appliance.telemetry import probes


def test_counters_grow_across_runs_and_the_probe_reports_them(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    path = traffic.path_for(settings.data_dir)
    assert probes.outbox(settings, datetime.now(UTC)).payload_bytes is None  # never sent: unknown, not zero
    first = traffic.start(path)
    traffic.write(path, first.plus(1000, 1100, 100))
    second = traffic.start(path)  # a restarted sender continues from the file
    assert second.since == first.since
    traffic.write(path, second.plus(500, 550, 0))
    out = probes.outbox(settings, datetime.now(UTC))
    assert (out.payload_bytes, out.wire_bytes, out.resent_bytes) == (1500, 1650, 100)
    assert out.bytes_since is not None and out.bytes_since.isoformat().startswith(first.since[:19])
    path.write_text("{not json")
    assert traffic.read(path) is None and probes.outbox(settings, datetime.now(UTC)).wire_bytes is None


def test_the_last_transfer_survives_a_restart_and_a_file_without_it_reads(tmp_path: Path) -> None:
    path = traffic.path_for(tmp_path)
    at = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    traffic.write(path, traffic.start(path).plus(3000, 3300, 0).completed(3000, 1.5, at))
    again = traffic.start(path).plus(10, 11, 0)  # a restarted sender keeps the last transfer it knew
    assert (again.last_bytes, again.last_seconds, again.last_at) == (3000, 1.5, at.isoformat())
    assert again.payload_bytes == 3010
    path.write_text('{"payload_bytes": 1, "wire_bytes": 2, "resent_bytes": 0, "since": ""}')  # an older sender's
    older = traffic.read(path)
    assert older is not None and (older.last_bytes, older.last_at) == (0, "")
    assert probes.link(load_settings(data_dir=tmp_path, outbox={"host": ""})).throughput_bps is None
