"""Where a commune code sits, as every province page shows it (province.dashboard.units): the units of one
province, the unit's title, and one stand-in for a code the units table lacks on the readiness rows and
the certificates page alike."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from province import roster
from province.dashboard import readiness
from province.dashboard.units import UNKNOWN_PROVINCE, in_province, place_of, places, unknown
from province.telemetry_db import Device, Unit, open_telemetry

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    factory = open_telemetry(f"sqlite:///{tmp_path / 'tm.db'}")
    with factory() as s, s.begin():
        s.add_all(
            [
                Unit(commune_code="19999", name="Quảng Phú", province_code="44", province_name="Quảng Trị"),
                Unit(commune_code="19888", name="Phường Đồng Hới", kind="phường", province_code="44",
                     province_name="Quảng Trị"),
                Unit(commune_code="000.00.44.H12", name="Sở Nội vụ", kind="sở", level="province",
                     province_code="44", province_name="Quảng Trị"),
                Unit(commune_code="00004", name="Ba Đình", kind="phường", province_code="01", province_name="Hà Nội"),
                Device(device_id="box-a", commune_code="19999", state="online", last_seen=NOW),
                Device(device_id="box-x", commune_code="77777", state="online", last_seen=NOW),  # not in the table
            ]
        )  # fmt: skip
    return factory


def test_the_units_of_one_province_or_of_some_codes(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        assert set(places(s, province="44")) == {"19999", "19888", "000.00.44.H12"}
        assert set(places(s, communes=["00004", "77777"])) == {"00004"}
        assert set(places(s, province="44", communes=["00004", "19999"])) == {"19999"}
        assert set(places(s)) == {"19999", "19888", "000.00.44.H12", "00004"}
        assert set(s.scalars(select(Unit.commune_code).where(Unit.commune_code.in_(in_province("01"))))) == {"00004"}
        one = places(s, province="44")["000.00.44.H12"]
    assert (one.name, one.province_code, one.province_name, one.level, one.kind) == (
        "Sở Nội vụ", "44", "Quảng Trị", "province", "sở",
    )  # fmt: skip


def test_a_title_names_the_kind_once(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        titles = {code: p.title for code, p in places(s).items()}
    assert titles == {
        "19999": "Xã Quảng Phú",
        "19888": "Phường Đồng Hới",  # the name already says it
        "000.00.44.H12": "Sở Nội vụ",  # an agency: its name only
        "00004": "Phường Ba Đình",
    }


def test_a_code_the_table_lacks_reads_the_same_on_every_page(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        known = places(s)
        assert place_of(known, "19999") is known["19999"]
        stand_in = place_of(known, "77777")
        assert stand_in == unknown("77777")
        assert (stand_in.name, stand_in.province_code, stand_in.province_name, stand_in.level) == (
            "77777", "", UNKNOWN_PROVINCE, "commune",
        )  # fmt: skip
        rows = {r.commune_code: r for r in readiness.build_rows(s, readiness.DashboardConfig(), NOW)}
        certificates = {u.commune_code: u for u in roster.units_view(s, NOW)}
    for code in ("19999", "77777"):
        want = place_of(known, code)
        for shown in (rows[code], certificates[code]):
            assert (shown.name, shown.province_code, shown.province_name, shown.level) == (
                want.name, want.province_code, want.province_name, want.level,
            )  # fmt: skip
    assert rows["19999"].province_name == "Quảng Trị" and rows["19999"].device_id == "box-a"
    assert set(rows) == set(certificates) == {"19999", "19888", "000.00.44.H12", "00004", "77777"}
