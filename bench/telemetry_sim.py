"""Telemetry at national scale: N virtual boxes publish real telemetry payloads (the box's own pydantic
models, one real reading of this machine as the template) to a private mosquitto with TLS; the province
ingest (province.telemetry.run_ingest, the code `province serve` runs) stores them in a SQLite catalogue;
then the dashboard pages are rendered at that size.

    .venv/bin/python -m bench.telemetry_sim --boxes 3300 --minutes 5 [--connections 33] [--json]

The boxes are multiplexed over `--connections` MQTT connections on the broker's telemetry listener (one
certificate each, `sim-{i}`, since the broker binds each client id to its certificate; each allowed to
write every device's status and telemetry), so what is measured is the province side: broker fan-out, ingest and
database. Each "minute" every box publishes one reading; minutes are sent back to back (as fast as the
broker takes them), so the figure is the ingest's sustained capacity, compared with what 3,300 boxes at one
reading per minute need (55 messages/s).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(d: Path, connections: int) -> tuple[subprocess.Popen[bytes], int, Any]:
    """A broker as provisioning.broker writes it; returns its telemetry listener's port."""
    from provisioning import broker
    from provisioning.ca import issue, make_ca

    ca = make_ca(d / "pki")
    server = issue(ca, "broker", d / "pki", server=True)
    sims = [f"sim-{i}" for i in range(connections)]
    certs = {n: issue(ca, n, d / "pki") for n in ("receiver-1", *sims)}
    port = free_port()
    files = broker.write_broker_config(
        d / "broker",
        port=free_port(),
        telemetry_port=port,
        ca=ca.cert,
        cert=server.cert,
        key=server.key,
        receivers=["receiver-1"],
        devices=[],
        run_as_root=os.geteuid() == 0,
    )
    files.telemetry_acl.write_text(
        files.telemetry_acl.read_text()
        + "".join(f"\nuser CN={n}\ntopic write devices/+/status\ntopic write devices/+/telemetry\n" for n in sims)
    )
    conf = files.conf.read_text().replace("max_queued_messages 1000", "max_queued_messages 200000")
    files.conf.write_text(conf)
    proc = subprocess.Popen(["mosquitto", "-c", str(files.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    return proc, port, (ca, certs)


def sim_client(port: int, pki: Any, i: int) -> paho.Client:
    ca, certs = pki
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{i}", protocol=MQTTProtocolVersion.MQTTv5)
    c.tls_set(
        ca_certs=str(ca.cert),
        certfile=str(certs[f"sim-{i}"].cert),
        keyfile=str(certs[f"sim-{i}"].key),
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    return c


def template() -> dict[str, Any]:
    from appliance.settings import load_settings
    from appliance.telemetry import pi
    from appliance.telemetry.collector import Collector
    from appliance.telemetry.schema import Certificate, RosterEntry, Scanner, Token

    with tempfile.TemporaryDirectory() as d:
        r = Collector(
            load_settings(data_dir=Path(d)),
            firmware=pi.Recorded({"get_throttled": "throttled=0x0", "measure_temp": "temp=50.0'C"}),
            with_tokens=False,
            overrides={"scanner": lambda: Scanner(present=True, devices=["Canon DR-C225 (sim)"])},
        ).collect()
    now = datetime.now(UTC)
    tok = Token(
        serial="0123456789",
        label="tok",
        model="sim",
        pin_state="ok",
        certificates=[
            Certificate(
                owner="Nguyễn Văn A",
                role="officer",
                serial="01",
                not_after=now + timedelta(days=200),
                days_to_expiry=200,
                usable_for_signing=True,
            ),
            Certificate(
                owner="UBND xã",
                role="organisation",
                serial="02",
                not_after=now + timedelta(days=300),
                days_to_expiry=300,
                usable_for_signing=True,
            ),
        ],
    )
    # a unit's roster: the organisation and six officers, one of them expiring (the /certificates pages)
    roster = [
        RosterEntry(
            username="" if i == 0 else f"canbo{i}",
            role="organisation" if i == 0 else "officer",
            verdict="expiring" if i == 3 else "valid",
            subject=f"CN=Cán bộ {i},O=UBND xã,C=VN",
            serial=f"{i:04x}",
            issuer="CN=CA thử,C=VN",
            not_after=now + timedelta(days=20 if i == 3 else 300),
            key="rsa-2048",
            pss=True,
            revocation="good",
            last_seen=now,
        )
        for i in range(7)
    ]
    return r.model_copy(update={"tokens": [tok], "roster": roster}).model_dump(mode="json")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--boxes", type=int, default=3300)
    ap.add_argument("--minutes", type=int, default=5, help="readings per box")
    ap.add_argument("--connections", type=int, default=33)
    ap.add_argument("--renders", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from province.dashboard.app import create_app
    from province.telemetry import Device, History, Ingest, IngestConfig, load_units, open_telemetry, run_ingest

    work = Path(tempfile.mkdtemp(prefix="telemetry-sim-"))
    proc, port, pki = start_broker(work, args.connections)
    url = f"sqlite:///{work / 'catalogue.db'}"
    factory = open_telemetry(url)
    provinces = [
        "01",
        "04",
        "08",
        "11",
        "12",
        "14",
        "15",
        "19",
        "20",
        "22",
        "24",
        "25",
        "31",
        "33",
        "37",
        "38",
        "40",
        "42",
        "44",
        "46",
        "48",
        "51",
        "52",
        "56",
        "66",
        "68",
        "75",
        "79",
        "80",
        "82",
        "86",
        "91",
        "92",
        "96",
    ]
    load_units(
        factory,
        [
            {
                "commune_code": f"{i:05d}",
                "name": f"Xã Thử {i}",
                "province_code": provinces[i % 34],
                "province_name": f"Tỉnh {provinces[i % 34]}",
            }
            for i in range(args.boxes)
        ],
    )
    ing = Ingest(factory)  # production setting: one chart point per box per 10 min
    ca, certs = pki
    cfg = IngestConfig(
        host="127.0.0.1",
        port=port,
        name="receiver-1",
        db_url=url,
        ca_file=ca.cert,
        cert_file=certs["receiver-1"].cert,
        key_file=certs["receiver-1"].key,
    )
    stop = threading.Event()
    t = threading.Thread(target=run_ingest, args=(cfg, stop, ing), daemon=True)
    t.start()
    time.sleep(1.5)
    base = template()
    clients = [sim_client(port, pki, i) for i in range(args.connections)]
    boot = "sim-boot"
    # counted from here: the statuses are part of the load (before, the count started after them, so the
    # statuses already ingested were expected twice and the wait ended on its 15 s no-progress timeout)
    t0 = time.monotonic()
    start_msgs = ing.stats.messages
    for b in range(args.boxes):  # retained online status
        dev = f"sim-{b:05d}"
        clients[b % len(clients)].publish(
            f"devices/{dev}/status",
            json.dumps({"state": "online", "device_id": dev, "boot_id": boot, "seq": 1, "version": "0.1.0"}),
            qos=1,
            retain=True,
        )
    total = args.boxes * args.minutes
    pub_s = 0.0
    for minute in range(args.minutes):
        at = datetime.now(UTC) + timedelta(minutes=minute)
        for b in range(args.boxes):
            dev = f"sim-{b:05d}"
            p = dict(base)
            p.update(device_id=dev, commune_code=f"{b:05d}", boot_id=boot, at=at.isoformat())
            p["disk"] = dict(base["disk"], used_pct=float(30 + (b * 7 + minute) % 60))
            clients[b % len(clients)].publish(f"devices/{dev}/telemetry", json.dumps(p), qos=1)
        pub_s = time.monotonic() - t0
    expected = start_msgs + total + args.boxes  # readings + statuses
    last, stalled_at = -1, time.monotonic()
    while ing.stats.messages < expected:
        if ing.stats.messages != last:
            last, stalled_at = ing.stats.messages, time.monotonic()
        elif time.monotonic() - stalled_at > 15:
            break  # nothing more is coming: report what arrived
        time.sleep(0.02)
    elapsed = (stalled_at if ing.stats.messages < expected else time.monotonic()) - t0
    got = ing.stats.messages - start_msgs
    for c in clients:
        c.loop_stop()
        c.disconnect()

    from province.dashboard import readiness
    from province.dashboard.readiness import DashboardConfig

    timings: dict[str, list[float]] = {}
    from province.dashboard.auth import set_account

    set_account(factory, username="bench", full_name="Bench", password="bench-password")
    app = TestClient(create_app(factory, DashboardConfig()), client=("127.0.0.1", 50000))  # computes every row once
    form = app.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    signed = app.post("/login", data={"username": "bench", "password": "bench-password", "csrf": csrf})
    assert "/login" not in str(signed.url), "the bench account could not sign in"
    with factory() as s, s.begin():
        r0 = time.perf_counter()
        readiness.refresh_rows(s, DashboardConfig(), datetime.now(UTC))
        refresh_ms = (time.perf_counter() - r0) * 1000
    paths = (
        "/",
        "/?province=44",
        "/?verdict=warning",
        "/?q=thu 42&sort=disk&desc=1",
        "/?page=17",
        "/rollout",
        "/metrics",
        "/export.csv",
        "/device/sim-00042",
        "/certificates",
        "/certificates?province=44&show=all",
        "/certificates/00042",
        "/certificates.csv",
        "/statistics",
    )
    load_before = os.getloadavg()
    for path in paths:
        app.get(path)  # warm
        samples = []
        for _ in range(args.renders):
            s0 = time.perf_counter()
            r = app.get(path)
            samples.append((time.perf_counter() - s0) * 1000)
            assert r.status_code == 200, (path, r.status_code)
        timings[path] = samples
    load_after = os.getloadavg()
    with factory() as s:
        devices = s.scalar(select(func.count()).select_from(Device))
        history = s.scalar(select(func.count()).select_from(History))
    stop.set()
    t.join(10)
    proc.terminate()
    proc.wait(10)
    rate = got / elapsed if elapsed else 0.0
    out = {
        "boxes": args.boxes,
        "readings_per_box": args.minutes,
        "connections": args.connections,
        "messages_ingested": got,
        "messages_expected": total + args.boxes,
        "publish_s": round(pub_s, 2),
        "ingest_s": round(elapsed, 2),
        "ingest_msgs_per_s": round(rate, 1),
        "needed_msgs_per_s": round(args.boxes / 60.0, 1),
        "headroom_x": round(rate / (args.boxes / 60.0), 1) if args.boxes else None,
        "batches": ing.stats.batches,
        "ingest_stats": vars(ing.stats),
        "devices_rows": devices,
        "history_rows": history,
        "payload_bytes": len(json.dumps(base)),
        "render_ms_median": {k: round(statistics.median(v), 1) for k, v in timings.items()},
        "render_ms_max": {k: round(max(v), 1) for k, v in timings.items()},
        "index_html_bytes": len(app.get("/").content),
        "rows_refresh_ms": round(refresh_ms, 1),
        "loadavg_before_renders": [round(x, 2) for x in load_before],
        "loadavg_after_renders": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
        "workdir": str(work),
    }
    print(json.dumps(out, indent=None if args.json else 2, ensure_ascii=False))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
