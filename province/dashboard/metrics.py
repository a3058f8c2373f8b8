"""`/metrics` in the Prometheus text exposition format (0.0.4): per-device gauges with commune labels, and the
officers' certificates per unit (`province.roster`)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from province import roster
from province.telemetry_db import UnitRow

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


CERTIFICATE_GAUGES: tuple[tuple[str, str], ...] = (
    ("appliance_officers", "Officers of the unit per certificate verdict (never_seen: expected, no box saw them)"),
    ("appliance_organisation_certificate_usable", "1 when a box of the unit has a usable organisation certificate"),
    (
        "appliance_officer_certificate_days_left",
        "Days until the certificate of an officer (or the organisation) expires",
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def metrics_text(s: Session) -> str:
    """`/metrics` straight from the stored verdict rows: only the columns the gauges need, no Row objects."""
    series: dict[str, list[str]] = {name: [] for name, _ in GAUGES}
    query = select(
        UnitRow.device_id, UnitRow.commune_code, UnitRow.name, UnitRow.province_code, UnitRow.verdict,
        UnitRow.connectivity, UnitRow.last_seen, UnitRow.disk_used_pct, UnitRow.cpu_temp_c, UnitRow.outbox_depth,
        UnitRow.min_cert_days, UnitRow.digitized_pct,
    ).order_by(UnitRow.province_code, UnitRow.commune_code, UnitRow.key)  # fmt: skip
    for dev, code, name, prov, verdict, conn, seen, disk, temp, depth, cert, dig in s.execute(query):
        labels = (
            f'{{device="{_escape(dev or "")}",commune="{_escape(code)}",'
            f'commune_name="{_escape(name)}",province="{_escape(prov)}"}}'
        )
        series["appliance_readiness"].append(f"appliance_readiness{labels} {VERDICT_VALUE.get(verdict, 2)}")
        if dev is None:
            continue
        series["appliance_up"].append(f"appliance_up{labels} {1 if conn in ('online', 'scheduled') else 0}")
        if seen is not None:
            when = seen if seen.tzinfo is not None else seen.replace(tzinfo=UTC)
            series["appliance_last_seen_timestamp_seconds"].append(
                f"appliance_last_seen_timestamp_seconds{labels} {when.timestamp():g}"
            )
        for metric, value in (
            ("appliance_disk_used_ratio", None if disk is None else disk / 100.0),
            ("appliance_cpu_temperature_celsius", temp),
            ("appliance_outbox_depth", depth),
            ("appliance_certificate_min_days", cert),
            ("appliance_digitized_ratio_30d", None if dig is None else dig / 100.0),
        ):
            if value is not None:
                series[metric].append(f"{metric}{labels} {value:g}")
    series.update(certificate_series(s, datetime.now(UTC)))
    lines: list[str] = []
    for name, help_text in GAUGES + CERTIFICATE_GAUGES:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(series[name])
    return "\n".join(lines) + "\n"


def certificate_series(s: Session, now: datetime) -> dict[str, list[str]]:
    """The officers' certificate gauges of every unit with data (a box that sent a roster, or an expected
    officer list); labels `commune`, `commune_name`, `province` (+ `verdict`, or `username` and `role`)."""
    series: dict[str, list[str]] = {name: [] for name, _ in CERTIFICATE_GAUGES}
    for u in roster.units_view(s, now):
        if not (u.reported or u.has_list):
            continue
        unit = (
            f'commune="{_escape(u.commune_code)}",commune_name="{_escape(u.name)}",'
            f'province="{_escape(u.province_code)}"'
        )
        for v in roster.OFFICER_VERDICTS:
            series["appliance_officers"].append(f'appliance_officers{{{unit},verdict="{v}"}} {u.count(v)}')
        if u.reported:
            usable = 1 if u.org_usable else 0
            series["appliance_organisation_certificate_usable"].append(
                f"appliance_organisation_certificate_usable{{{unit}}} {usable}"
            )
        for line in u.lines:
            if line.days_left is not None:
                series["appliance_officer_certificate_days_left"].append(
                    f'appliance_officer_certificate_days_left{{{unit},username="{_escape(line.username)}",'
                    f'role="{line.role}"}} {line.days_left}'
                )
    return series
