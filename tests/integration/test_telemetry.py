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
from appliance.settings import load_settings
from appliance.telemetry import pi, probes
from appliance.telemetry.buffer import Buffer
from appliance.telemetry.collector import Collector
from appliance.telemetry.schema import Disk, Reading, Scanner, Token, parse_message
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


# --- the command ---------------------------------------------------------------------------------
def test_doctor_command(tmp_path: Path) -> None:
    """In a subprocess: libsane reads its configuration once per process."""
    import os
    import subprocess
    import sys

    sane = tmp_path / "sane"
    sane.mkdir()
    (sane / "dll.conf").write_text("")  # no scanner at all
    env = {**os.environ, "SANE_CONFIG_DIR": str(sane), "APPLIANCE_DATA_DIR": str(tmp_path / "data")}
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


def test_docs_hold_the_json_schema_of_every_payload() -> None:
    from appliance.telemetry.schema import schema_markdown

    doc = (Path(__file__).resolve().parents[2] / "docs" / "telemetry.md").read_text()
    assert schema_markdown().strip() in doc, "regenerate: python -m appliance.telemetry.schema"
    for kind in ("Reading", "Counters", "Incident", "Status"):
        assert f'"title": "{kind}"' in doc
