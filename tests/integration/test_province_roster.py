"""The officers' certificates at the province, through the real ingest (`Ingest.apply` on the topics and
payloads the boxes publish) and the real dashboard app: the page "Chứng thư số cán bộ", alerts, /metrics,
the CSV export, and `province officers FILE.csv` (the officers expected per unit)."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance.telemetry.schema import Reading, RosterEntry
from province.cli import main
from province.dashboard.app import create_app
from province.roster import verdict_now
from province.telemetry import AlertRow, Ingest, load_registry, load_units, open_telemetry
from province.telemetry_db import ExpectedOfficer, RosterRow
from tests.integration.test_dashboard import ALWAYS_OPEN, LOOPBACK, UNITS, msg, signed_in

Verdict = Literal["missing", "valid", "expiring", "expired", "revoked", "mismatch"]
ISSUER = "CN=CA phục vụ các cơ quan Đảng và Nhà nước,O=Ban Cơ yếu Chính phủ,C=VN"


def officer(user: str, name: str, days: float, verdict: Verdict = "valid", serial: str = "") -> RosterEntry:
    now = datetime.now(UTC)
    return RosterEntry(
        username=user,
        role="officer",
        verdict=verdict,
        subject=f"CN={name},O=UBND xã Quảng Phú,C=VN",
        serial=serial or f"5a{abs(hash(user)) % 10**10:x}",
        issuer=ISSUER,
        not_after=now + timedelta(days=days),
        key="rsa-2048",
        pss=True,
        revocation="good",
        last_seen=now - timedelta(hours=2),
    )


def organisation(days: float) -> RosterEntry:
    now = datetime.now(UTC)
    return RosterEntry(
        username="",
        role="organisation",
        verdict="valid" if days > 30 else "expiring",
        subject="CN=UBND xã Quảng Phú,O=UBND xã Quảng Phú,C=VN",
        serial="0rg1",
        issuer=ISSUER,
        not_after=now + timedelta(days=days),
        key="rsa-2048",
        pss=True,
        revocation="good",
        last_seen=now - timedelta(days=1),
    )


def roster_reading(device: str, claimed: str, at: datetime, roster: list[RosterEntry] | None) -> Reading:
    return Reading(device_id=device, commune_code=claimed, boot_id="boot-1", at=at, version="0.2.0", roster=roster)


EXPIRES_SOON = officer("nguyen.a", "Nguyễn Văn A", 10, "expiring", serial="1f00aa")
ROSTER = [
    EXPIRES_SOON,
    officer("tran.b", "Trần Thị B", 200),
    RosterEntry(username="le.c", role="officer", verdict="missing"),
    organisation(300),
]


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    """Units loaded, box-q registered for 19999 (Xã Quảng Phú); its reading claims 19888 and carries ROSTER."""
    factory = open_telemetry(f"sqlite:///{tmp_path / 'catalogue.db'}")
    load_units(factory, [dict(u) for u in UNITS])
    load_registry(factory, [{"device_id": "box-q", "commune_code": "19999"}])
    Ingest(factory, rows_config=ALWAYS_OPEN).apply([msg(roster_reading("box-q", "19888", datetime.now(UTC), ROSTER))])
    return factory


@pytest.fixture
def client(factory: sessionmaker[Session]) -> TestClient:
    return signed_in(create_app(factory, ALWAYS_OPEN), factory)


def line_of(html: str, user: str) -> str:
    m = re.search(
        rf'<tr class="cert-line" data-commune="(\d+)" data-user="{re.escape(user)}"[^>]*>(.*?)</tr>', html, re.S
    )
    assert m, f"no line for {user!r}"
    return m.group(1) + " " + re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(2))).strip()


def unit_row(html: str, code: str) -> list[str]:
    m = re.search(rf'<tr class="cert-unit" data-commune="{code}">(.*?)</tr>', html, re.S)
    assert m, f"no unit row {code}"
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(1), re.S)
    ]


def test_an_officer_expiring_in_10_days_is_sap_het_han_on_the_page_in_alerts_metrics_and_csv(
    client: TestClient,
) -> None:
    # the province-wide page: counts per unit, at the box's registered unit (not the 19888 it claimed)
    page = client.get("/certificates").text
    assert 'href="/certificates"' in page  # in the navigation
    cells = unit_row(page, "19999")
    assert cells[0].startswith("Xã Quảng Phú") and cells[1:6] == ["3", "2", "1", "1", "0"]
    assert cells[6] == "hợp lệ còn 299 ngày"  # the organisation certificate
    assert unit_row(page, "19888")[1:4] == ["0", "0", "0"]
    line = line_of(page, "nguyen.a")  # listed among the officers needing attention
    assert line.startswith("19999 ") and "sắp hết hạn" in line and "còn 9 ngày" in line
    assert "chưa có" in line_of(page, "le.c")
    assert 'data-user="tran.b"' not in page  # valid: not in the attention list...
    assert "hợp lệ" in line_of(client.get("/certificates?show=all").text, "tran.b")  # ...but in "all"
    # the unit's own page
    unit = client.get("/certificates/19999").text
    assert "sắp hết hạn" in line_of(unit, "nguyen.a") and "Nguyễn Văn A" in line_of(unit, "nguyen.a")
    assert "rsa-2048 / có PSS" in line_of(unit, "nguyen.a") and "box-q" in line_of(unit, "nguyen.a")
    assert client.get("/certificates/99999").status_code == 404
    # the alert (the existing mechanism: tm_alerts, /alerts)
    alerts = client.get("/alerts").text
    assert 'data-key="certificate:1f00aa"' in alerts
    assert "Chứng thư số của cán bộ Nguyễn Văn A (nguyen.a) hết hạn sau 9 ngày" in alerts
    assert "organisation_certificate" not in alerts  # the unit has a usable organisation certificate
    # Prometheus
    metrics = client.get("/metrics").text
    unit_labels = 'commune="19999",commune_name="Xã Quảng Phú",province="44"'
    assert f'appliance_officers{{{unit_labels},verdict="expiring"}} 1' in metrics
    assert f'appliance_officers{{{unit_labels},verdict="missing"}} 1' in metrics
    assert f'appliance_officer_certificate_days_left{{{unit_labels},username="nguyen.a",role="officer"}} 9' in metrics
    assert f"appliance_organisation_certificate_usable{{{unit_labels}}} 1" in metrics
    # the CSV for the provincial People's Committee
    r = client.get("/certificates.csv?province=44")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    soon = [x for x in rows if x["tai_khoan"] == "nguyen.a"]
    assert len(soon) == 1 and soon[0]["danh_gia"] == "sắp hết hạn" and soon[0]["ma_don_vi"] == "19999"
    assert soon[0]["con_ngay"] == "9" and soon[0]["so_serial"] == "1f00aa" and soon[0]["thiet_bi"] == "box-q"
    assert {x["loai"] for x in rows} == {"cán bộ", "tổ chức"}
    by_unit = list(csv.DictReader(io.StringIO(client.get("/certificates.csv?by=unit").text.lstrip("\ufeff"))))
    q = [x for x in by_unit if x["ma_don_vi"] == "19999"][0]
    assert (q["co_chung_thu_dung_duoc"], q["khong_co_chung_thu_dung_duoc"], q["sap_het_han"]) == ("2", "1", "1")
    assert q["chung_thu_to_chuc"] == "hợp lệ" and len(by_unit) == len(UNITS)  # every unit of the table


def test_a_newer_reading_replaces_the_roster_and_closes_the_alert(factory: sessionmaker[Session]) -> None:
    ing = Ingest(factory, rows_config=ALWAYS_OPEN)
    now = datetime.now(UTC)
    renewed = officer("nguyen.a", "Nguyễn Văn A", 700, serial="2f00bb")
    ing.apply([msg(roster_reading("box-q", "19999", now + timedelta(minutes=1), [renewed, organisation(300)]))])
    # an older reading (sent late) does not bring the old roster back
    late = roster_reading("box-q", "19999", now - timedelta(hours=1), ROSTER)
    ing.apply([msg(late.model_copy(update={"historical": True}))])
    with factory() as s:
        lines = {(r.username, r.serial) for r in s.scalars(select(RosterRow).where(RosterRow.device_id == "box-q"))}
        assert lines == {("nguyen.a", "2f00bb"), ("", "0rg1")}
        alert = s.scalars(select(AlertRow).where(AlertRow.key == "certificate:1f00aa")).one()
        assert alert.closed_at is not None
    client = signed_in(create_app(factory, ALWAYS_OPEN), factory)
    html = client.get("/certificates/19999").text
    assert "hợp lệ" in line_of(html, "nguyen.a") and 'data-verdict="expiring"' not in html


def test_a_unit_with_no_usable_organisation_certificate_is_alerted(factory: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    expired_org = organisation(-3).model_copy(update={"verdict": "valid"})  # the box judged it days ago
    Ingest(factory, rows_config=ALWAYS_OPEN).apply(
        [
            msg(
                roster_reading(
                    "box-q", "19999", now + timedelta(minutes=1), [officer("tran.b", "Trần Thị B", 200), expired_org]
                )
            )
        ]
    )
    client = signed_in(create_app(factory, ALWAYS_OPEN), factory)
    alerts = client.get("/alerts").text
    assert 'data-key="organisation_certificate"' in alerts
    assert "Đơn vị chưa có chứng thư số tổ chức dùng được" in alerts
    assert "hết hạn" in unit_row(client.get("/certificates").text, "19999")[6]
    metrics = client.get("/metrics").text
    assert (
        'appliance_organisation_certificate_usable{commune="19999",commune_name="Xã Quảng Phú",province="44"} 0'
        in metrics
    )


def test_verdicts_are_judged_again_on_the_province_clock() -> None:
    now = datetime(2026, 3, 2, tzinfo=UTC)
    assert verdict_now("valid", now + timedelta(days=10), now) == "expiring"
    assert verdict_now("valid", now - timedelta(seconds=1), now) == "expired"
    assert verdict_now("expiring", now + timedelta(days=31), now) == "valid"
    assert verdict_now("revoked", now + timedelta(days=300), now) == "revoked"
    assert verdict_now("mismatch", now + timedelta(days=3), now) == "mismatch"


# --- the officers expected per unit ------------------------------------------------------------------
EXPECTED = """\ufeff# danh sách cán bộ xã Quảng Phú, tháng 3/2026
commune_code,full_name,username,position
19999,Nguyễn Văn A,nguyen.a,Công chức Văn phòng - Thống kê
19999,TRAN THI B,,Công chức Tư pháp - Hộ tịch
19999,Phạm Văn D,,Phó Chủ tịch UBND xã
19888,Hoàng Thị E,hoang.e,
"""


def load(tmp_path: Path, text: str, *extra: str, name: str = "can-bo.csv") -> int:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return main(["officers", str(path), "--db-url", f"sqlite:///{tmp_path / 'catalogue.db'}", *extra])


def test_expected_officers_never_seen_sign_are_listed(
    factory: sessionmaker[Session], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load(tmp_path, EXPECTED) == 0
    assert "4 officer(s) of 2 unit(s) loaded" in capsys.readouterr().out
    client = signed_in(create_app(factory, ALWAYS_OPEN), factory)
    unit = client.get("/certificates/19999").text
    assert "Nguyễn Văn A" in line_of(unit, "nguyen.a") and "Công chức Văn phòng" in line_of(unit, "nguyen.a")
    assert "hợp lệ" in line_of(unit, "tran.b") and "TRAN THI B" in line_of(unit, "tran.b")  # by the certificate's name
    never = re.findall(r'data-verdict="never_seen">(.*?)</tr>', unit, re.S)
    assert len(never) == 1 and "Phạm Văn D" in never[0] and "chưa thấy ký" in never[0]
    assert "không có trong danh sách" in line_of(unit, "le.c")  # seen on the box, not on the list
    assert unit_row(client.get("/certificates").text, "19999")[1:6] == ["4", "2", "2", "1", "1"]
    assert unit_row(client.get("/certificates").text, "19888")[1:6] == ["1", "0", "1", "0", "1"]
    metrics = client.get("/metrics").text
    assert (
        'appliance_officers{commune="19999",commune_name="Xã Quảng Phú",province="44",verdict="never_seen"} 1'
        in metrics
    )
    # reloading replaces the lists of the units the file names, and only those
    assert load(tmp_path, "commune_code,full_name\n19999,Phạm Văn D\n") == 0
    with factory() as s:
        names = {(e.commune_code, e.full_name) for e in s.scalars(select(ExpectedOfficer))}
    assert names == {("19999", "Phạm Văn D"), ("19888", "Hoàng Thị E")}
    assert load(tmp_path, "commune_code,full_name\n19999,Phạm Văn D\n", "--replace-all") == 0
    with factory() as s:
        assert {e.commune_code for e in s.scalars(select(ExpectedOfficer))} == {"19999"}


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (EXPECTED + "19999,,le.c,\n", "Dòng 7: thiếu họ tên cán bộ (cột full_name)"),
        (EXPECTED + "1 9999,Lê Văn F,,\n", "Dòng 7: mã đơn vị '1 9999' trống hoặc có ký tự ngoài 0-9 A-Z . -"),
        (EXPECTED + "19999,Nguyễn Văn Á,nguyen.a,\n", "Dòng 7: tài khoản nguyen.a của đơn vị 19999 đã có ở dòng 3"),
        (EXPECTED + "19999,Pham Van D,,\n", "Dòng 7: cán bộ Pham Van D của đơn vị 19999 đã có ở dòng 5"),
        (EXPECTED + "19999,Lê Văn F,le.f,Chức danh,thừa\n", "Dòng 7: có 5 cột, tiêu đề chỉ có 4"),
        (EXPECTED + "55555,Lê Văn F,,\n", "Dòng 7: mã đơn vị 55555 không có trong danh mục đơn vị"),
        ("commune_code,ho_ten\n19999,A\n", "Dòng 1: dòng tiêu đề thiếu cột full_name"),
    ],
)
def test_a_malformed_line_is_named_and_nothing_is_half_loaded(
    factory: sessionmaker[Session], tmp_path: Path, text: str, sentence: str
) -> None:
    assert load(tmp_path, "commune_code,full_name\n19999,Lê Văn Trước\n") == 0  # the list in force before
    with pytest.raises(SystemExit) as exc:
        load(tmp_path, text)
    assert sentence in str(exc.value) and "can-bo.csv" in str(exc.value)
    with factory() as s:
        kept = [(e.commune_code, e.full_name) for e in s.scalars(select(ExpectedOfficer))]
    assert kept == [("19999", "Lê Văn Trước")]


def test_the_certificate_pages_need_a_signed_in_account(factory: sessionmaker[Session]) -> None:
    anon = TestClient(create_app(factory, ALWAYS_OPEN), client=LOOPBACK)
    for path in ("/certificates", "/certificates/19999", "/certificates.csv"):
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/"), path
