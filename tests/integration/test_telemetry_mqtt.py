# ruff: noqa: F811
"""Telemetry over a real mosquitto (TLS client certificates, generated ACLs): retained status with a
last will, live readings, readings buffered while the link is down and sent later marked historical,
and the province ingest that applies them (stale wills ignored)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from appliance.telemetry import pi
from appliance.telemetry.collector import Collector
from appliance.telemetry.publisher import Publisher, PublisherOptions, buffer_for, report_incident
from appliance.telemetry.schema import Scanner, Status
from province.telemetry import Device, History, IncidentRow, Ingest, IngestConfig, open_telemetry, run_ingest
from tests.mqtt import Broker, Pki, ThrottleProxy, box_settings, broker, fresh_broker, pki, wait_for  # noqa: F401

pytestmark = [pytest.mark.mqtt]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def province(tmp_path: Path, broker: Broker, pki: Pki) -> Iterator[Ingest]:
    url = f"sqlite:///{tmp_path / 'province' / 'catalogue.db'}"
    ing = Ingest(open_telemetry(url), history_every_s=0)
    client = pki.clients["receiver-1"]
    cfg = IngestConfig(
        host="127.0.0.1",
        port=broker.telemetry_port,
        name="receiver-1",
        db_url=url,
        ca_file=pki.ca.cert,
        cert_file=client.cert,
        key_file=client.key,
        batch_wait_s=0.05,
    )
    stop = threading.Event()
    t = threading.Thread(target=run_ingest, args=(cfg, stop, ing), daemon=True)
    t.start()
    yield ing
    stop.set()
    t.join(10)


def device(ing: Ingest, device_id: str = "box-001") -> Device | None:
    with ing.factory() as s:
        return s.get(Device, device_id)


def collector(settings: object) -> Collector:
    return Collector(
        settings,  # type: ignore[arg-type]
        firmware=pi.Recorded({"get_throttled": "throttled=0x50000", "measure_temp": "temp=51.0'C"}),
        with_tokens=False,
        overrides={
            "scanner": lambda: Scanner(present=True, devices=["Canon DR-C225 (test)"]),
            # no roster: these boxes have no certificates, which the province would rightly alert on
            # (the roster's own tests: test_telemetry.py, the province's roster tests)
            "roster": lambda: None,
        },
    )


def test_online_readings_and_clean_offline(tmp_path: Path, broker: Broker, pki: Pki, province: Ingest) -> None:
    settings = box_settings(
        tmp_path / "box", pki, broker.port, device="box-003", telemetry_port=broker.telemetry_port
    ).model_copy(update={"commune_code": "19999"})
    pub = Publisher(settings, collector(settings), buffer_for(settings), PublisherOptions(interval_s=0.2))
    stop = threading.Event()
    t = threading.Thread(target=pub.run, args=(stop,), kwargs={"rounds": 50}, daemon=True)
    t.start()
    wait_for(
        lambda: (d := device(province, "box-003")) is not None and d.state == "online" and d.reading_at,
        30,
        "first reading",
    )
    stop.set()
    t.join(15)
    d = wait_for(
        lambda: (d := device(province, "box-003")) is not None and d.state == "offline" and d, 30, "clean offline"
    )
    assert d.boot_id == pub.boot_id and d.seq == pub.seq
    assert d.commune_code == "19999"
    assert d.cpu_temp_c == pytest.approx(51.0)
    assert d.reading["power"]["under_voltage_since_boot"] is True
    assert d.reading["scanner"]["devices"] == ["Canon DR-C225 (test)"]
    assert pub.sent >= 1 and len(pub.buffer) == 0


def test_readings_taken_offline_arrive_later_marked_historical(
    tmp_path: Path,
    broker: Broker,
    pki: Pki,
    province: Ingest,
) -> None:
    proxy = ThrottleProxy(broker.telemetry_port)
    try:
        settings = box_settings(tmp_path / "box", pki, broker.port, device="box-002", telemetry_port=proxy.port)
        pub = Publisher(settings, collector(settings), buffer_for(settings))
        assert pub.link is not None
        pub.link.start()
        assert pub.link.connected.wait(30)
        pub.step()
        wait_for(lambda: (d := device(province, "box-002")) is not None and d.reading_at, 30, "live reading")
        proxy.down = True
        proxy.cut()
        wait_for(lambda: not pub.link.connected.is_set(), 30, "link down")  # type: ignore[union-attr]
        for _ in range(3):
            pub.step()
        report_incident(settings, reporter="Nguyễn Thị Ánh", text="Máy quét kẹt giấy")
        assert len(pub.buffer) == 4  # 3 readings + the incident, kept on disk
        proxy.down = False
        assert pub.link.connected.wait(60)
        pub.step()  # a live reading, then the buffer drains

        def historical() -> int:
            with province.factory() as s:
                return int(
                    s.scalar(
                        select(func.count())
                        .select_from(History)
                        .where(History.device_id == "box-002", History.historical)
                    )
                    or 0
                )

        assert wait_for(lambda: historical() == 3, 30, "3 historical readings")
        assert len(pub.buffer) == 0
        with province.factory() as s:
            inc = s.scalars(select(IncidentRow)).all()
        assert [(i.reporter, i.text) for i in inc] == [("Nguyễn Thị Ánh", "Máy quét kẹt giấy")]
        pub.link.stop()
    finally:
        proxy.close()


def test_a_killed_box_is_lost_by_its_will(tmp_path: Path, broker: Broker, pki: Pki, province: Ingest) -> None:
    client = pki.clients["box-001"]
    env = {
        **os.environ,
        "APPLIANCE_DATA_DIR": str(tmp_path / "box"),
        "APPLIANCE_DEVICE_ID": "box-001",
        "APPLIANCE_COMMUNE_CODE": "19999",
        "APPLIANCE_OUTBOX__HOST": "127.0.0.1",
        "APPLIANCE_OUTBOX__PORT": str(broker.port),
        "APPLIANCE_OUTBOX__TELEMETRY_PORT": str(broker.telemetry_port),
        "APPLIANCE_OUTBOX__CA_FILE": str(pki.ca.cert),
        "APPLIANCE_OUTBOX__CERT_FILE": str(client.cert),
        "APPLIANCE_OUTBOX__KEY_FILE": str(client.key),
        "SANE_CONFIG_DIR": str(tmp_path),  # no dll.conf: no scanner, quickly
        "SOFTHSM2_CONF": str(tmp_path / "none.conf"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "telemetry", "run", "--interval", "1"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        d = wait_for(
            lambda: (d := device(province)) is not None and d.state == "online" and d.reading_at and d, 60, "online"
        )
        session = (d.boot_id, d.seq)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        d = wait_for(lambda: (d := device(province)) is not None and d.state == "lost" and d, 60, "the will")
        assert (d.boot_id, d.seq) == session
        assert any(i["reason"] == "Máy quét không kết nối" for i in d.items)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_stale_will_never_overrides_the_current_session(tmp_path: Path) -> None:
    ing = Ingest(open_telemetry(f"sqlite:///{tmp_path / 'c.db'}"))

    def status(state: str, boot: str, seq: int) -> tuple[str, bytes]:
        s = Status(state=state, device_id="box-001", boot_id=boot, seq=seq, at=datetime.now(UTC))  # type: ignore[arg-type]
        return "devices/box-001/status", s.model_dump_json().encode()

    ing.apply([status("online", "boot-1", 1)])
    ing.apply([status("online", "boot-2", 7)])  # rebooted and reconnected ...
    ing.apply([status("lost", "boot-1", 1)])  # ... before the broker gave up on the old session
    d = device(ing)
    assert d is not None and d.state == "online" and ing.stats.stale_wills == 1
    ing.apply([status("lost", "boot-2", 7)])
    d = device(ing)
    assert d is not None and d.state == "lost"


def test_a_box_cannot_speak_for_another(tmp_path: Path) -> None:
    ing = Ingest(open_telemetry(f"sqlite:///{tmp_path / 'c.db'}"))
    s = Status(state="online", device_id="box-002", boot_id="b", seq=1)
    ing.apply([("devices/box-001/status", s.model_dump_json().encode()), ("devices/box-001/telemetry", b"{not json")])
    assert device(ing) is None and ing.stats.invalid == 2


# --- broker refusals (ACL) and alerts over MQTT ---------------------------------------------------
def test_a_wrong_device_id_is_refused_kept_and_logged(
    tmp_path: Path, broker: Broker, pki: Pki, province: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    """box-001's certificate, configured as box-777: the broker's ACL (devices/%u/...) refuses every
    publish; MQTT 5 shows it only in the PUBACK reason code, so the reading must stay buffered."""
    settings = box_settings(tmp_path / "box", pki, broker.port, telemetry_port=broker.telemetry_port).model_copy(
        update={"device_id": "box-777"}
    )
    pub = Publisher(settings, collector(settings), buffer_for(settings))
    assert pub.link is not None
    pub.link.start()
    try:
        assert pub.link.connected.wait(30)
        with caplog.at_level("ERROR", logger="appliance.telemetry.publisher"):
            pub.step()
        assert pub.sent == 0 and pub.denied >= 1
        assert "135" in pub.denied_reason or "authori" in pub.denied_reason.lower()
        assert len(pub.buffer) >= 1  # the reading (and the day's counters) wait for a corrected id
        assert "check the device id 'box-777'" in caplog.text
        assert device(province, "box-777") is None and province.stats.readings == 0
    finally:
        pub.link.stop()


def test_a_refusal_is_flagged_in_the_next_status(tmp_path: Path, pki: Pki) -> None:
    """A broker whose ACL lets box-001 write its status but not its telemetry: the next `online` status
    carries the refusal and the province marks the box failing with the reason."""
    from tests.mqtt import Broker as B

    b = B(tmp_path / "broker", pki).start()
    try:
        acl = tmp_path / "broker" / "acl-telemetry"
        assert "topic write devices/box-001/telemetry\n" in acl.read_text()
        acl.write_text(acl.read_text().replace("topic write devices/box-001/telemetry\n", ""))
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)  # mosquitto reloads its ACL file
        url = f"sqlite:///{tmp_path / 'province.db'}"
        ing = Ingest(open_telemetry(url), history_every_s=0)
        client = pki.clients["receiver-1"]
        cfg = IngestConfig(
            host="127.0.0.1", port=b.telemetry_port, name="receiver-1", db_url=url, ca_file=pki.ca.cert,
            cert_file=client.cert, key_file=client.key, batch_wait_s=0.05,
        )  # fmt: skip
        stop = threading.Event()
        t = threading.Thread(target=run_ingest, args=(cfg, stop, ing), daemon=True)
        t.start()
        try:
            settings = box_settings(tmp_path / "box", pki, b.port, telemetry_port=b.telemetry_port)
            pub = Publisher(settings, collector(settings), buffer_for(settings))
            assert pub.link is not None
            pub.link.start()
            assert pub.link.connected.wait(30)
            pub.step()  # online (allowed), the reading (refused)
            assert pub.denied >= 1 and len(pub.buffer) >= 1
            pub.step()  # online again, with the refusal count
            d = wait_for(
                lambda: (d := device(ing)) is not None and any(i["item"] == "broker_acl" for i in d.items) and d,
                30,
                "the refusal flag",
            )
            assert d.verdict == "failing" and d.reading_at is None
            assert any("từ chối" in i["reason"] for i in d.items)
            assert any("0x87" in i["action"] for i in d.items)  # MQTT 5 "Not authorized"
            pub.link.stop()
        finally:
            stop.set()
            t.join(10)
    finally:
        b.kill()


def test_alerts_are_retained_mqtt_notifications(tmp_path: Path, broker: Broker, pki: Pki, province: Ingest) -> None:
    """A box whose disk is above 85 %: `province/alerts/box-002` holds its open alerts (retained), and
    the same topic gets the cleared state when the disk is freed."""
    import json
    import queue
    import ssl

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from appliance.telemetry.schema import Disk

    used = [95.0]
    settings = box_settings(tmp_path / "box", pki, broker.port, device="box-002", telemetry_port=broker.telemetry_port)
    col = collector(settings)
    col.overrides["disk"] = lambda: Disk(path="/data", total_bytes=10**10, free_bytes=10**9, used_pct=used[0])
    pub = Publisher(settings, col, buffer_for(settings))
    assert pub.link is not None
    pub.link.start()
    assert pub.link.connected.wait(30)
    pub.step()
    wait_for(lambda: (d := device(province, "box-002")) is not None and d.disk_used_pct == 95.0, 30, "reading")

    got: queue.Queue[dict[str, object]] = queue.Queue()
    watcher = pki.clients["monitor"]  # a monitoring account: `topic read province/alerts/#`
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="alert-watcher", protocol=MQTTProtocolVersion.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca.cert), certfile=str(watcher.cert), keyfile=str(watcher.key),
              tls_version=ssl.PROTOCOL_TLS_CLIENT)  # fmt: skip
    c.on_message = lambda _c, _u, m: got.put({"topic": m.topic, "retain": m.retain, **json.loads(m.payload)})
    c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe("province/alerts/box-002", qos=1)
    c.connect("127.0.0.1", broker.telemetry_port)
    c.loop_start()
    try:
        first = got.get(timeout=30)  # subscribed after the alert opened: the retained state
        assert first["topic"] == "province/alerts/box-002" and first["retain"] is True
        assert first["commune_code"] == settings.commune_code
        alerts = first["alerts"]
        assert isinstance(alerts, list) and [a["alert"] for a in alerts] == ["disk"]
        assert alerts[0]["message"] == "Ổ đĩa đã dùng 95%"
        used[0] = 40.0
        pub.step()
        cleared = got.get(timeout=30)
        assert cleared["alerts"] == [] and cleared["retain"] is False  # live delivery of the new state
    finally:
        c.loop_stop()
        c.disconnect()
        pub.link.stop()


def test_the_link_item_measures_the_real_broker(tmp_path: Path, broker: Broker, pki: Pki) -> None:
    """Broadband to the province: a TLS connect with the device certificate to the running mosquitto (no MQTT
    session: the box's own sender keeps its client id), round trip measured; a CA that does not trust the
    broker is told apart from a dead line."""
    from appliance.readiness import checks
    from appliance.telemetry import probes
    from appliance.telemetry.schema import Reading
    from provisioning.ca import make_ca

    settings = box_settings(tmp_path / "data", pki, broker.port)
    link = probes.link(settings, deadline_s=5.0)
    assert link.reachable is True and link.tls is True and link.error is None
    assert link.connect_ms is not None and link.handshake_ms is not None and link.handshake_ms >= link.connect_ms
    reading = Reading(
        device_id="box-001", commune_code="19999", boot_id="b", at=datetime.now(UTC), version="1", link=link
    )
    item = next(c for c in checks(reading) if c.item == "link")
    assert item.level == "ok" and item.reason.startswith(f"Kết nối được máy chủ tỉnh 127.0.0.1:{broker.port}, độ trễ ")
    assert "chưa có gói nào được tỉnh xác nhận" in item.reason and item.detail is not None
    assert item.detail["rtt_ms"] == link.connect_ms

    stranger = make_ca(tmp_path / "other-ca")
    distrust = box_settings(tmp_path / "data", pki, broker.port, ca_file=stranger.cert)
    refused = probes.link(distrust, deadline_s=5.0)
    assert refused.reachable is False and refused.connect_ms is not None
    assert refused.error is not None and refused.error.startswith("TLS")
    item = next(c for c in checks(reading.model_copy(update={"link": refused})) if c.item == "link")
    assert item.level == "failing" and "từ chối kết nối bảo mật" in item.reason
    assert "chứng thư của thiết bị" in item.action
