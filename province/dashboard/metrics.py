"""`/metrics` in the Prometheus text exposition format (0.0.4): per-device gauges with commune labels."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from province.dashboard.readiness import Row

VERDICT_VALUE = {"ok": 0, "warning": 1, "failing": 2, "none": 3}

GAUGES: tuple[tuple[str, str], ...] = (
    ("appliance_up", "1 when the box is online or offline as scheduled, 0 when overdue or never seen"),
    ("appliance_readiness", "0 ready, 1 needs attention, 2 not ready, 3 not installed"),
    ("appliance_last_seen_timestamp_seconds", "Unix time the province last heard from the box"),
    ("appliance_disk_used_ratio", "Data partition used, 0..1"),
    ("appliance_cpu_temperature_celsius", "CPU temperature"),
    ("appliance_outbox_depth", "Packages not yet receipted"),
    ("appliance_certificate_min_days", "Days until the first certificate on the box expires"),
    ("appliance_digitized_ratio_30d", "Dossiers with a digitized component / dossiers received, last 30 days"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(rows: Sequence[Row], now: datetime) -> str:
    lines: list[str] = []
    series: dict[str, list[str]] = {name: [] for name, _ in GAUGES}
    for r in rows:
        labels = (
            f'device="{_escape(r.device_id or "")}",commune="{_escape(r.commune_code)}",'
            f'commune_name="{_escape(r.name)}",province="{_escape(r.province_code)}"'
        )

        def put(name: str, value: float | None, labels: str = labels) -> None:
            if value is not None:
                series[name].append(f"{name}{{{labels}}} {value:g}")

        put("appliance_readiness", VERDICT_VALUE.get(r.verdict, 2))
        if r.device_id is None:
            continue
        put("appliance_up", 1 if r.connectivity in ("online", "scheduled") else 0)
        put("appliance_last_seen_timestamp_seconds", r.last_seen.timestamp() if r.last_seen else None)
        put("appliance_disk_used_ratio", None if r.disk_used_pct is None else r.disk_used_pct / 100.0)
        put("appliance_cpu_temperature_celsius", r.cpu_temp_c)
        put("appliance_outbox_depth", r.outbox_depth)
        put("appliance_certificate_min_days", r.min_cert_days)
        put("appliance_digitized_ratio_30d", None if r.digitized_pct is None else r.digitized_pct / 100.0)
    for name, help_text in GAUGES:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(series[name])
    return "\n".join(lines) + "\n"
