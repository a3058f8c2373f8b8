"""The readiness dashboard over a catalogue filled by the real ingest code: verdicts and failing items in
plain Vietnamese, scheduled vs overdue silence, filters and sorting, a commune page with SVG charts,
alerts, incidents, rollout, CSV, /metrics and the Grafana dashboard JSON; sign-in, sessions, CSRF and who
may read /metrics."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from appliance.telemetry.schema import (
    Certificate,
    Clock,
    Counters,
    Disk,
    FleetRun,
    Incident,
    Outbox,
    Reading,
    Scanner,
    Status,
    Token,
)
from province import roster
from province.dashboard.app import create_app
from province.dashboard.auth import AccountError, set_account
from province.dashboard.metrics import CERTIFICATE_GAUGES, GAUGES
from province.dashboard.readiness import DashboardConfig, connectivity
from province.telemetry import Ingest, load_deadlines, load_units, open_telemetry

ROOT = Path(__file__).resolve().parents[2]
ALWAYS_OPEN = DashboardConfig(office_start=time(0, 0), office_end=time(23, 59, 59), workdays=(0, 1, 2, 3, 4, 5, 6))
UNITS = [
    {"commune_code": "19999", "name": "Xã Quảng Phú", "province_code": "44", "province_name": "Quảng Trị"},
    {
        "commune_code": "19888",
        "name": "Phường Đồng Hới",
        "province_code": "44",
        "province_name": "Quảng Trị",
        "kind": "phường",
    },
    {
        "commune_code": "00004",
        "name": "Phường Ba Đình",
        "province_code": "01",
        "province_name": "Hà Nội",
        "kind": "phường",
    },
    {"commune_code": "00007", "name": "Xã Chưa Lắp", "province_code": "01", "province_name": "Hà Nội"},
]


def cert(owner: str, days: int, role: str = "officer") -> Certificate:
    return Certificate(
        owner=owner,
        role=role,
        serial=f"{abs(hash(owner)) % 10**8:x}",
        not_after=datetime.now(UTC) + timedelta(days=days),
        days_to_expiry=days,
        usable_for_signing=True,
    )


def reading(
    device: str,
    commune: str,
    at: datetime,
    *,
    scanner: bool = True,
    cert_days: int = 200,
    disk: float = 40.0,
    owner: str = "Trần Thị B",
) -> Reading:
    return Reading(
        device_id=device,
        commune_code=commune,
        boot_id="boot-1",
        at=at,
        version="0.1.0",
        uptime_s=3600,
        scanner=Scanner(present=scanner, devices=["Canon DR-C225 (canon_dr:libusb:001:004)"] if scanner else []),
        tokens=[
            Token(
                serial="T1",
                label="tok",
                model="SoftHSM",
                pin_state="ok",
                certificates=[cert(owner, cert_days), cert("UBND xã", 300, "organisation")],
            )
        ],
        disk=Disk(
            path="/var/lib/appliance",
            total_bytes=64 * 10**9,
            free_bytes=int(64 * 10**9 * (1 - disk / 100)),
            used_pct=disk,
        ),
        cpu_temp_c=52.0,
        clock=Clock(synchronized=True, source="timedatectl"),
        outbox=Outbox(
            depth=2,
            oldest_age_s=600,
            last_receipt_at=at,
            receipted_bytes_24h=10**6,
            link_rtt_ms=80.0,
            payload_bytes=50 * 2**20,
            wire_bytes=51 * 2**20,
            resent_bytes=3 * 2**20,
            bytes_since=at - timedelta(days=9),
        ),  # fmt: skip
        fleet=FleetRun(finished_at=at - timedelta(days=1), result="ok"),
    )


def msg(m: Reading | Counters | Incident | Status) -> tuple[str, bytes]:
    kind = "status" if isinstance(m, Status) else "telemetry"
    return f"devices/{m.device_id}/{kind}", m.model_dump_json().encode()


def seed(url: str) -> sessionmaker[Session]:
    """Three boxes and one unit without a box, through the real ingest."""
    from province import catalogue

    factory = open_telemetry(url)
    load_units(factory, [dict(u) for u in UNITS])
    load_deadlines(factory, [{"scope": "commune", "deadline": "2023-06-01", "campaign": "Chỉ thị 02/CT-TTg"}])
    ing = Ingest(factory, history_every_s=0)
    now = datetime.now(UTC)
    for i in range(12):  # a few hours of history for the charts
        at = now - timedelta(hours=12 - i)
        ing.apply([msg(reading("box-ready", "19999", at, disk=40 + i))], now=at)
    ing.apply([msg(Status(state="online", device_id="box-ready", boot_id="boot-1", seq=1, at=now))], now=now)
    ing.apply([msg(reading("box-ready", "19999", now, disk=52.0))], now=now)
    ing.apply(
        [
            msg(reading("box-cert", "19888", now, scanner=False, cert_days=12, owner="Nguyễn Văn A", disk=90.0)),
            msg(
                Incident(
                    device_id="box-cert",
                    commune_code="19888",
                    incident_id="0f0e0d0c-0000-4000-8000-000000000001",
                    at=now,
                    reporter="Lê Văn C",
                    text="Máy quét báo lỗi kẹt giấy",
                )
            ),
        ],
        now=now,
    )
    old = now - timedelta(days=3, hours=1)
    ing.apply([msg(reading("box-lost", "00004", old))], now=old)
    day = now.date().isoformat()
    ing.apply(
        [
            msg(
                Counters(
                    device_id="box-ready",
                    commune_code="19999",
                    day=day,
                    at=now,
                    dossiers_received=10,
                    components_digitized=8,
                    results_electronic=5,
                    reused=0,
                )
            )
        ],
        now=now,
    )
    ing.refresh_alerts(now)
    cat = catalogue.open_catalogue(url)
    catalogue.record(
        cat,
        catalogue.StoredPackage(
            package_id="p1",
            device_id="box-ready",
            commune_code="19999",
            sha256="0" * 64,
            size=1,
            path="x",
            warehouse_id="W1",
            receipt={},
            received_at=now - timedelta(days=2),
        ),
    )
    return factory


PASSWORD = "mat-khau-thu-nghiem"
LOOPBACK = ("127.0.0.1", 50000)  # where Prometheus scrapes from when no token is configured


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sign_in(client: TestClient, username: str = "it-test", password: str = PASSWORD, next_url: str = "/") -> Any:
    form = client.get("/login").text
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf": csrf_of(form), "next": next_url},
        follow_redirects=False,
    )


def signed_in(app: FastAPI, factory: sessionmaker[Session], **kw: Any) -> TestClient:
    """A browser of provincial IT (account `it-test`, "Phạm IT"), signed in."""
    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    client = TestClient(app, client=kw.pop("client", LOOPBACK), **kw)
    r = sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return client


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    return seed(f"sqlite:///{tmp_path / 'catalogue.db'}")


@pytest.fixture
def client(factory: sessionmaker[Session]) -> TestClient:
    return signed_in(create_app(factory, ALWAYS_OPEN), factory)


def rows_of(html: str) -> dict[str, str]:
    """commune code -> that table row's text (tags stripped)."""
    out = {}
    for code, body in re.findall(r'<tr class="unit" data-commune="(\d+)"[^>]*>(.*?)</tr>', html, re.S):
        out[code] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).strip()
    return out


