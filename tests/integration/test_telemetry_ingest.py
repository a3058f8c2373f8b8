"""The province's telemetry ingest on real batches: one bad message (a naive timestamp, an integer no column
holds, a value the database refuses) is logged and skipped, and every other box's data in the same batch
is stored; the schema refuses what the database could not hold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from appliance.readiness import checks, verdict
from appliance.telemetry.schema import Counters, Incident, Reading, Status, parse_message
from province.telemetry import DayCounters, Device, IncidentRow, Ingest, open_telemetry

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def reading(device: str, commune: str = "19999", at: datetime = NOW) -> Reading:
    return Reading(device_id=device, commune_code=commune, boot_id="boot-1", at=at, version="0.1.0")


def counters(device: str, received: int = 5, commune: str = "19999") -> Counters:
    return Counters(
        device_id=device,
        commune_code=commune,
        day="2026-03-02",
        at=NOW,
        dossiers_received=received,
        components_digitized=3,
        results_electronic=2,
        reused=1,
    )


def msg(m: Reading | Counters | Incident | Status) -> tuple[str, bytes]:
    kind = "status" if isinstance(m, Status) else "telemetry"
    return f"devices/{m.device_id}/{kind}", m.model_dump_json().encode()


def tampered(m: Reading | Counters | Status, **fields: object) -> tuple[str, bytes]:
    """The message as JSON with some fields replaced by values the box's own models would never produce."""
    topic, payload = msg(m)
    data = json.loads(payload)
    data.update(fields)
    return topic, json.dumps(data).encode()


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    return open_telemetry(f"sqlite:///{tmp_path / 'catalogue.db'}")


def stored(factory: sessionmaker[Session]) -> tuple[set[str], dict[str, int]]:
    with factory() as s:
        devices = set(s.scalars(select(Device.device_id)))
        days = {c.device_id: c.dossiers_received for c in s.scalars(select(DayCounters))}
    return devices, days


