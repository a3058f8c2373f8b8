"""Decision 766 per deciding agency from the box to the province dashboard: the box's daily counters carry the
split computed by `appliance.indicators.count_by` (bounded), the real ingest stores it (replaced on resend,
kept for a box that does not split), and `/statistics` with its CSV adds it up across all boxes."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, dossiers, indicators
from appliance.originals import OriginalStore
from appliance.settings import load_settings
from appliance.telemetry import counters as counters_mod
from appliance.telemetry.schema import MAX_AGENCIES, OTHER_AGENCIES, AgencyCounts, Counters, parse_message
from province.dashboard.app import create_app
from province.telemetry import Ingest, load_units, open_telemetry
from province.telemetry_db import AgencyDayCounters
from tests.integration.test_dashboard import ALWAYS_OPEN, signed_in
from tests.integration.test_workflow import ANH, make_doc

CENTRE_A, CENTRE_B, CENTRE_OLD = "19999", "19888", "19777"
SO_TP = "44.SO.TP"  # a provincial agency deciding dossiers received at the communes' centres
UNITS = [
    {"commune_code": CENTRE_A, "name": "Quảng Phú", "province_code": "44", "province_name": "Quảng Trị"},
    {"commune_code": CENTRE_B, "name": "Đồng Hới", "province_code": "44", "province_name": "Quảng Trị",
     "kind": "phường"},
    {"commune_code": CENTRE_OLD, "name": "Xã Cũ", "province_code": "44", "province_name": "Quảng Trị"},
    {"commune_code": SO_TP, "name": "Sở Tư pháp", "province_code": "44", "province_name": "Quảng Trị",
     "level": "province_dept"},
]  # fmt: skip


def code(n: int) -> str:
    return f"000.00.19.H12-260301-{n:04d}"


def box_day(tmp_path: Path, agencies: dict[str, int], *, digitized: str = "") -> tuple[object, datetime]:
    """A box at CENTRE_A whose database holds today's dossiers: `agencies` maps a deciding agency to how many
    (the box's own commune for "" ); one dossier of agency `digitized` has a digitized component."""
    settings = load_settings(data_dir=tmp_path / "box", commune_code=CENTRE_A, device_id="box-a")
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    factory = db.session_factory(engine)
    n = 0
    with db.transaction(factory) as s:
        for agency, count in agencies.items():
            for _ in range(count):
                n += 1
                form = {"code": code(n), "deciding_agency": agency}
                dossiers.open_dossier(s, actor=ANH, form=form, receiving_unit=CENTRE_A)
                if digitized and agency == digitized and count:
                    make_doc(s, OriginalStore(tmp_path / "originals"), dossier_code=code(n))
                    digitized = ""
    engine.dispose()
    return settings, datetime.now(UTC)


# --- the box ---------------------------------------------------------------------------------------
def test_the_box_counters_carry_the_split_of_the_one_definition(tmp_path: Path) -> None:
    settings, now = box_day(tmp_path, {"": 3, SO_TP: 2, CENTRE_B: 1}, digitized=SO_TP)
    day = counters_mod.local_day(now)
    sent = counters_mod.counters(settings, day, now)  # type: ignore[arg-type]
    split = {a.agency: (a.dossiers_received, a.components_digitized) for a in sent.by_deciding_agency or []}
    assert split == {CENTRE_A: (3, 0), SO_TP: (2, 1), CENTRE_B: (1, 0)}
    assert [a.agency for a in sent.by_deciding_agency or []] == [CENTRE_A, SO_TP, CENTRE_B]  # largest first
    assert sum(a.dossiers_received for a in sent.by_deciding_agency or []) == sent.dossiers_received == 6
    engine = db.make_engine(settings.db_url)  # type: ignore[attr-defined]
    with Session(engine) as s:  # the same figures as the officers' statistics page computes
        by = indicators.count_by(s, *indicators.day_bounds(day), by="deciding_agency", home=CENTRE_A)
    engine.dispose()
    assert {k: (v.received, v.components_digitized) for k, v in by.items()} == split
    assert parse_message(sent.model_dump_json()) == sent  # what the province parses


def test_more_agencies_than_the_bound_are_folded_into_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, now = box_day(tmp_path, {"44001": 3, "44002": 2, "44003": 1, "44004": 1})
    monkeypatch.setattr(counters_mod, "MAX_AGENCIES", 3)
    sent = counters_mod.counters(settings, counters_mod.local_day(now), now)  # type: ignore[arg-type]
    split = {a.agency: a.dossiers_received for a in sent.by_deciding_agency or []}
    assert split == {"44001": 3, "44002": 2, OTHER_AGENCIES: 2}


def test_the_payload_refuses_a_repeated_agency_and_an_unbounded_split() -> None:
    row = AgencyCounts(agency="44001", dossiers_received=1, components_digitized=0, results_electronic=0, reused=0)
    base = Counters(
        device_id="box-a",
        commune_code=CENTRE_A,
        day="2026-03-01",
        at=datetime.now(UTC),
        dossiers_received=1,
        components_digitized=0,
        results_electronic=0,
        reused=0,
    )
    assert base.by_deciding_agency is None  # an older box: no split at all
    with pytest.raises(ValidationError, match="more than once"):
        base.model_validate({**base.model_dump(), "by_deciding_agency": [row.model_dump(), row.model_dump()]})
    many = [row.model_copy(update={"agency": f"A{i}"}).model_dump() for i in range(MAX_AGENCIES + 1)]
    with pytest.raises(ValidationError):
        base.model_validate({**base.model_dump(), "by_deciding_agency": many})


# --- the province ----------------------------------------------------------------------------------
def counted(device: str, centre: str, day: str, received: int, split: dict[str, tuple[int, int]] | None) -> Counters:
    rows = None
    if split is not None:
        rows = [
            AgencyCounts(agency=a, dossiers_received=r, components_digitized=d, results_electronic=0, reused=0)
            for a, (r, d) in split.items()
        ]
    digitized = sum(d for _, d in (split or {}).values())
    return Counters(
        device_id=device,
        commune_code=centre,
        day=day,
        at=datetime.now(UTC),
        dossiers_received=received,
        components_digitized=digitized,
        results_electronic=0,
        reused=0,
        by_deciding_agency=rows,
    )


def wire(c: Counters) -> tuple[str, bytes]:
    return f"devices/{c.device_id}/telemetry", c.model_dump_json().encode()


@pytest.fixture
def province(tmp_path: Path) -> sessionmaker[Session]:
    factory = open_telemetry(f"sqlite:///{tmp_path / 'catalogue.db'}")
    load_units(factory, [dict(u) for u in UNITS])
    return factory


def text_rows(html: str, table: str) -> dict[str, str]:
    body = html.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    out = {}
    for key, row in re.findall(r'<tr class="line" data-code="([^"]*)">(.*?)</tr>', body, re.S):
        out[key] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
    return out


def test_the_province_adds_up_each_deciding_agency_across_boxes(
    tmp_path: Path, province: sessionmaker[Session]
) -> None:
    settings, now = box_day(tmp_path, {"": 3, SO_TP: 2}, digitized=SO_TP)
    day = counters_mod.local_day(now)
    from_box_a = counters_mod.counters(settings, day, now)  # type: ignore[arg-type]
    ing = Ingest(province)
    today, month = day.isoformat(), f"{day:%Y-%m}"
    ing.apply(
        [
            wire(from_box_a),  # the box's own payload: 3 for its commune, 2 for the Sở (1 digitized)
            wire(counted("box-b", CENTRE_B, today, 9, {CENTRE_B: (9, 0)})),
            wire(counted("box-old", CENTRE_OLD, today, 4, None)),  # software before the split
        ],
        now=now,
    )
    # box-b resends the day: 7 for its own commune and 2 for the Sở; its earlier rows are replaced
    ing.apply([wire(counted("box-b", CENTRE_B, today, 9, {CENTRE_B: (7, 0), SO_TP: (2, 2)}))], now=now)
    with province() as s:
        stored = {(r.device_id, r.agency): r.dossiers_received for r in s.scalars(select(AgencyDayCounters))}
    assert stored == {("box-a", CENTRE_A): 3, ("box-a", SO_TP): 2, ("box-b", CENTRE_B): 7, ("box-b", SO_TP): 2}

    client = signed_in(create_app(province, ALWAYS_OPEN), province)
    html = client.get(f"/statistics?month={month}").text
    agencies = text_rows(html, "agencies")
    assert list(agencies) == [CENTRE_B, SO_TP, CENTRE_A, ""]  # most dossiers first, the unsplit days last
    assert agencies[SO_TP].startswith("Sở Tư pháp 44.SO.TP 4 3 75.0%")  # 2 + 2 dossiers from two centres
    assert agencies[SO_TP].endswith(" 2")  # two boxes
    assert agencies[""].startswith("Chưa phân theo cơ quan (phần mềm thiết bị cũ) 4 0")
    centres = text_rows(html, "centres")
    assert centres[CENTRE_B].startswith("Phường Đồng Hới 19888 9 2")
    assert centres[CENTRE_A].startswith("Xã Quảng Phú 19999 5 1")
    assert '<a href="/statistics">Chỉ số 766</a>' in html

    sheet = client.get(f"/statistics.csv?month={month}")
    assert sheet.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(sheet.text.lstrip("\ufeff"))))
    by_code = {ln["ma_co_quan_giai_quyet"]: ln for ln in lines}
    assert by_code[SO_TP]["ho_so_tiep_nhan"] == "4" and by_code[SO_TP]["ty_le_so_hoa_pct"] == "75.0"
    assert sum(int(ln["ho_so_tiep_nhan"]) for ln in lines) == 5 + 9 + 4  # the same total as per centre
    centre_sheet = client.get(f"/statistics.csv?month={month}&by=centre").text.lstrip("\ufeff")
    assert {ln["ma_trung_tam_tiep_nhan"] for ln in csv.DictReader(io.StringIO(centre_sheet))} == {
        CENTRE_A,
        CENTRE_B,
        CENTRE_OLD,
    }
    other_month = "2020-01"
    assert "Chưa có số liệu trong kỳ này." in client.get(f"/statistics?month={other_month}").text