def test_verdicts_and_failing_items_in_plain_vietnamese(client: TestClient) -> None:
    html = client.get("/").text
    rows = rows_of(html)
    assert set(rows) == {"19999", "19888", "00004", "00007"}
    assert rows["19999"].startswith("Xã Quảng Phú 19999 Sẵn sàng Trực tuyến")
    assert "Chưa sẵn sàng" in rows["19888"]
    assert "Chứng thư số của Nguyễn Văn A hết hạn sau 12 ngày" in rows["19888"]
    assert "Máy quét không kết nối" in rows["19888"]
    assert "Ổ đĩa đã dùng 90%" in rows["19888"]
    assert "Mất kết nối 3 ngày" in rows["00004"] and "Quá hạn liên lạc" in rows["00004"]
    assert "Chưa lắp đặt" in rows["00007"]
    assert html.index("Hà Nội") < html.index("Quảng Trị") or "data-province" in html
    assert "80.0% / 100%" in rows["19999"]  # Decision 766: 8 of 10 dossiers digitized, against the target
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # nothing from a CDN


def test_filters_search_and_sort(client: TestClient) -> None:
    assert set(rows_of(client.get("/?verdict=failing").text)) == {"19888", "00004"}
    assert set(rows_of(client.get("/?verdict=overdue").text)) == {"00004"}
    assert set(rows_of(client.get("/?province=01").text)) == {"00004", "00007"}
    assert set(rows_of(client.get("/?q=quang phu").text)) == {"19999"}  # without diacritics
    html = client.get("/?sort=disk&desc=1").text
    order = list(rows_of(html))
    assert order.index("19888") < order.index("19999")  # 90 % before 52 % within Quảng Trị