def test_one_bad_message_never_costs_the_others_their_data(
    factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    ing = Ingest(factory, history_every_s=0)
    batch = [
        msg(reading("box-a")),
        tampered(reading("box-naive"), at="2026-03-02T03:00:00"),  # no offset: was a TypeError in comparisons
        msg(counters("box-a")),
        tampered(counters("box-huge"), dossiers_received=2**63),  # was an OverflowError from SQLite
        tampered(Status(state="online", device_id="box-seq", boot_id="b", seq=1), seq=2**64),
        msg(reading("box-b", "19888")),
        msg(counters("box-b", received=9, commune="19888")),
    ]
    with caplog.at_level("WARNING", logger="province.telemetry"):
        ing.apply(batch, now=NOW)
    devices, days = stored(factory)
    assert devices == {"box-a", "box-b"}
    assert days == {"box-a": 5, "box-b": 9}
    assert ing.stats.invalid == 3 and ing.stats.failed == 0 and ing.stats.readings == 2
    for bad in ("box-naive", "box-huge", "box-seq"):
        assert f"invalid telemetry from {bad}" in caplog.text or f"invalid status from {bad}" in caplog.text
    assert "timezone" in caplog.text  # the reason, for whoever reads the log


@pytest.fixture
def refusing_database(factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    """Fault: the database itself refuses one box's counters (a constraint the schema cannot know of)."""
    with factory() as s, s.begin():
        s.execute(
            text(
                "CREATE TRIGGER refuse_box_bad BEFORE INSERT ON tm_counters WHEN NEW.device_id = 'box-bad' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
            )
        )
    yield factory


def test_a_message_the_database_refuses_is_skipped_alone(
    refusing_database: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    factory = refusing_database
    ing = Ingest(factory, history_every_s=0)
    incident = Incident(device_id="box-a", commune_code="19999", incident_id="i-1", at=NOW, reporter="A", text="x")
    batch = [
        msg(reading("box-a")),
        msg(reading("box-bad")),  # stored: only its counters are refused
        msg(counters("box-bad")),
        msg(counters("box-a")),
        msg(incident),
    ]
    with caplog.at_level("WARNING", logger="province.telemetry"):
        ing.apply(batch, now=NOW)
    devices, days = stored(factory)
    assert devices == {"box-a", "box-bad"}
    assert days == {"box-a": 5}
    with factory() as s:
        assert s.get(IncidentRow, "i-1") is not None
        bad = s.get(Device, "box-bad")
        assert bad is not None and bad.messages == 1  # the refused message left no trace on the box's row
    assert ing.stats.failed == 1 and ing.stats.invalid == 0
    assert "telemetry from box-bad not stored" in caplog.text and "refused by the database" in caplog.text


def test_a_box_first_seen_in_a_refused_message_is_not_half_stored(refusing_database: sessionmaker[Session]) -> None:
    ing = Ingest(refusing_database, history_every_s=0)
    ing.apply([msg(counters("box-bad")), msg(reading("box-a"))], now=NOW)
    devices, _ = stored(refusing_database)
    assert devices == {"box-a"}
    ing.apply([msg(reading("box-bad"))], now=NOW + timedelta(minutes=1))  # and the box still gets in later
    assert stored(refusing_database)[0] == {"box-a", "box-bad"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("at", "2026-03-02T03:00:00"),
        ("dossiers_received", 2**63),
        ("dossiers_received", 2**31),  # the province's counter columns are 32-bit (PostgreSQL INTEGER)
        ("dossiers_received", -1),
        ("day", "02/03/2026"),
        ("commune_code", "1" * 21),
    ],
)
def test_the_schema_refuses_what_no_column_holds(field: str, value: object) -> None:
    _, payload = tampered(counters("box-a"), **{field: value})
    with pytest.raises(ValidationError):
        parse_message(payload)


def test_timestamps_keep_their_offset() -> None:
    _, payload = tampered(reading("box-a"), at="2026-03-02T10:00:00+07:00")
    r = parse_message(payload)
    assert r.at == NOW and r.at.utcoffset() is not None
    with pytest.raises(ValidationError):
        Reading(device_id="box-a", commune_code="19999", boot_id="b", at=datetime(2026, 3, 2), version="1")


# --- a box reports the commune it is registered for, or is flagged ---------------------------------
def test_a_registered_box_is_recorded_at_its_registered_commune(
    factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    from province.dashboard import readiness
    from province.telemetry import AlertRow, load_registry

    load_registry(factory, [{"device_id": "19999-01", "commune_code": "19999", "commune_name": "Xã Quảng Phú"}])
    ing = Ingest(factory, history_every_s=0)
    incident = Incident(
        device_id="19999-01", commune_code="19888", incident_id="i-2", at=NOW, reporter="A", text="máy quét hỏng"
    )
    with caplog.at_level("WARNING", logger="province.telemetry"):
        ing.apply(
            [
                msg(reading("19999-01", "19888")),  # claims another commune
                msg(counters("19999-01", commune="19888")),
                msg(incident),
                msg(reading("19888-01", "19888")),  # not in the registry: what it says is all we know
            ],
            now=NOW,
        )
    with factory() as s:
        box = s.get(Device, "19999-01")
        assert box is not None and box.commune_code == "19999"
        assert box.verdict == "failing"
        flag = next(i for i in box.items if i["item"] == "commune_code")
        assert flag["level"] == "failing" and "19888" in flag["reason"] and "19999" in flag["reason"]
        day = s.scalars(select(DayCounters).where(DayCounters.device_id == "19999-01")).one()
        assert day.commune_code == "19999"
        inc = s.get(IncidentRow, "i-2")
        assert inc is not None and inc.commune_code == "19999"
        alerts = {a.key for a in s.scalars(select(AlertRow).where(AlertRow.device_id == "19999-01"))}
        assert "commune_code" in alerts
        other = s.get(Device, "19888-01")
        assert other is not None and other.commune_code == "19888"
        assert not any(i["item"] == "commune_code" for i in other.items)
        rows = {r.device_id: r for r in readiness.query_rows(s)[0]}
        assert rows["19999-01"].commune_code == "19999" and rows["19999-01"].verdict == "failing"
    assert ing.stats.commune_mismatches == 3
    assert "19999-01 claims commune '19888', registered for '19999'" in caplog.text

    ing.apply([msg(reading("19999-01", "19999"))], now=NOW + timedelta(minutes=1))  # configuration fixed
    with factory() as s:
        box = s.get(Device, "19999-01")
        assert box is not None and box.commune_code == "19999"
        assert not any(i["item"] == "commune_code" for i in box.items)
        assert box.verdict == verdict(checks(reading("19999-01")))  # the readings' own verdict again


def test_province_devices_loads_the_provisioning_registry(tmp_path: Path) -> None:
    """`province devices registry.db` reads the registry provisioning keeps (no export step needed), and a
    box already recorded at the commune it claimed is moved to its registered one."""
    from province.cli import main
    from provisioning import registry

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    factory = open_telemetry(url)
    Ingest(factory).apply([msg(reading("19999-02", "00007"))], now=NOW)  # before the registry was loaded
    reg = tmp_path / "ca" / "registry.db"
    with registry.open_registry(reg) as con:
        registry.add_device(con, commune_code="19999", commune_name="Xã Quảng Phú", province_code="44", box_no=2)
    assert main(["devices", "--db-url", url, str(reg)]) == 0
    with factory() as s:
        box = s.get(Device, "19999-02")
        assert box is not None and box.commune_code == "19999"
    listing = tmp_path / "registry.json"
    listing.write_text(json.dumps([{"device_id": "19999-02", "commune_code": "19888"}]))
    assert main(["devices", "--db-url", url, str(listing)]) == 0
    ing = Ingest(factory)
    ing.apply([msg(counters("19999-02", commune="19999"))], now=NOW)
    assert ing.stats.commune_mismatches == 1
    with factory() as s:
        assert s.scalars(select(DayCounters.commune_code)).one() == "19888"
