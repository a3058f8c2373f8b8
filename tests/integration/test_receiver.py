# ruff: noqa: F811 - pytest fixtures imported from tests.mqtt / tests.postgres
"""The provincial receiver: two `province serve` processes on one MQTT 5 shared subscription, duplicates
answered with the same receipt, and the catalogue on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance import db
from appliance.outbox import store
from appliance.outbox.mqtt import Link, LinkConfig
from appliance.outbox.sender import Sender
from province import catalogue
from province.receiver import Receiver
from tests.integration.test_outbox_faults import raw_package
from tests.mqtt import (  # noqa: F401 - fixtures
    MONITOR,
    Broker,
    Pkg,
    Pki,
    Running,
    box_settings,
    build_packages,
    fresh_broker,
    outbox_rows,
    pki,
    queue_packages,
    receiver_config,
    wait_for,
)
from tests.postgres import pg_url, tables_in  # noqa: F401 - fixture
from tests.softhsm import SoftToken

ROOT = Path(__file__).resolve().parents[2]
STOPPING = re.compile(r"receiver (\S+) stopping: segments=(\d+) bytes=(\d+) accepted=(\d+)")


class Monitor:
    """A plain MQTT client that records what it reads. Its own certificate (`monitor`): the broker binds
    the client id to the certificate, so a box's certificate here would take the box's sender over."""

    def __init__(self, broker: Broker, pki: Pki, topics: tuple[str, ...]) -> None:
        c = pki.clients[MONITOR]
        self.link = Link(
            LinkConfig(
                "127.0.0.1", broker.port, MONITOR, pki.ca.cert, c.cert, c.key,
                session_expiry_s=0, subscriptions=topics,
            )
        )  # fmt: skip
        self.messages: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self.link.start()
        assert self.link.wait_connected(10)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        while not self._stop.is_set():
            ev = self.link.next_event(0.1)
            if ev is not None and ev.kind == "message":
                self.messages.append((ev.topic, ev.payload))

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p in list(self.messages) if t == topic]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.link.stop()


def catalogue_at(url: str) -> list[catalogue.StoredPackage]:
    factory = catalogue.open_catalogue(url)
    with factory() as s:
        return catalogue.list_packages(s)


def _serve(pki: Pki, port: int, name: str, data_dir: Path, db_url: str) -> subprocess.Popen[str]:
    c = pki.clients[name]
    return subprocess.Popen(
        [sys.executable, "-m", "province", "serve", "-v", "--no-verify", "--port", str(port), "--name", name,
         "--ca", str(pki.ca.cert), "--cert", str(c.cert), "--key", str(c.key),
         "--data-dir", str(data_dir), "--db-url", db_url, "--dashboard-port", "0", "--no-telemetry"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_receiver_processes_share_the_work_each_package_stored_once(
    fresh_broker: Broker, pki: Pki, pg_url: str, tmp_path: Path
) -> None:
    rx_dir = tmp_path / "rx"  # spool and store shared by both processes; catalogue in PostgreSQL
    states = "province/receivers/+/state"
    mon = Monitor(fresh_broker, pki, (states,))
    procs = [_serve(pki, fresh_broker.port, name, rx_dir, pg_url) for name in ("receiver-1", "receiver-2")]
    try:

        def both_online() -> bool:
            last: dict[str, str] = {}
            for topic, payload in list(mon.messages):
                last[topic.split("/")[2]] = json.loads(payload)["state"]
            return last.get("receiver-1") == "online" and last.get("receiver-2") == "online"

        wait_for(both_online, 30, "both receivers online")
        boxes: list[tuple[Sender, Any, list[Pkg]]] = []
        for b, device in enumerate(("box-001", "box-002")):
            pkgs = [raw_package(tmp_path / device, 300_000 + 230_000 * i, 10 * b + i) for i in range(4)]
            settings = box_settings(tmp_path / device, pki, fresh_broker.port, device=device)
            boxes.append((Sender(settings, queue_packages(settings, pkgs)), settings, pkgs))
        running = [Running(sender, until_empty=True) for sender, _s, _p in boxes]
        for r in running:
            r.thread.join(120)
            assert not r.thread.is_alive(), "a box did not finish"
            r.stop()
    finally:
        outputs = []
        for p in procs:
            p.send_signal(signal.SIGTERM)
            outputs.append(p.communicate(timeout=20)[1])
        mon.close()
    summaries = {m.group(1): m for out in outputs for m in STOPPING.finditer(out)}
    assert set(summaries) == {"receiver-1", "receiver-2"}, outputs
    assert all(int(m.group(2)) > 0 for m in summaries.values()), "one receiver took no segments"
    all_pkgs = [p for _s, _st, pkgs in boxes for p in pkgs]
    total = sum(p.size for p in all_pkgs)
    assert sum(int(m.group(3)) for m in summaries.values()) >= total  # every byte reached a receiver

    stored = catalogue_at(pg_url)
    assert sorted(r.package_id for r in stored) == sorted(p.package_id for p in all_pkgs)  # each exactly once
    assert {"packages", "rejections"} <= set(tables_in(pg_url))  # really in PostgreSQL, in our schema
    by_id = {r.package_id: r for r in stored}
    for sender, _settings, pkgs in boxes:
        rows = outbox_rows(sender.factory)
        for p in pkgs:
            assert rows[p.package_id].state == "receipted", rows[p.package_id].reason
            assert rows[p.package_id].warehouse_id == by_id[p.package_id].warehouse_id
            assert by_id[p.package_id].device_id == sender.topics.device_id
    files = sorted((rx_dir / "store").glob("*/*/*.asice"))
    assert len(files) == len(all_pkgs)
    for f in files:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem
    assert not list((rx_dir / "spool").glob("*/*"))


@pytest.mark.slow
def test_resent_package_gets_the_same_receipt_and_is_not_stored_again(
    fresh_broker: Broker, pki: Pki, pg_url: str, shared_token: SoftToken, tmp_path: Path
) -> None:
    pkg = build_packages(tmp_path / "pkgs", shared_token, [600_000], first_seed=300)[0]
    receipts = "devices/box-001/receipts"
    mon = Monitor(fresh_broker, pki, (receipts,))
    cfg = receiver_config(tmp_path / "rx", pki, fresh_broker.port, trust=(shared_token.ca.pem,), db_url=pg_url)
    rx = Running(Receiver(cfg))
    try:
        settings = box_settings(tmp_path / "box", pki, fresh_broker.port)
        factory = queue_packages(settings, [pkg])
        Sender(settings, factory).run(until_empty=True)
        first = outbox_rows(factory)[pkg.package_id]
        assert first.state == "receipted" and first.warehouse_id
        segments_before = rx.obj.stats.segments
        assert segments_before == 3  # 600 KB in 256 KiB segments

        # The box restarted after the transfer but before the receipt reached it: the row is back to
        # `transferred`, no warehouse id, and the receipt is overdue, so the sender asks again.
        with db.transaction(factory) as s:
            row = store.get_item(s, package_id=pkg.package_id)
            row.state, row.warehouse_id, row.receipted_at = store.PackageState.TRANSFERRED, None, None
            row.updated_at = db.utcnow() - dt.timedelta(hours=1)
        again = Sender(box_settings(tmp_path / "box", pki, fresh_broker.port, receipt_timeout_s=60), factory)
        again.run(until_empty=True)
        wait_for(lambda: len(mon.payloads(receipts)) >= 2, 10, "the second receipt")
    finally:
        rx.stop()
        mon.close()
    second = outbox_rows(factory)[pkg.package_id]
    assert second.state == "receipted" and second.warehouse_id == first.warehouse_id
    assert again.stats.segments == 0 and again.stats.inits == 1  # answered on init: no byte sent again
    assert rx.obj.stats.segments == segments_before and rx.obj.stats.duplicates >= 1
    assert rx.obj.stats.accepted == 1
    bodies = [json.loads(p) for p in mon.payloads(receipts)]
    assert all(b == bodies[0] for b in bodies) and bodies[0]["status"] == "accepted"  # the same receipt
    stored = catalogue_at(pg_url)
    assert [r.package_id for r in stored] == [pkg.package_id]  # once
    assert stored[0].receipt == bodies[0] and stored[0].signer  # verified, catalogued in PostgreSQL
    assert len(list((tmp_path / "rx" / "store").glob("*/*/*.asice"))) == 1


def test_catalogue_on_postgresql_records_a_package_once_under_a_race(pg_url: str, tmp_path: Path) -> None:
    factories = [catalogue.open_catalogue(pg_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[catalogue.StoredPackage] = []

    def record(i: int) -> None:
        row = catalogue.StoredPackage(
            package_id="a" * 64, device_id="box-001", commune_code="19999", sha256="b" * 64, size=10,
            path=f"/store/{i}", warehouse_id=f"WH-19999-{i}", receipt={"status": "accepted", "by": i},
        )  # fmt: skip
        barrier.wait()
        results.append(catalogue.record(factories[i], row))

    threads = [threading.Thread(target=record, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and results[0].warehouse_id == results[1].warehouse_id  # the loser got the winner's
    assert results[0].receipt == results[1].receipt
    catalogue.record_rejection(factories[0], package_id="c" * 64, device_id="box-002", reason="wrong_hash: x")
    listing = subprocess.run(
        [sys.executable, "-m", "province", "packages", "--json", "--db-url", pg_url, "--data-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    out = json.loads(listing.stdout)
    assert out["total"] == 1 and list(out["communes"]) == ["19999"]
    assert out["rejections"] == [{"package_id": "c" * 64, "device_id": "box-002", "reason": "wrong_hash: x"}]
    assert not (tmp_path / "catalogue.db").exists()  # nothing went to the SQLite default


def test_catalogue_made_before_deciding_agency_gets_the_column(pg_url: str) -> None:
    """The catalogue has no migrations: a column added to a model is added to an older table at start-up,
    under the same advisory lock as CREATE TABLE (two receivers starting together)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(catalogue.normalise_url(pg_url))
    catalogue.create_tables(engine, catalogue.Base.metadata)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE packages DROP COLUMN deciding_agency"))  # as a 2025 catalogue
    engine.dispose()
    factories: list[object] = []
    threads = [threading.Thread(target=lambda: factories.append(catalogue.open_catalogue(pg_url))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(factories) == 2
    engine = create_engine(catalogue.normalise_url(pg_url))
    assert "deciding_agency" in {c["name"] for c in inspect(engine).get_columns("packages")}
    engine.dispose()
    factory = catalogue.open_catalogue(pg_url)
    row = catalogue.record(
        factory,
        catalogue.StoredPackage(
            package_id="d" * 64, device_id="box-001", commune_code="44001", deciding_agency="44002", sha256="e" * 64,
            size=1, path="/store/44002/ee/x.asice", warehouse_id="WH-44002-d", receipt={"status": "accepted"},
        ),
    )  # fmt: skip
    assert row.deciding_agency == "44002"


def test_packages_are_filed_under_the_deciding_agency() -> None:
    from province.receiver import deciding_agency

    assert deciding_agency({"commune_code": "44001", "deciding_agency": "44002"}) == "44002"
    assert deciding_agency({"commune_code": "44001"}) == "44001"  # a package made before Decree 118 support
    assert deciding_agency({"commune_code": "44001", "deciding_agency": "../etc"}) == "44001"
    assert deciding_agency({}) == "00000"


def test_plain_postgresql_url_means_psycopg3() -> None:
    assert catalogue.normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert catalogue.normalise_url("sqlite:///x.db") == "sqlite:///x.db"