def test_offline_as_scheduled_is_not_overdue() -> None:
    cfg = DashboardConfig()  # 07:00-17:30 Monday to Friday, Vietnam time
    friday_evening = datetime(2026, 3, 6, 11, 0, tzinfo=UTC)  # 18:00 local
    saturday = datetime(2026, 3, 7, 3, 0, tzinfo=UTC)  # 10:00 local
    monday_morning = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)  # 09:00 local
    assert connectivity(cfg, "offline", friday_evening, saturday) == ("scheduled", None)
    state, problem = connectivity(cfg, "offline", friday_evening, monday_morning)
    assert state == "overdue" and problem == "Mất kết nối 2 ngày"
    wednesday = datetime(2026, 3, 4, 3, 0, tzinfo=UTC)  # switched off since Wednesday 10:00
    assert connectivity(cfg, "lost", wednesday, saturday)[0] == "overdue"


def test_commune_page_has_svg_history_and_counters(client: TestClient) -> None:
    html = client.get("/device/box-ready").text
    assert html.count("<svg") == 4 and "<polyline" in html
    assert "Ổ đĩa đã dùng (%)" in html and "Chỉ số Quyết định 766" in html
    assert re.search(r"<td>10</td><td>8</td><td>5</td>", html)
    # what the box's sender published (from the reading's outbox counters)
    assert "dữ liệu 50.0 MB, trên đường truyền 51.0 MB, gửi lại 3.0 MB" in html
    assert client.get("/device/nope").status_code == 404


