"""Two-level units and Decree 118/2025 at the service level, on a real SQLite file: the unit table loaded and
reloaded from CSV (versions, Đồng Nai 30/04/2026), the old -> new mapping for old results, a dossier's
receiving centre and deciding agency (typed, from the receipt QR), the statistics per receiving centre and
per deciding agency, and (SoftHSM) a dossier received for another commune packaged for that commune."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, dossiers, indicators, qr, units
from appliance.errors import FormInvalid
from appliance.records import AdminUnit, DocumentInfo, Dossier
from appliance.units import UnitFileError, read_mapping, read_units
from tests.integration.test_workflow import ANH, CODE, OTHER_CODE, make_doc

SHIPPED = Path(__file__).resolve().parents[2] / "appliance" / "data" / "units"

UNITS_2025 = """code,name,kind,province_code,province_name,valid_from
75,Đồng Nai,tỉnh,75,Đồng Nai,2025-07-01
26000,Biên Hòa,phường,75,Đồng Nai,2025-07-01
26001,Long Thành,xã,75,Đồng Nai,2025-07-01
75.SO.TP,Sở Tư pháp,cơ quan cấp tỉnh,75,Đồng Nai,2025-07-01
"""
# Resolution 30/2026/QH16: a centrally-run city from 30/04/2026; the names and codes here are test values
UNITS_2026 = """code,name,kind,province_code,province_name
75,Đồng Nai,thành phố,75,Thành phố Đồng Nai
26000,Biên Hòa,phường,75,Thành phố Đồng Nai
26001,Long Thành,phường,75,Thành phố Đồng Nai
75.SO.TP,Sở Tư pháp,cơ quan cấp tỉnh,75,Thành phố Đồng Nai
"""
MAPPING = """old_code,old_name,old_parent,new_code
26005,phường Tân Phong,thành phố Biên Hòa,26000
26010,xã An Phước,huyện Long Thành,26001
26011,xã Tam An,huyện Long Thành,26001
"""


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'box.db'}")
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


# --- the unit table ----------------------------------------------------------------------------------
def test_units_load_reload_and_keep_history(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        first = units.load(
            s, read_units(UNITS_2025), mappings=read_mapping(MAPPING), version="QĐ19/2025", effective=date(2025, 7, 1)
        )
        assert (first.added, first.closed, first.mappings) == (4, 0, 3)
        again = units.load(s, read_units(UNITS_2025), version="QĐ19/2025", effective=date(2025, 7, 1))
        assert (again.added, again.unchanged) == (0, 4)  # the same file twice changes nothing
    with db.transaction(factory) as s:
        second = units.load(s, read_units(UNITS_2026), version="NQ30/2026", effective=date(2026, 4, 30))
        assert (second.added, second.unchanged) == (4, 0)  # every row's province name changed
    with db.transaction(factory) as s:
        before, after = date(2026, 4, 29), date(2026, 4, 30)
        old, new = units.on(s, "26001", before), units.on(s, "26001", after)
        assert old is not None and new is not None
        assert (old.kind, old.province_name, old.valid_to) == ("xã", "Đồng Nai", "2026-04-30")
        assert (new.kind, new.province_name, new.valid_to) == ("phường", "Thành phố Đồng Nai", None)
        assert units.on(s, "75", after).kind == "thành phố"  # type: ignore[union-attr]
        assert len(s.scalars(select(AdminUnit).where(AdminUnit.code == "26001")).all()) == 2


def test_a_unit_missing_from_the_new_file_is_closed(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        units.load(s, read_units(UNITS_2025), version="v1", effective=date(2025, 7, 1))
        smaller = "\n".join(line for line in UNITS_2025.splitlines() if "Long Thành" not in line)
        result = units.load(s, read_units(smaller), version="v2", effective=date(2026, 1, 1))
        assert result.closed == 1
        assert units.on(s, "26001", date(2025, 12, 31)) is not None
        assert units.on(s, "26001", date(2026, 1, 1)) is None


def test_an_old_result_keeps_its_printed_unit_and_gets_todays(factory: sessionmaker[Session], tmp_path: Path) -> None:
    from appliance.originals import OriginalStore

    with db.transaction(factory) as s:
        units.load(s, read_units(UNITS_2025), mappings=read_mapping(MAPPING), version="v1", effective=date(2025, 7, 1))
        units.load(s, read_units(UNITS_2026), version="v2", effective=date(2026, 4, 30))
        by_code = units.today_for(s, "26010")
        by_name = units.today_for(s, "Xã An Phước, huyện Long Thành")
        assert [u.code for u in by_code.today] == [u.code for u in by_name.today] == ["26001"]
        assert by_code.today[0].kind == "phường"  # today's unit, after the 2026 change
        assert units.today_for(s, "26000").today[0].name == "Biên Hòa"  # still valid: itself
        assert units.today_for(s, "huyện Không Có").today == ()
        doc = make_doc(s, OriginalStore(tmp_path / "originals"), dossier_code=None)
        units.record_printed_unit(s, document_id=doc.id, printed="xã Tam An, huyện Long Thành")
        info = s.get(DocumentInfo, doc.id)
        assert info is not None
        assert (info.printed_unit, info.current_unit) == ("xã Tam An, huyện Long Thành", "26001")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("code,name,kind,province_code,province_name\n,Thiếu mã,xã,44,Quảng Trị\n", "code"),
        ("code,name,kind,province_code,province_name\n44001,Một,xã,44,Quảng Trị\n44001,Hai,xã,44,Quảng Trị\n", "twice"),
        ("code,name,kind,province_code,province_name\n44001,Một,quận,44,Quảng Trị\n", "kind"),
        ("commune_code,name,province_code,province_name,level\n440,Gio Linh,44,Quảng Trị,district\n", "no district"),
        ("code,name,kind,province_code,province_name,valid_from\n44001,Một,xã,44,Quảng Trị,1/7/2025\n", "date"),
    ],
)
def test_bad_unit_files_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(UnitFileError, match=problem) as err:
        read_units(text)
    assert "line" in str(err.value)


def test_the_line_named_is_the_line_in_the_file(tmp_path: Path) -> None:
    """Provenance comments and blank lines count: the line number is the one the editor shows."""
    head = "# from the province's register\n# checked 2026-03\ncode,name,kind,province_code,province_name\n\n"
    with pytest.raises(UnitFileError, match=r"^line 6: kind 'quận'"):
        read_units(head + "44001,Một,xã,44,Quảng Trị\n44002,Hai,quận,44,Quảng Trị\n")
    with pytest.raises(UnitFileError, match=r"^line 4: old_code and new_code"):
        read_mapping("# mapping\nold_code,old_name,old_parent,new_code\n\n,phường Cũ,thành phố Cũ,44001\n")
    path = tmp_path / "units.csv"
    path.write_bytes(
        b"code,name,kind,province_code,province_name\n44001,\xd0\xf4ng H\xf4\xec,x\xe3,44,Qu\xe3ng Tr\xec\n"
    )
    with pytest.raises(UnitFileError, match="UTF-8"):  # Windows-1258, as an old Excel saves it
        read_units(path)


def test_the_older_dashboard_form_is_read() -> None:
    (unit,) = read_units(
        "commune_code,name,province_code,province_name,level,kind\n19999,Thử,44,Quảng Trị,commune,xa\n"
    )
    assert (unit.code, unit.kind, unit.level) == ("19999", "xã", "commune")
    (dept,) = read_units(
        "commune_code,name,province_code,province_name,level\nSTP,Sở Tư pháp,44,Quảng Trị,province_dept\n"
    )
    assert (dept.kind, dept.level) == ("cơ quan cấp tỉnh", "province")


def test_the_shipped_quang_tri_table_loads_and_says_what_it_is(factory: sessionmaker[Session]) -> None:
    table = SHIPPED / "44-quang-tri.csv"
    text = table.read_text(encoding="utf-8")
    assert text.startswith("#") and "thanglequoc/vietnamese-provinces-database" in text  # provenance in the header
    rows = read_units(table)
    assert all(u.province_code == "44" and u.province_name == "Quảng Trị" for u in rows)
    assert {u.code for u in rows if u.kind in units.PROVINCE_KINDS} == {"44"}
    communes = [u for u in rows if u.level == "commune"]
    # 78 commune-level units: 69 xã, 8 phường, 1 đặc khu (Cồn Cỏ); 5-digit codes of Decision 19/2025/QĐ-TTg
    assert len(communes) == 78 and all(len(u.code) == 5 and u.code.isdigit() for u in communes)
    assert {k: sum(u.kind == k for u in communes) for k in units.COMMUNE_KINDS} == {"xã": 69, "phường": 8, "đặc khu": 1}
    assert {u.code: u.name for u in communes if u.kind != "xã"} == {
        "18880": "Đồng Hới", "18859": "Đồng Thuận", "18871": "Đồng Sơn", "19009": "Ba Đồn", "19066": "Bắc Gianh",
        "19333": "Đông Hà", "19351": "Nam Đông Hà", "19360": "Quảng Trị", "19742": "Cồn Cỏ",
    }  # fmt: skip
    with db.transaction(factory) as s:
        loaded = units.load(s, rows, mappings=read_mapping(SHIPPED / "44-quang-tri-mapping.csv"), version="QĐ19/2025",
                            effective=date(2025, 7, 1), source=table.name)  # fmt: skip
        assert (loaded.added, loaded.closed) == (79, 0)
        dong_hoi = units.on(s, "18880", date(2026, 1, 1))
        assert dong_hoi is not None and units.label(dong_hoi) == "phường Đồng Hới"
        assert [u.code for u in units.today_for(s, "tỉnh Quảng Bình").today] == ["44"]  # the former province
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert "78" in readme and "Decision 19/2025" in readme and "1027/CTK-CSCL" in readme


def test_the_shipped_quang_tri_mapping_gives_every_old_unit_todays(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from appliance.originals import OriginalStore

    table, mapping_file = SHIPPED / "44-quang-tri.csv", SHIPPED / "44-quang-tri-mapping.csv"
    text = mapping_file.read_text(encoding="utf-8")
    assert "fc33b7411ec4e3697817fab8118718a8d39ef090" in text and "1680/NQ-UBTVQH15" in text  # provenance
    rows, mapping = read_units(table), read_mapping(mapping_file)
    new_codes = {u.code for u in rows}
    assert {m.new_code for m in mapping} == new_codes  # every new unit is reached, and only those
    communes = [m for m in mapping if len(m.old_code) == 5]
    districts = {m.old_code for m in mapping if len(m.old_code) == 3}
    # 264 pre-2025 communes (145 in Quảng Bình's 8 districts, 119 in Quảng Trị's 10), each in one new unit
    assert len(communes) == len({m.old_code for m in communes}) == 264
    assert len(districts) == 18 and all(m.old_parent for m in communes)
    # an old code that Decision 19/2025 reuses belongs to a commune of the unit carrying it now
    assert all(m.new_code == m.old_code for m in communes if m.old_code in new_codes)
    pairs = {(m.old_code, m.old_name, m.old_parent): m.new_code for m in mapping}
    # read in two places: the pre-2025 dataset (old code, district) and NQ 1680 / sapnhap data (the grouping)
    assert pairs[("19705", "xã Hải Lệ", "thị xã Quảng Trị")] == "19360"  # phường Quảng Trị
    assert pairs[("19456", "xã Tân Thành", "huyện Hướng Hóa")] == "19432"  # xã Lao Bảo
    assert pairs[("18919", "xã Tân Thành", "huyện Minh Hóa")] == "18919"  # not rearranged
    assert pairs[("19183", "xã Hòa Trạch", "huyện Bố Trạch")] == "19111"  # xã Hoàn Lão, not today's Hòa Trạch
    assert pairs[("19114", "thị trấn Nông trường Việt Trung", "huyện Bố Trạch")] == "19198"  # xã Nam Trạch
    assert pairs[("19354", "phường 3", "thành phố Đông Hà")] == "19333"  # phường Đông Hà
    assert pairs[("471", "huyện Cồn Cỏ", "tỉnh Quảng Trị")] == "19742"  # đặc khu Cồn Cỏ
    with db.transaction(factory) as s:
        loaded = units.load(s, rows, mappings=mapping, version="QĐ19/2025", effective=date(2025, 7, 1))
        assert loaded.mappings == 344

        def today(printed: str) -> list[str]:
            return sorted(u.code for u in units.today_for(s, printed).today)

        assert today("Xã Hải Lệ, thị xã Quảng Trị") == ["19360"]
        assert today("xa tan thanh") == ["18919", "19432"]  # two old xã Tân Thành: both of today's units
        assert today("xã Tân Thành, huyện Hướng Hóa") == today("19456") == ["19432"]
        assert today("Phường 1, thành phố Đông Hà") == ["19333"] and today("phường 1, thị xã Quảng Trị") == ["19360"]
        assert today("huyện Bố Trạch") == ["19111", "19126", "19138", "19141", "19147", "19159", "19198"]
        doc = make_doc(s, OriginalStore(tmp_path / "originals"), dossier_code=None)
        found = units.record_printed_unit(s, document_id=doc.id, printed="xã Cự Nẫm, huyện Bố Trạch")
        assert [units.label(u) for u in found.today] == ["xã Bố Trạch"]
        info = s.get(DocumentInfo, doc.id)
        assert info is not None and (info.printed_unit, info.current_unit) == ("xã Cự Nẫm, huyện Bố Trạch", "19141")


# --- receiving centre and deciding agency ------------------------------------------------------------
def test_a_dossier_records_where_it_was_received_and_who_decides(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        own = dossiers.open_dossier(s, actor=ANH, form={"code": CODE}, receiving_unit="44001")
        other = dossiers.open_dossier(
            s, actor=ANH, form={"code": OTHER_CODE, "deciding_agency": "44002"}, receiving_unit="44001"
        )
        assert (own.receiving_unit, own.deciding_agency) == ("44001", "44001")
        assert (other.receiving_unit, other.deciding_agency) == ("44001", "44002")
        with pytest.raises(FormInvalid) as err:
            dossiers.open_dossier(s, actor=ANH, form={"code": "H44.123.45-260301-120001", "deciding_agency": "xã A!"})
        assert "deciding_agency" in err.value.errors
        moved = dossiers.set_deciding_agency(s, actor=ANH, code=CODE, agency="44.SO.TP")
        assert moved.deciding_agency == "44.SO.TP"
        legacy = Dossier(code="000.00.19.H12-230101-0001", backlog=False)  # opened before the two fields
        assert dossiers.deciding_agency(legacy, home="44009") == "44009"


def test_the_receipt_qr_can_name_the_deciding_agency() -> None:
    payload = json.dumps(
        {"MaHoSo": "H44.123.45-260301-120001", "MaTTHC": "1.001234", "CoQuanGiaiQuyet": "44002"}, ensure_ascii=False
    )
    found = qr.parse_receipt(payload)
    assert found["ma_ho_so"] == "H44.123.45-260301-120001" and found["co_quan_giai_quyet"] == "44002"


def test_dossier_codes_of_every_form_open_and_a_configured_form_too(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        for code in ("000.00.19.H12-230412-0007", "H15.50.05.13-261008-0975", "H44.123.45-260301-120001234"):
            assert dossiers.open_dossier(s, actor=ANH, form={"code": code}).code == code
        with pytest.raises(FormInvalid) as err:
            dossiers.open_dossier(s, actor=ANH, form={"code": "QT/2026/000123"})
        assert "ký tự" in err.value.errors["code"]  # the reason, in Vietnamese
        opened = dossiers.open_dossier(
            s, actor=ANH, form={"code": "QT/2026/000123"}, patterns=[r"QT/\d{4}/(?P<seq>\d+)"]
        )
        assert dossiers.get(s, opened.code).code == "QT/2026/000123"


def test_indicators_per_receiving_centre_and_per_deciding_agency(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    from appliance.originals import OriginalStore

    originals = OriginalStore(tmp_path / "originals")
    with db.transaction(factory) as s:
        dossiers.open_dossier(s, actor=ANH, form={"code": CODE}, receiving_unit="44001")
        dossiers.open_dossier(
            s, actor=ANH, form={"code": OTHER_CODE, "deciding_agency": "44002"}, receiving_unit="44001"
        )
        s.add(Dossier(code="000.00.19.H12-230414-0009", backlog=False))  # before 0009: counts for the box's commune
        make_doc(s, originals, dossier_code=OTHER_CODE)
    start = datetime.now(UTC) - timedelta(days=1)
    end = datetime.now(UTC) + timedelta(days=1)
    with db.transaction(factory) as s:
        whole = indicators.count(s, start, end)
        by_agency = indicators.count_by(s, start, end, by="deciding_agency", home="44001")
        by_centre = indicators.count_by(s, start, end, by="receiving_unit", home="44001")
    assert whole.received == 3 and whole.components_digitized == 1
    assert {k: (v.received, v.components_digitized) for k, v in by_agency.items()} == {"44001": (2, 0), "44002": (1, 1)}
    assert {k: v.received for k, v in by_centre.items()} == {"44001": 3}
    assert sum(v.received for v in by_agency.values()) == whole.received


# --- the package names the deciding agency (SoftHSM) --------------------------------------------------
@pytest.mark.softhsm
@pytest.mark.slow
def test_a_dossier_for_another_commune_is_packaged_for_its_warehouse(hsm: object, tmp_path: Path) -> None:
    from appliance import pipeline, signing
    from appliance.outbox import store as outbox
    from appliance.records import Kind
    from appliance.sign.batch import token_certificates
    from tests.integration.test_workflow import review
    from tests.integration.test_workflow_signing import _settings
    from tests.softhsm import MODULE, simple_pdf

    settings = _settings(tmp_path, hsm)  # type: ignore[arg-type]
    store = pipeline.storage(settings)
    with db.transaction(store.factory) as session:
        dossiers.open_dossier(
            session, actor=ANH, form={"code": CODE, "deciding_agency": "44002"}, receiving_unit=settings.commune_code
        )
        doc = make_doc(session, store.originals)
        doc.pdf_path = str(simple_pdf(tmp_path / f"{doc.id}.pdf", text="Doc"))
        review(session, doc.id, actor=ANH, kind=Kind.COMPONENT, fields={"trich_yeu": "Tờ khai"})
        doc_id = doc.id
    signed = signing.sign(
        store.factory,
        settings,
        actor=ANH,
        doc_ids=[doc_id],
        pin=hsm.pin,  # type: ignore[attr-defined]
        certificates=token_certificates(MODULE, hsm.serial),  # type: ignore[attr-defined]
    )
    with db.transaction(store.factory) as session:
        (item,) = [i for i in outbox.list_items(session) if i.package_id in signed.packages]
        with zipfile.ZipFile(item.path) as z:
            manifest = json.loads(z.read("manifest.json"))
    assert manifest["commune_code"] == settings.commune_code  # received here
    assert manifest["deciding_agency"] == "44002"  # stored in that commune's warehouse


# --- the province: units reloaded, deadlines as data, no district level -------------------------------
def test_province_units_reload_and_deadlines_by_unit_kind_and_level(tmp_path: Path) -> None:
    from province.dashboard.readiness import DashboardConfig, build_rows
    from province.telemetry import load_deadlines, load_units, open_telemetry
    from province.telemetry_db import Unit

    factory = open_telemetry(f"sqlite:///{tmp_path / 'catalogue.db'}")
    assert load_units(factory, read_units(UNITS_2025)) == 4
    load_units(factory, read_units("\n".join(line for line in UNITS_2026.splitlines() if "Long Thành" not in line)))
    with factory() as s:
        found = {u.commune_code: (u.kind, u.level) for u in s.scalars(select(Unit))}
    assert found == {
        "75": ("thành phố", "province"),
        "26000": ("phường", "commune"),
        "75.SO.TP": ("cơ quan cấp tỉnh", "province"),
    }  # 26001 is no longer listed: gone
    rows = [
        {"scope": "commune", "deadline": "2026-06-30", "campaign": "Kế hoạch 2026"},
        {"scope": "cơ quan cấp tỉnh", "deadline": "2026-03-31"},
        {"scope": "26000", "deadline": "2026-01-15"},
    ]
    assert load_deadlines(factory, rows) == 3
    with factory() as s:
        got = {r.commune_code: r.deadline for r in build_rows(s, DashboardConfig(), datetime.now(UTC))}
    assert got == {"26000": date(2026, 1, 15), "75.SO.TP": date(2026, 3, 31), "75": None}
    with pytest.raises(ValueError, match="scope"):
        load_deadlines(factory, [{"scope": "district", "deadline": "2026-01-01"}])


def test_rollout_cli_names_the_line_of_a_bad_deadline_with_comments_counted(tmp_path: Path) -> None:
    from province.cli import main as province_main
    from province.telemetry import open_telemetry
    from province.telemetry_db import RolloutDeadline

    good = tmp_path / "rollout.csv"
    good.write_text(
        "# Kế hoạch của Sở Khoa học và Công nghệ\n\nscope,deadline,campaign\n# cấp xã\ncommune,2026-06-30,KH 2026\n",
        encoding="utf-8",
    )
    assert province_main(["rollout", str(good), "--data-dir", str(tmp_path)]) == 0
    with open_telemetry(f"sqlite:///{tmp_path / 'catalogue.db'}")() as s:
        assert [(r.scope, r.campaign) for r in s.scalars(select(RolloutDeadline))] == [("commune", "KH 2026")]
    bad = tmp_path / "bad.csv"
    bad.write_text("# nguồn\nscope,deadline\n\n# ghi chú\ncommune,30/06/2026\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="line 5: deadline"):
        province_main(["rollout", str(bad), "--data-dir", str(tmp_path)])
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"scope,deadline,campaign\ncommune,2026-06-30,K\xea\n")
    with pytest.raises(SystemExit, match="latin1.csv"):
        province_main(["rollout", str(latin), "--data-dir", str(tmp_path)])
