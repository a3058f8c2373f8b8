# ruff: noqa: F811 - pytest fixtures imported from tests.mqtt
""" "When bandwidth allows" with a real broker: time windows on a fake clock, priorities pre-empting a bulk
transfer, and a ~1 Mbit/s link through the throttling proxy that is cut twice mid-transfer."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from appliance import db
from appliance.outbox import store
from appliance.outbox.sender import Sender
from province.receiver import Receiver
from tests.integration.test_outbox_faults import raw_package
from tests.mqtt import (  # noqa: F401 - fixtures
    Broker,
    Pki,
    Running,
    ThrottleProxy,
    box_settings,
    broker,
    catalogue_rows,
    outbox_rows,
    pki,
    queue_packages,
    receiver_config,
    wait_for,
)

SEG = 256 * 1024
pytestmark = pytest.mark.slow


class FakeClock:
    """Local wall time for the sender's windows, set by the test."""

    def __init__(self, when: dt.datetime) -> None:
        self.now = when

    def __call__(self) -> dt.datetime:
        return self.now


def test_package_waits_for_its_window_while_status_goes(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    status = raw_package(tmp_path, 5_000, 40)
    package = raw_package(tmp_path, 300_000, 41)
    settings = box_settings(tmp_path / "box", pki, broker.port, windows=["17:30-07:00"])  # outside office hours
    factory = queue_packages(settings, [])
    with db.transaction(factory) as s:
        store.enqueue(s, path=package.path, package_id=package.package_id, priority=store.PRIORITY_PACKAGE)
        store.enqueue(s, path=status.path, package_id=status.package_id, priority=store.PRIORITY_STATUS)
    clock = FakeClock(dt.datetime(2026, 3, 2, 10, 0).astimezone())  # a Monday, 10:00: office hours
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    sender = Sender(settings, factory, clock=clock)
    box = Running(sender)
    try:
        wait_for(lambda: outbox_rows(factory)[status.package_id].state == "receipted", 30, "the status item")
        held = sender.stats.held
        wait_for(lambda: sender.stats.held >= held + 2, 10, "the sender to look at the queue again")
        row = outbox_rows(factory)[package.package_id]
        assert sender.paused() == "outside the sending window"
        assert (row.state, row.attempts, row.bytes_acked) == ("queued", 0, 0)
        assert [r.package_id for r in catalogue_rows(tmp_path / "rx")] == [status.package_id]
        assert rx.obj.stats.bytes == status.size  # not one byte of the package went out

        clock.now = clock.now.replace(hour=18)  # the window opens
        wait_for(lambda: outbox_rows(factory)[package.package_id].state == "receipted", 30, "the package")
    finally:
        box.stop()
        rx.stop()
    assert sender.paused() is None
    assert sorted(r.package_id for r in catalogue_rows(tmp_path / "rx")) == sorted(
        [status.package_id, package.package_id]
    )


def test_higher_priority_package_queued_later_goes_first(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    bulk = raw_package(tmp_path, 4_000_000, 42)
    urgent = raw_package(tmp_path, 200_000, 43)
    settings = box_settings(tmp_path / "box", pki, broker.port, rate_kbit=8000)  # ~1 MB/s: bulk takes ~4 s
    factory = queue_packages(settings, [])
    with db.transaction(factory) as s:
        store.enqueue(s, path=bulk.path, package_id=bulk.package_id, priority=store.PRIORITY_BULK)
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    sender = Sender(settings, factory)
    box = Running(sender, until_empty=True)
    try:
        wait_for(lambda: rx.obj.stats.segments >= 2, 30, "the bulk transfer to start")
        with db.transaction(factory) as s:
            store.enqueue(s, path=urgent.path, package_id=urgent.package_id, priority=store.PRIORITY_PACKAGE)
        box.thread.join(120)
        assert not box.thread.is_alive()
    finally:
        box.stop()
        rx.stop()
    rows = outbox_rows(factory)
    assert rows[urgent.package_id].state == rows[bulk.package_id].state == "receipted"
    assert rows[urgent.package_id].receipted_at < rows[bulk.package_id].receipted_at  # pre-empted the bulk
    assert sender.stats.inits >= 3  # bulk, urgent, bulk resumed
    assert sender.stats.resent_bytes == 0  # the bulk yielded between segments and resumed where it stopped
    assert rx.obj.stats.bytes == bulk.size + urgent.size


def test_throttled_link_cut_twice_delivers_everything_with_little_resent(
    broker: Broker, pki: Pki, tmp_path: Path
) -> None:
    pkg = raw_package(tmp_path, 1_500_000, 44)
    proxy = ThrottleProxy(broker.port, rate_bps=1_000_000 / 8)  # ~1 Mbit/s each way
    settings = box_settings(tmp_path / "box", pki, proxy.port, response_timeout_s=20)
    factory = queue_packages(settings, [pkg])
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    sender = Sender(settings, factory)
    box = Running(sender, until_empty=True)
    cuts = 0
    try:
        for share in (0.3, 0.65):
            wait_for(lambda s=share: rx.obj.stats.bytes >= s * pkg.size, 60, f"{share:.0%} of the package")
            proxy.cut()
            cuts += 1
        box.thread.join(120)
        assert not box.thread.is_alive()
    finally:
        box.stop()
        rx.stop()
        proxy.close()
    rows = outbox_rows(factory)
    assert rows[pkg.package_id].state == "receipted"
    stored = catalogue_rows(tmp_path / "rx")
    assert [r.package_id for r in stored] == [pkg.package_id]
    assert hashlib.sha256(Path(stored[0].path).read_bytes()).hexdigest() == pkg.package_id  # nothing lost
    assert cuts == 2 and sender.stats.inits >= 3  # resumed after each cut
    stored_twice = rx.obj.stats.bytes - pkg.size
    assert 0 <= stored_twice <= cuts * SEG  # at most one segment per cut reached the receiver twice
    on_wire = proxy.up_bytes - pkg.size  # every byte that crossed the link, beyond the package itself
    assert on_wire <= cuts * SEG + 0.03 * pkg.size, (on_wire, sender.stats.resent_bytes)
    # the link's recent throughput, as `appliance doctor` reports it: the last transfer (since the last cut)
    from appliance.outbox import traffic
    from appliance.telemetry import probes

    kept = traffic.read(traffic.path_for(settings.data_dir))
    assert kept is not None and 0 < kept.last_bytes <= pkg.size + cuts * SEG and kept.last_seconds > 0
    link = probes.link(settings, deadline_s=2.0)
    assert link.throughput_bps is not None and 0 < link.throughput_bps <= 2 * 1_000_000  # the proxy's 1 Mbit/s
    assert link.last_delivery_at is not None