def test_alerts_incidents_and_rollout(client: TestClient) -> None:
    alerts = client.get("/alerts").text
    keys = set(re.findall(r'data-key="([^":]+)', alerts))
    assert keys == {"certificate", "disk", "lost"}
    assert "Mất kết nối 3 ngày" in alerts
    inc = client.get("/incidents").text
    assert "Máy quét báo lỗi kẹt giấy" in inc
    r = client.post(
        "/incidents/0f0e0d0c-0000-4000-8000-000000000001/handled", data={"csrf": csrf_of(inc)}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "Máy quét báo lỗi kẹt giấy" not in client.get("/incidents").text
    assert "Đã xử lý (Phạm IT)" in client.get("/incidents?show=all").text
    roll = client.get("/rollout").text
    row = re.search(r'data-commune="19999">(.*?)</tr>', roll, re.S)
    assert row and "Đã vận hành" in row.group(1) and re.search(r"\d\d/\d\d/\d{4}", row.group(1))
    late = re.search(r'data-commune="00007">(.*?)</tr>', roll, re.S)
    assert late and "Chưa lắp đặt — quá hạn" in late.group(1)  # the 2023 commune deadline has passed


def test_csv_export(client: TestClient) -> None:
    r = client.get("/export.csv?province=44")
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {x["ma_xa"] for x in rows} == {"19999", "19888"}
    bad = [x for x in rows if x["ma_xa"] == "19888"][0]
    assert bad["danh_gia"] == "Chưa sẵn sàng" and "Nguyễn Văn A" in bad["van_de"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    text = client.get("/metrics").text
    sample = re.compile(
        r'^([a-z_0-9]+)\{device="[^"]*",commune="\d+",commune_name="[^"]*",province="\d*"\} (-?[\d.e+]+)$'
    )
    names = set()
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = sample.match(line)
        assert m, line
        names.add(m.group(1))
    assert names == {n for n, _ in GAUGES}
    assert 'appliance_up{device="box-lost",commune="00004",commune_name="Phường Ba Đình",province="01"} 0' in text
    assert (
        'appliance_disk_used_ratio{device="box-cert",commune="19888",commune_name="Phường Đồng Hới",province="44"} 0.9'
        in text
    )


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    board = json.loads((ROOT / "grafana" / "appliance-readiness.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs
    exported = {n for n, _ in GAUGES + CERTIFICATE_GAUGES}
    shown: set[str] = set()
    for e in exprs:
        used = set(re.findall(r"appliance_[a-z_0-9]+", e))
        assert used and used <= exported, e
        shown |= used
        for values in re.findall(r'verdict=~?"([^"]+)"', e):  # officers' verdicts the roster can report
            assert set(values.split("|")) <= set(roster.OFFICER_VERDICTS), e
    assert shown == exported  # every gauge has a panel, the officers' certificates included


# --- the national view at scale: stored verdict rows, pages, province summary ------------------------
def test_pages_put_the_units_not_ready_first(tmp_path: Path) -> None:
    from dataclasses import replace

    factory = seed(f"sqlite:///{tmp_path / 'catalogue.db'}")
    client = signed_in(create_app(factory, replace(ALWAYS_OPEN, page_size=2)), factory)
    first = client.get("/").text
    assert set(rows_of(first)) == {"19888", "00004"}  # the two failing units, on page 1 of 2
    assert "Trang 1 / 2" in first and 'rel="next"' in first
    second = client.get("/?page=2").text
    assert set(rows_of(second)) == {"00007", "19999"} and 'rel="prev"' in second
    # the province summary: counts per verdict, each a link to that province's filtered list
    summary = re.search(r'<tr data-province="44">(.*?)</tr>', first, re.S)
    assert summary and re.sub(r"<[^>]+>", " ", summary.group(1)).split() == ["Quảng", "Trị", "2", "1", "0", "1", "0"]
    assert 'href="?province=44&verdict=failing"' in summary.group(1)
    assert set(rows_of(client.get("/?verdict=failing&page=1").text)) == {"19888", "00004"}
    assert "Trang" not in client.get("/?province=44").text  # fits on one page
    roll = client.get("/rollout?page=2").text
    assert len(re.findall(r'<tr data-commune="', roll)) == 2 and "Trang 2 / 2" in roll


def test_ingest_keeps_the_verdict_rows_current(tmp_path: Path) -> None:
    """After the first computation the page reads stored rows; a new reading updates its box's row at
    ingest (no rebuild of the national list), a refused-publish status marks the box failing."""
    from dataclasses import replace

    factory = seed(f"sqlite:///{tmp_path / 'catalogue.db'}")
    client = signed_in(create_app(factory, replace(ALWAYS_OPEN, refresh_s=3600)), factory)
    assert "Ổ đĩa đã dùng" not in rows_of(client.get("/").text)["19999"]
    ing = Ingest(factory, rows_config=ALWAYS_OPEN)
    now = datetime.now(UTC)
    ing.apply([msg(reading("box-ready", "19999", now + timedelta(seconds=1), disk=93.0))], now=now)
    row = rows_of(client.get("/").text)["19999"]
    assert "Cần chú ý" in row or "Chưa sẵn sàng" in row
    assert "Ổ đĩa đã dùng 93%" in row or "93%" in row
    denied = Status(
        state="online", device_id="box-ready", boot_id="boot-1", seq=1, at=now, denied=3, denied_reason="Not authorized"
    )
    ing.apply([msg(denied)], now=now)
    row = rows_of(client.get("/").text)["19999"]
    assert "Chưa sẵn sàng" in row and "Máy chủ tỉnh từ chối 3 bản tin" in row
    assert 'appliance_readiness{device="box-ready",commune="19999"' in client.get("/metrics").text


# --- sign-in, sessions, CSRF, /metrics ------------------------------------------------------------
INCIDENT = "/incidents/0f0e0d0c-0000-4000-8000-000000000001/handled"


def test_every_page_needs_a_signed_in_account(factory: sessionmaker[Session]) -> None:
    app = create_app(factory, ALWAYS_OPEN)
    anon = TestClient(app, client=LOOPBACK)
    for path in ("/", "/device/box-ready", "/alerts", "/incidents", "/rollout", "/export.csv?province=44"):
        r = anon.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/"), path
    assert anon.post(INCIDENT, data={"csrf": "x"}).status_code == 401
    # wrong password, unknown account: the same answer
    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    assert sign_in(anon, password="sai-mat-khau-roi").status_code == 401
    assert sign_in(anon, username="nobody").status_code == 401
    # signed in, sent back where the redirect came from (never to another site)
    r = sign_in(anon, next_url="/alerts")
    assert r.status_code == 303 and r.headers["location"] == "/alerts"
    cookie = r.headers["set-cookie"]
    assert "province_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Phạm IT" in anon.get("/").text
    assert sign_in(TestClient(app), next_url="//evil.example/").headers["location"] == "/"


def test_the_login_form_has_its_own_csrf_token(factory: sessionmaker[Session]) -> None:
    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    client = TestClient(create_app(factory, ALWAYS_OPEN))
    r = client.post("/login", data={"username": "it-test", "password": PASSWORD, "csrf": "forged"})
    assert r.status_code == 403 and "province_session" not in client.cookies


def test_repeated_wrong_passwords_lock_the_account(factory: sessionmaker[Session]) -> None:
    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    client = TestClient(create_app(factory, ALWAYS_OPEN))
    for _ in range(5):
        assert sign_in(client, password="sai-mat-khau-roi").status_code == 401
    assert sign_in(client).status_code == 401  # the right password, but locked for a while


def test_a_post_needs_the_session_csrf_token_and_this_site(client: TestClient) -> None:
    token = csrf_of(client.get("/incidents").text)
    assert client.post(INCIDENT, data={}, follow_redirects=False).status_code == 403
    assert client.post(INCIDENT, data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    cross = client.post(
        INCIDENT, data={"csrf": token}, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert cross.status_code == 403  # a cross-site form is refused even with a valid token
    assert "Máy quét báo lỗi kẹt giấy" in client.get("/incidents").text  # still open
    ok = client.post(INCIDENT, data={"csrf": token}, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert ok.status_code == 303
    assert "Đã xử lý (Phạm IT)" in client.get("/incidents?show=all").text


def test_sign_out_ends_the_session(client: TestClient) -> None:
    token = csrf_of(client.get("/").text)
    session = client.cookies["province_session"]
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    client.cookies.set("province_session", session)  # an old copy of the cookie is worth nothing now
    assert client.get("/", follow_redirects=False).status_code == 303


def test_pages_refuse_to_be_framed(client: TestClient) -> None:
    r = client.get("/")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"


def test_metrics_for_loopback_or_a_bearer_token(factory: sessionmaker[Session]) -> None:
    open_app = create_app(factory, ALWAYS_OPEN)
    assert TestClient(open_app, client=LOOPBACK).get("/metrics").status_code == 200
    assert TestClient(open_app, client=("192.0.2.7", 40000)).get("/metrics").status_code == 403
    locked = create_app(factory, ALWAYS_OPEN, metrics_token="s3cret-token")
    remote = TestClient(locked, client=("192.0.2.7", 40000))
    assert remote.get("/metrics").status_code == 401
    assert TestClient(locked, client=LOOPBACK).get("/metrics").status_code == 401  # the token, from anywhere
    assert remote.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert r.status_code == 200 and "appliance_readiness" in r.text


def test_province_accounts_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import io as _io

    from province.cli import main

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    monkeypatch.setattr("sys.stdin", _io.StringIO(PASSWORD + "\n"))
    assert main(["accounts", "add", "nguyen.a", "--full-name", "Nguyễn Văn A", "--db-url", url]) == 0
    assert main(["accounts", "dev", "--db-url", url]) == 0
    dev = capsys.readouterr().out
    m = re.search(r"development dashboard account: (it-dev) / (\S+)", dev)
    assert m
    factory = open_telemetry(url)
    client = TestClient(create_app(factory, ALWAYS_OPEN))
    assert sign_in(client, "nguyen.a").status_code == 303
    assert sign_in(TestClient(create_app(factory, ALWAYS_OPEN)), m.group(1), m.group(2)).status_code == 303
    assert main(["accounts", "disable", "nguyen.a", "--db-url", url]) == 0
    assert client.get("/", follow_redirects=False).status_code == 303  # its session ended with it
    assert main(["accounts", "list", "--db-url", url]) == 0
    assert "nguyen.a\tNguyễn Văn A\tdisabled" in capsys.readouterr().out


def test_a_viewer_reads_but_only_an_operator_marks_an_incident_handled(factory: sessionmaker[Session]) -> None:
    app = create_app(factory, ALWAYS_OPEN)
    set_account(factory, username="it-xem", full_name="Lê Xem", password=PASSWORD, role="viewer")
    viewer = TestClient(app, client=LOOPBACK)
    assert sign_in(viewer, username="it-xem").status_code == 303
    inc = viewer.get("/incidents").text
    assert "Máy quét báo lỗi kẹt giấy" in inc and "/handled" not in inc  # no button for a viewer
    r = viewer.post(INCIDENT, data={"csrf": csrf_of(inc)}, follow_redirects=False)
    assert r.status_code == 403
    operator = signed_in(app, factory)  # it-test: a new account is an operator
    inc = operator.get("/incidents").text
    assert operator.post(INCIDENT, data={"csrf": csrf_of(inc)}, follow_redirects=False).status_code == 303
    with pytest.raises(AccountError):
        set_account(factory, username="it-x", full_name="X", password=PASSWORD, role="admin")


def test_parallel_wrong_passwords_cannot_outrun_the_lockout(factory: sessionmaker[Session]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    set_account(factory, username="it-test", full_name="Phạm IT", password=PASSWORD)
    app = create_app(factory, ALWAYS_OPEN)

    def attempt(_i: int) -> int:
        return int(sign_in(TestClient(app, client=LOOPBACK), password="sai-mat-khau-roi").status_code)

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(attempt, range(40)))
    assert codes.count(401) == 40
    throttle = app.state.gate.throttle  # exactly the allowed number was evaluated, the rest refused while locked
    assert len(throttle._failures.get("u:it-test", ())) == throttle.per_account
    assert sign_in(TestClient(app, client=LOOPBACK)).status_code == 401  # locked, even with the right one
