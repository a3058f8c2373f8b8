"""The health collector, its Pi interface, the offline buffer, the daily counters and `appliance doctor`:
real SANE test backend and a real SoftHSM2 token; Pi-only readings from recorded `vcgencmd` outputs."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.doctor import checks, verdict
from appliance.readiness import ITEMS, VERDICT_WORD
from appliance.settings import Settings, load_settings
from appliance.sign.token import CertInfo
from appliance.telemetry import pi, probes
from appliance.telemetry.buffer import Buffer
from appliance.telemetry.collector import Collector
from appliance.telemetry.schema import Disk, Reading, ReadingError, Scanner, Token, parse_message
from tests.softhsm import ORGANISATION, CertSpec, SoftToken, make_token

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def bare(**kw: object) -> Reading:
    return Reading(device_id="box-001", commune_code="19999", boot_id="b", at=NOW, version="1", **kw)  # type: ignore[arg-type]


# --- Raspberry Pi readings from recorded outputs ------------------------------------------------
@pytest.mark.parametrize(
    ("output", "now", "since_boot"),
    [
        ("throttled=0x0\n", False, False),
        ("throttled=0x50005\n", True, True),  # under-voltage + throttled now, both since boot
        ("throttled=0x50000\n", False, True),  # only "has occurred since boot"
    ],
)
def test_get_throttled_bits(output: str, now: bool, since_boot: bool) -> None:
    p = pi.power(pi.Recorded({"get_throttled": output}))
    assert p.under_voltage_now is now
    assert p.throttled_now is now
    assert p.under_voltage_since_boot is since_boot
    assert p.throttled_raw == hex(int(output.split("=")[1], 16))


def test_off_a_pi_power_is_unknown_not_zero(tmp_path: Path) -> None:
    p = pi.power(pi.Recorded({}))
    assert p.throttled_raw is None and p.under_voltage_now is None and p.under_voltage_since_boot is None
    assert pi.cpu_temp(pi.Recorded({}), thermal=tmp_path) is None  # no vcgencmd, no thermal zone
    assert pi.cpu_temp(pi.Recorded({"measure_temp": "temp=48.3'C\n"})) == pytest.approx(48.3)


def test_under_voltage_fails_the_doctor() -> None:
    r = bare(power=pi.power(pi.Recorded({"get_throttled": "throttled=0x50005"})))
    power = [c for c in checks(r) if c.item == "power"]
    assert power and power[0].level == "failing" and "thiếu áp" in power[0].reason


# --- deadlines ----------------------------------------------------------------------------------
def test_a_hung_reading_never_blocks_the_collection(tmp_path: Path) -> None:
    never = threading.Event()
    settings = load_settings(data_dir=tmp_path)
    col = Collector(
        settings,
        firmware=pi.Recorded({}),
        with_tokens=False,
        overrides={"scanner": lambda: never.wait(3600)},
        timeouts={**Collector(settings).timeouts, "scanner": 0.3},
    )
    first = col.collect()
    assert first.scanner is None
    assert [(e.item, e.error) for e in first.errors] == [("scanner", "timeout after 0.3 s")]
    assert first.disk is not None and first.memory is not None  # the other readings still arrived
    second = col.collect()  # the wedged thread is not started again
    assert [(e.item, e.error) for e in second.errors] == [("scanner", "still hung from an earlier reading")]
    never.set()
    warn = [c for c in checks(first) if c.item == "scanner"]
    assert warn and warn[0].level == "warning"


def test_a_failing_reading_is_reported_not_raised(tmp_path: Path) -> None:
    def broken() -> None:
        raise OSError("device vanished")

    col = Collector(
        load_settings(data_dir=tmp_path),
        firmware=pi.Recorded({}),
        with_tokens=False,
        overrides={"clock": broken, "scanner": lambda: Scanner(present=False)},
    )
    r = col.collect()
    assert r.clock is None
    assert r.errors[0].item == "clock" and "device vanished" in r.errors[0].error


# --- real devices -------------------------------------------------------------------------------
@pytest.mark.sane
@pytest.mark.softhsm
def test_collector_sees_the_sane_scanner_and_the_token(
    sane_env: Path, tmp_path: Path, shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    expiring = CertSpec(cka_id="21", label="expiring", common_name="Nguyễn Văn A", not_after_days=12)
    tok = make_token(tmp_path / "hsm", (expiring, ORGANISATION), ca=shared_token.ca, label="tele-token")
    monkeypatch.setenv("SOFTHSM2_CONF", str(tok.conf))
    settings = load_settings(data_dir=tmp_path / "data", sign={"token_serial": tok.serial})
    r = Collector(settings, firmware=pi.Recorded({})).collect()
    assert r.errors == []
    assert r.scanner is not None and r.scanner.present
    assert any("test:0" in d for d in r.scanner.devices)
    assert r.tokens is not None and [t.serial for t in r.tokens] == [tok.serial]
    certs = {c.owner: c for c in r.tokens[0].certificates}
    assert set(certs) == {"Nguyễn Văn A", ORGANISATION.common_name}
    assert certs[ORGANISATION.common_name].role == "organisation"
    assert certs["Nguyễn Văn A"].role == "officer" and certs["Nguyễn Văn A"].days_to_expiry in (11, 12)
    assert r.tokens[0].pin_state == "ok"
    items = checks(r)
    reasons = [c.reason for c in items if c.level == "warning"]
    assert any(re.fullmatch(r"Chứng thư số của Nguyễn Văn A hết hạn sau 1[12] ngày", x) for x in reasons), reasons
    assert verdict([c for c in items if c.item in ("scanner", "token")]) == "ok"
    # the payload round-trips through the published JSON
    assert parse_message(r.model_dump_json()) == r


@pytest.mark.softhsm
def test_no_token_is_failing(tmp_path: Path, shared_token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    from tests.softhsm import write_conf

    conf, _ = write_conf(empty)
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    r = Collector(
        load_settings(data_dir=tmp_path), firmware=pi.Recorded({}), overrides={"scanner": lambda: Scanner(present=True)}
    ).collect()
    assert r.tokens == []
    tok = [c for c in checks(r) if c.item == "token"]
    assert tok[0].level == "failing" and tok[0].reason == "Không thấy token ký số"


@pytest.mark.parametrize(
    ("pin_state", "level", "text"),
    [
        ("locked", "failing", "đã bị khóa mã PIN"),
        ("final_try", "failing", "chỉ còn 1 lần"),
        ("count_low", "warning", "nhập sai"),
    ],
)
def test_pin_flags_in_plain_vietnamese(pin_state: str, level: str, text: str) -> None:
    r = bare(tokens=[Token(serial="S1", label="t", model="m", pin_state=pin_state)])
    tok = [c for c in checks(r) if c.item == "token"]
    assert tok[0].level == level and text in tok[0].reason


def test_disk_thresholds_and_english() -> None:
    r = bare(disk=Disk(path="/", total_bytes=100, free_bytes=10, used_pct=90.0))
    d = [c for c in checks(r, lang="en") if c.item == "disk"][0]
    assert d.level == "warning" and d.reason.startswith("Disk 90% used")


def test_sd_write_volume_from_block_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("   1234 0 5678 100 4321 0 20000 300 0 400 500\n")
    assert probes.written_bytes(stat) == 20000 * 512


def test_fleet_run_file(tmp_path: Path) -> None:
    f = tmp_path / "fleet-run.json"
    assert probes.fleet_run(f) is None
    f.write_text(
        json.dumps({"finished_at": "2026-03-01T08:00:00+07:00", "result": "failed", "playbook": "appliance.yml"})
    )
    run = probes.fleet_run(f)
    assert run is not None and run.result == "failed" and run.finished_at == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert [c.level for c in checks(bare(fleet=run)) if c.item == "fleet"] == ["warning"]


def test_timedatectl_output() -> None:
    assert probes.parse_timedatectl("NTPSynchronized=yes\n") is True
    assert probes.parse_timedatectl("NTPSynchronized=no\n") is False
    assert probes.parse_timedatectl("") is None


# --- offline buffer -----------------------------------------------------------------------------
def test_buffer_is_bounded_and_keeps_incidents(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.db", max_rows=100, max_other=10)
    buf.put("incident", b'{"i":0}', offline=False)
    for i in range(500):
        buf.put("reading", json.dumps({"i": i}).encode())
    assert len(buf) == 101
    items = buf.oldest(1000)
    assert items[0].kind == "incident" and not items[0].offline  # incidents first, never dropped for readings
    assert [json.loads(p.payload)["i"] for p in items[1:]] == list(range(400, 500))  # the newest week survives
    buf.remove([p.id for p in items[:50]])
    assert len(buf) == 51
    size = (tmp_path / "b.db").stat().st_size
    assert size < 1_000_000


# --- Decision 766 counters ----------------------------------------------------------------------
def test_daily_counters_from_the_appliance_database(tmp_path: Path) -> None:
    from appliance import db
    from appliance.records import DocumentInfo, Dossier, Reuse
    from appliance.telemetry.counters import counters, local_day

    settings = load_settings(data_dir=tmp_path, commune_code="19999", device_id="box-001")
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    now = datetime.now(UTC)
    factory = db.session_factory(engine)
    with db.transaction(factory) as s:
        s.add_all(
            [
                Dossier(code="D1", created_at=now),
                Dossier(code="D2", created_at=now),
                Dossier(code="OLD", created_at=now - timedelta(days=3)),
            ]
        )
        s.add(Dossier(code="B1", created_at=now, backlog=True))
        s.add(db.Document(id="doc1", source="scanner", state=db.DocState.DIGITIZED, dossier_code="D1"))
        s.add(db.Document(id="doc2", source="scanner", state=db.DocState.CAPTURED, dossier_code="D2"))
        s.add(db.Document(id="doc3", source="scanner", state=db.DocState.QUEUED, dossier_code="D2"))
        s.flush()
        s.add(db.Document(id="old1", source="scanner", state=db.DocState.DIGITIZED, dossier_code="OLD"))
        s.flush()
        s.add(DocumentInfo(document_id="doc3", kind="result", result_code="KQ.X.000001", signed_at=now))
        # D2 reused OLD's scan twice (one dossier), OLD itself reused on its own day (not today)
        s.add(Reuse(document_id="doc2", source_document_id="old1", dossier_code="D2", reused_by="cb1"))
        s.add(Reuse(document_id="doc3", source_document_id="old1", dossier_code="D2", reused_by="cb1"))
        s.add(Reuse(document_id="old1", source_document_id="doc1", dossier_code="OLD", reused_by="cb1"))
    c = counters(settings, local_day(now))
    assert (c.dossiers_received, c.components_digitized, c.results_electronic) == (2, 1, 1)
    assert c.reused == 1
    assert counters(settings, local_day(now - timedelta(days=3))).reused == 1
    assert c.kind == "counters" and c.device_id == "box-001"


# --- the officers' certificate roster and the link to the province ------------------------------
def cert_info(sha: str, not_after: datetime, name: str, role: str = "officer") -> CertInfo:
    return CertInfo(
        cka_id="01", label="x", subject=f"CN={name},O=UBND xã Quảng Phú", common_name=name,
        organisation="UBND xã Quảng Phú", issuer="CN=Test CA", serial=sha[:8],
        not_before=not_after - timedelta(days=700), not_after=not_after,
        days_to_expiry=(not_after - datetime.now(UTC)).days, key_usage=("content_commitment",),
        non_repudiation=True, is_ca=False, sha256=sha * 8, role=role, key_type="rsa", key_bits=2048,
    )  # fmt: skip


def box_with_roster(data_dir: Path, now: datetime) -> Settings:
    """A box database with its accounts and the certificates it has seen: anh.nt's expires in 10 days,
    binh.tv never presented one, chi.lt (supervisor) is valid for long, dung.pv is deactivated, and the
    organisation's certificate is valid."""
    from appliance import accounts, db, roster
    from appliance.workflow import Actor

    settings = load_settings(data_dir=data_dir, device_id="box-001", commune_code="19999")
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    factory = db.session_factory(engine)
    boss = Actor("chi.lt", "Lê Thị Chi")
    with db.transaction(factory) as s:
        for username, name, role in (
            ("chi.lt", "Lê Thị Chi", "supervisor"),
            ("anh.nt", "Nguyễn Thị An", "officer"),
            ("binh.tv", "Trần Văn Bình", "officer"),
            ("dung.pv", "Phạm Văn Dũng", "officer"),
        ):
            accounts.create(s, actor=boss, username=username, full_name=name, role=role, password="mat-khau-dai-1")
    with db.transaction(factory) as s:
        accounts.deactivate(s, actor=boss, username="dung.pv")
        soon = now + timedelta(days=10, hours=12)
        roster.record_seen(s, username="anh.nt", cert=cert_info("aa", soon, "Nguyễn Thị An"), source="token", now=now)
        later = now + timedelta(days=400)
        roster.record_seen(s, username="chi.lt", cert=cert_info("cc", later, "Lê Thị Chi"), source="token", now=now)
        org = cert_info("ee", now + timedelta(days=300), "UBND xã Quảng Phú", "organisation")
        roster.record_seen(s, username=roster.ORGANISATION, cert=org, source="token", now=now)
    engine.dispose()
    return settings


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_roster_travels_and_names_the_officer_whose_certificate_expires(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    settings = box_with_roster(tmp_path / "data", now)
    r = Collector(
        settings, firmware=pi.Recorded({}), with_tokens=False, overrides={"scanner": lambda: Scanner(present=True)}
    ).collect(now)
    assert r.roster is not None and "roster" not in {e.item for e in r.errors}
    rows = {e.username: e for e in r.roster}
    assert set(rows) == {"anh.nt", "binh.tv", "chi.lt", ""}  # active accounts and the organisation
    assert (rows["anh.nt"].verdict, rows["binh.tv"].verdict, rows["chi.lt"].verdict) == ("expiring", "missing", "valid")
    assert rows[""].role == "organisation" and rows[""].verdict == "valid" and rows[""].key == "rsa-2048"
    assert rows["binh.tv"].subject is None and rows["binh.tv"].serial is None
    assert parse_message(r.model_dump_json()) == r  # the published JSON carries it whole

    items = {c.item: c for c in checks(r)}
    officers = items["officer_certificates"]
    assert officers.level == "warning"
    assert officers.reason.startswith("Chứng thư số cán bộ: 1 chưa có, 1 sắp hết hạn, 1 hợp lệ")
    assert "sắp hết hạn: anh.nt (Nguyễn Thị An, còn 10 ngày)" in officers.reason
    assert "chưa có: binh.tv" in officers.reason and "dung.pv" not in officers.reason
    assert "gia hạn" in officers.action and "đăng ký chứng thư số cá nhân" in officers.action
    assert officers.detail is not None and officers.detail["counts"] == {"missing": 1, "expiring": 1, "valid": 1}
    anh = next(o for o in officers.detail["officers"] if o["username"] == "anh.nt")
    assert anh == {
        "username": "anh.nt",
        "common_name": "Nguyễn Thị An",
        "verdict": "expiring",
        "label": "sắp hết hạn",
        "days_left": 10,
    }
    org = items["organisation_certificate"]
    assert org.level == "ok" and org.reason == "Chứng thư số của cơ quan (UBND xã Quảng Phú) còn 300 ngày"
    en = {c.item: c for c in checks(r, lang="en")}["officer_certificates"]
    assert "expiring: anh.nt (Nguyễn Thị An, 10 days left)" in en.reason and "missing: binh.tv" in en.reason


def test_roster_verdict_words_are_the_supervisor_pages() -> None:
    from appliance import roster

    assert VERDICT_WORD["vi"] == roster.VERDICTS
    assert set(VERDICT_WORD["en"]) == set(roster.VERDICTS)


def test_an_expired_officer_certificate_fails_and_no_organisation_certificate_fails(tmp_path: Path) -> None:
    from appliance.telemetry.schema import RosterEntry

    gone = RosterEntry(username="anh.nt", role="officer", verdict="expired", subject="CN=Nguyễn Thị An", not_after=NOW)
    r = bare(roster=[gone, RosterEntry(username="", role="organisation", verdict="missing")])
    items = {c.item: c for c in checks(r)}
    assert (
        items["officer_certificates"].level == "failing" and "hết hạn: anh.nt" in items["officer_certificates"].reason
    )
    assert items["organisation_certificate"].level == "failing"
    assert items["organisation_certificate"].reason == "Chưa có chứng thư số của cơ quan"
    assert "IT tỉnh" in items["organisation_certificate"].action
    # a token plugged in now that holds the organisation's certificate speaks for it
    from appliance.telemetry.schema import Certificate

    org = Certificate(
        owner="UBND xã", role="organisation", serial="1", not_after=NOW + timedelta(days=90), days_to_expiry=90,
        usable_for_signing=True,
    )  # fmt: skip
    with_token = bare(
        roster=r.roster, tokens=[Token(serial="S", label="t", model="m", pin_state="ok", certificates=[org])]
    )
    assert {c.item: c.level for c in checks(with_token)}["organisation_certificate"] == "ok"


def test_every_item_is_there_even_when_unknown() -> None:
    """A reading that carries nothing still lists every item, ok with no data; one that failed says so."""
    empty = checks(bare())
    assert sorted(c.item for c in empty if c.item in ITEMS) == sorted(ITEMS)  # each once
    # nothing reported is no reason for attention, except the clock and fleet management (as before)
    levels = {c.item: c.level for c in empty if c.item in ITEMS}
    assert levels == {**dict.fromkeys(ITEMS, "ok"), "clock": "warning", "fleet": "warning"}
    assert next(c.reason for c in empty if c.item == "link") == "Đường truyền về tỉnh: chưa có số liệu"
    failed = bare(
        errors=[
            ReadingError(item=name, error="timeout after 5 s")
            for name in ("scanner", "camera", "link", "roster", "tokens", "disk", "clock", "outbox", "fleet")
        ]
    )
    items = checks(failed)
    by_item = {c.item: c for c in items}
    assert set(by_item) >= set(ITEMS)
    for name in ITEMS:
        assert by_item[name].level == "warning", name
        assert "timeout after 5 s" in by_item[name].reason, name
    assert len([c for c in items if c.item in ITEMS]) == len(ITEMS)  # one item each, no duplicate "cannot read"


def test_an_unreachable_broker_fails_the_link_in_vietnamese(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, outbox={"host": "127.0.0.1", "port": closed_port()})
    link = probes.link(settings, deadline_s=2.0)
    assert link.reachable is False and link.connect_ms is None and link.error is not None
    assert link.tls is False and link.last_delivery_at is None and link.throughput_bps is None
    item = next(c for c in checks(bare(link=link)) if c.item == "link")
    assert item.level == "failing"
    assert item.reason.startswith(f"Không kết nối được máy chủ tỉnh 127.0.0.1:{settings.outbox.port}")
    assert item.action.startswith("Kiểm tra cáp mạng và modem Internet")


def test_the_link_reports_what_the_outbox_carried(tmp_path: Path) -> None:
    """Throughput from the sender's last completed transfer, the last delivery from the outbox's receipts."""
    from appliance import db
    from appliance.outbox import store, traffic

    settings = load_settings(data_dir=tmp_path, outbox={"host": "127.0.0.1", "port": closed_port()})
    done = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    path = traffic.path_for(settings.data_dir)
    traffic.write(path, traffic.start(path).plus(4_000_000, 4_100_000, 0).completed(4_000_000, 16.0, done))
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    package = tmp_path / "p.asice"
    package.write_bytes(b"x" * 100)
    with db.transaction(db.session_factory(engine)) as s:
        row = store.enqueue(s, path=package, package_id="p1")
        row.state, row.receipted_at = store.PackageState.RECEIPTED, done
    engine.dispose()
    link = probes.link(settings, deadline_s=2.0)
    assert (link.last_transfer_bytes, link.last_transfer_s, link.last_transfer_at) == (4_000_000, 16.0, done)
    assert link.throughput_bps == 2_000_000.0 and link.last_delivery_at == done
    ok = link.model_copy(update={"reachable": True, "connect_ms": 42.0, "error": None})
    item = next(c for c in checks(bare(link=ok)) if c.item == "link")
    assert item.level == "ok"
    assert item.reason == (
        f"Kết nối được máy chủ tỉnh 127.0.0.1:{settings.outbox.port}, độ trễ 42 ms, gói gần nhất gửi với tốc độ "
        "2.0 Mbit/s (02/03/2026 09:00), tỉnh xác nhận nhận gói gần nhất lúc 02/03/2026 09:00"
    )
    slow = next(c for c in checks(bare(link=ok.model_copy(update={"connect_ms": 2500.0}))) if c.item == "link")
    assert slow.level == "warning" and slow.reason.startswith("Đường truyền chậm") and slow.action


def test_the_readings_of_the_box_database_never_create_it(tmp_path: Path) -> None:
    """A box never started: what its database would tell is unknown, and reading it leaves no file behind;
    once it exists, the same probes read it."""
    from appliance import db
    from appliance.outbox import store

    settings = load_settings(data_dir=tmp_path / "data", outbox={"host": ""})
    file = Path(settings.db_url.removeprefix("sqlite:///"))
    out = probes.outbox(settings, NOW)
    assert (out.depth, out.oldest_age_s, out.last_receipt_at, out.receipted_bytes_24h) == (None, None, None, None)
    assert probes.roster(settings, NOW) is None
    assert probes.link(settings).last_delivery_at is None
    assert not file.exists()
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    package = tmp_path / "p.asice"
    package.write_bytes(b"x" * 100)
    with db.transaction(db.session_factory(engine)) as s:
        store.enqueue(s, path=package, package_id="waiting")
        done = store.enqueue(s, path=package, package_id="receipted")
        done.state, done.receipted_at = store.PackageState.RECEIPTED, NOW - timedelta(hours=1)
    engine.dispose()
    out = probes.outbox(settings, NOW)
    assert (out.depth, out.last_receipt_at, out.receipted_bytes_24h) == (1, NOW - timedelta(hours=1), 100)
    assert probes.link(settings).last_delivery_at == NOW - timedelta(hours=1)
    assert probes.roster(settings, NOW) is not None


# --- the command ---------------------------------------------------------------------------------
def test_doctor_command(tmp_path: Path) -> None:
    """In a subprocess: libsane reads its configuration once per process."""
    import os
    import subprocess
    import sys

    sane = tmp_path / "sane"
    sane.mkdir()
    (sane / "dll.conf").write_text("")  # no scanner at all
    box_with_roster(tmp_path / "data", datetime.now(UTC))
    env = {
        **os.environ,
        "SANE_CONFIG_DIR": str(sane),
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
        "APPLIANCE_OUTBOX__PORT": str(closed_port()),  # the province's broker cannot be reached
    }
    cmd = [sys.executable, "-m", "appliance", "doctor", "--no-tokens"]
    vi = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert vi.returncode == 1, vi.stderr
    assert "[LỖI] Máy quét không kết nối" in vi.stdout
    assert "-> Kiểm tra cáp USB" in vi.stdout
    en = subprocess.run([*cmd, "--json", "--lang", "en"], capture_output=True, text=True, env=env, check=False)
    assert en.returncode == 1, en.stderr
    data = json.loads(en.stdout)
    assert data["verdict"] == "failing"
    scanner = [i for i in data["items"] if i["item"] == "scanner"][0]
    assert scanner == {
        "item": "scanner",
        "level": "failing",
        "reason": "Scanner not connected",
        "action": "Check the scanner's USB cable and power, then switch it off and on.",
    }
    items = {i["item"]: i for i in data["items"]}
    assert set(items) >= set(ITEMS), set(ITEMS) - set(items)
    assert items["link"]["level"] == "failing" and items["link"]["detail"]["reachable"] is False
    assert items["token"]["level"] == "ok" and items["token"]["reason"] == "Signing token: not checked"
    assert items["organisation_certificate"]["level"] == "ok"
    officers = items["officer_certificates"]
    assert officers["level"] == "warning" and "expiring: anh.nt (Nguyễn Thị An, 10 days left)" in officers["reason"]
    assert {o["username"]: o["verdict"] for o in officers["detail"]["officers"]} == {
        "anh.nt": "expiring",
        "binh.tv": "missing",
        "chi.lt": "valid",
    }
    vi_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, check=False)
    vi_items = {i["item"]: i for i in json.loads(vi_json.stdout)["items"]}
    assert "sắp hết hạn: anh.nt (Nguyễn Thị An, còn 10 ngày)" in vi_items["officer_certificates"]["reason"]
    assert vi_items["link"]["action"].startswith("Kiểm tra cáp mạng và modem Internet")
    assert "[LỖI] Không kết nối được máy chủ tỉnh" in vi.stdout


def test_docs_hold_the_json_schema_of_every_payload() -> None:
    from appliance.telemetry.schema import schema_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "telemetry.md").read_text()
    assert schema_markdown().strip() in doc, "regenerate: python -m appliance.telemetry.schema"
    for kind in ("Reading", "Counters", "Incident", "Status"):
        assert f'"title": "{kind}"' in doc
