# ruff: noqa: F811 - pytest fixtures imported from tests.mqtt
"""Faults, each with nothing lost and nothing stored twice: broker killed mid-transfer, box kill -9
mid-segment, receiver away, corrupted segment, a package failing verification, an ACL denial, a full disk."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.outbox.sender import Sender
from province.receiver import Receiver
from tests.integration.test_outbox_e2e import box_env
from tests.mqtt import (  # noqa: F401 - fixtures
    Broker,
    Pkg,
    Pki,
    Running,
    box_settings,
    broker,
    build_packages,
    catalogue_rows,
    fresh_broker,
    outbox_rows,
    pki,
    queue_packages,
    receiver_config,
    wait_for,
)
from tests.softhsm import SoftToken

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def raw_package(directory: Path, size: int, seed: int) -> Pkg:
    """Transport-only tests: any bytes under their SHA-256 as package id (receivers run with verify=False)."""
    import random

    data = random.Random(seed).randbytes(size)
    path = directory / f"raw{seed}.bin"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Pkg(path, hashlib.sha256(data).hexdigest(), size)


def _assert_delivered_once(factory: object, rx_dir: Path, pkgs: list[Pkg]) -> None:
    rows = outbox_rows(factory)
    assert {rows[p.package_id].state for p in pkgs} == {"receipted"}, {r.state: r.reason for r in rows.values()}
    stored = catalogue_rows(rx_dir)
    assert sorted(r.package_id for r in stored) == sorted(p.package_id for p in pkgs)
    for row in stored:
        assert hashlib.sha256(Path(row.path).read_bytes()).hexdigest() == row.sha256 == row.package_id


def test_broker_killed_and_restarted_mid_transfer(fresh_broker: Broker, pki: Pki, tmp_path: Path) -> None:
    pkgs = [raw_package(tmp_path, 3_000_000, 1), raw_package(tmp_path, 50_000, 2)]
    settings = box_settings(tmp_path / "box", pki, fresh_broker.port, rate_kbit=8000)
    factory = queue_packages(settings, pkgs)
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, fresh_broker.port, verify=False)))
    box = Running(Sender(settings, factory), until_empty=True)
    try:
        wait_for(lambda: rx.obj.stats.segments >= 2, 30, "the first segments")
        fresh_broker.kill()  # SIGKILL: the broker's in-memory state is gone
        assert outbox_rows(factory)[pkgs[0].package_id].state == "sending"
        fresh_broker.start()
        box.thread.join(60)
        assert not box.thread.is_alive()
    finally:
        box.stop()
        rx.stop()
    _assert_delivered_once(factory, tmp_path / "rx", pkgs)
    assert box.obj.stats.inits >= 3  # asked the receiver where to resume after the reconnect


def test_box_killed_mid_segment_resumes_after_restart(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    pkg = raw_package(tmp_path, 3_000_000, 3)
    env = box_env(tmp_path / "box", pki, broker.port, APPLIANCE_OUTBOX__RATE_KBIT="6000")
    factory = queue_packages(box_settings(tmp_path / "box", pki, broker.port), [pkg])
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "outbox", "run"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: rx.obj.stats.segments >= 3, 60, "segments from the box")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        before = rx.obj.stats.bytes
        assert before < pkg.size and outbox_rows(factory)[pkg.package_id].state == "sending"
        env.pop("APPLIANCE_OUTBOX__RATE_KBIT")
        done = subprocess.run(
            [sys.executable, "-m", "appliance", "outbox", "run", "--until-empty"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        rx.stop()
    _assert_delivered_once(factory, tmp_path / "rx", [pkg])
    # resumed, not restarted: at most the in-flight window was sent twice
    assert rx.obj.stats.bytes <= pkg.size + 4 * 256 * 1024


def test_receiver_away_then_back_pauses_without_failing(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    # a receiver that went away cleanly leaves its retained state "offline"
    cfg = receiver_config(tmp_path / "rx", pki, broker.port, name="receiver-2", verify=False)
    first = Running(Receiver(cfg))
    wait_for(first.obj.link.connected.is_set, 10, "receiver connected")
    first.stop()
    # receiver-1 may hold a retained "online" from other tests on this broker: say it is offline too
    from appliance.outbox import protocol
    from appliance.outbox.mqtt import Link, LinkConfig

    r1 = pki.clients["receiver-1"]
    link = Link(LinkConfig("127.0.0.1", broker.port, "receiver-1", pki.ca.cert, r1.cert, r1.key, session_expiry_s=0))
    link.start()
    assert link.wait_connected(10)
    link.publish("province/receivers/receiver-1/state", protocol.receiver_state_payload("offline", "x"), retain=True)
    wait_for(lambda: (ev := link.next_event(0.1)) is not None and ev.kind == "puback", 10, "puback")
    link.stop()

    pkg = raw_package(tmp_path, 400_000, 4)
    settings = box_settings(tmp_path / "box", pki, broker.port)
    factory = queue_packages(settings, [pkg])
    sender = Sender(settings, factory)
    box = Running(sender, until_empty=True)
    try:
        wait_for(lambda: sender.paused() == "receiver offline", 10, "the box to see the receiver offline")
        row = outbox_rows(factory)[pkg.package_id]
        assert row.state in ("queued", "sending") and row.attempts == 0 and row.bytes_acked == 0  # paused
        rx = Running(Receiver(cfg))
        box.thread.join(60)
        rx.stop()
    finally:
        box.stop()
    _assert_delivered_once(factory, tmp_path / "rx", [pkg])
    assert outbox_rows(factory)[pkg.package_id].attempts == 0


def test_corrupted_segment_is_detected_and_sent_again(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    pkg = raw_package(tmp_path, 800_000, 5)
    settings = box_settings(tmp_path / "box", pki, broker.port)
    factory = queue_packages(settings, [pkg])
    flipped: list[int] = []

    def tamper(offset: int, data: bytes) -> bytes:
        if offset == 262_144 and not flipped:
            flipped.append(offset)
            return data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
        return data

    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    try:
        sender = Sender(settings, factory, tamper=tamper)
        sender.run(until_empty=True)
    finally:
        rx.stop()
    assert flipped == [262_144] and rx.obj.stats.corrupt == 1
    assert sender.stats.resent_bytes == 262_144  # exactly the one segment again
    _assert_delivered_once(factory, tmp_path / "rx", [pkg])


def test_package_failing_verification_is_rejected_with_reason_once(
    broker: Broker, pki: Pki, shared_token: SoftToken, tmp_path: Path
) -> None:
    good = build_packages(tmp_path / "pkgs", shared_token, [20_000], first_seed=200)[0]
    bad_path = tmp_path / "bad.asice"
    with zipfile.ZipFile(good.path) as src, zipfile.ZipFile(bad_path, "w") as dst:
        for item in src.infolist():
            blob = src.read(item)
            if item.filename.endswith(".pdf"):
                blob = blob[:300] + bytes([blob[300] ^ 1]) + blob[301:]
            dst.writestr(item, blob)
    bad = Pkg(bad_path, good.package_id, bad_path.stat().st_size)  # same manifest, altered document
    settings = box_settings(tmp_path / "box", pki, broker.port)
    factory = queue_packages(settings, [bad])
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, trust=(shared_token.ca.pem,))))
    try:
        Sender(settings, factory).run(until_empty=True)  # returns: a rejected package is not retried
    finally:
        rx.stop()
    row = outbox_rows(factory)[bad.package_id]
    assert row.state == "rejected" and row.reason is not None and "wrong_hash" in row.reason
    assert row.attempts == 0 and rx.obj.stats.rejected == 1
    assert catalogue_rows(tmp_path / "rx") == []
    status = subprocess.run(
        [sys.executable, "-m", "appliance", "outbox", "status"],
        cwd=ROOT, env=box_env(tmp_path / "box", pki, broker.port), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "rejected" in status.stdout and "wrong_hash" in status.stdout


def test_publishing_under_another_devices_topic_is_denied_and_reported(
    broker: Broker, pki: Pki, tmp_path: Path
) -> None:
    pkg = raw_package(tmp_path, 30_000, 6)
    # box-001's certificate, but configured as box-002: every publish lands under devices/box-002/...
    settings = box_settings(tmp_path / "box", pki, broker.port, device="box-002")
    settings.outbox.cert_file = pki.clients["box-001"].cert
    settings.outbox.key_file = pki.clients["box-001"].key
    factory = queue_packages(settings, [pkg])
    rx = Running(Receiver(receiver_config(tmp_path / "rx", pki, broker.port, verify=False)))
    sender = Sender(settings, factory)
    box = Running(sender)
    try:
        wait_for(lambda: (outbox_rows(factory)[pkg.package_id].reason or "").startswith("broker_denied"), 20, "denial")
    finally:
        box.stop()
        rx.stop()
    row = outbox_rows(factory)[pkg.package_id]
    assert row.state == "sending" and row.attempts >= 1 and "Not authorized" in (row.reason or "")
    assert sender.stats.denials >= 1
    assert catalogue_rows(tmp_path / "rx") == [] and rx.obj.stats.segments == 0


def test_receiver_disk_full_then_freed(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    rx_dir = tmp_path / "rx"
    rx_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(rx_dir)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        pkg = raw_package(tmp_path, 2_000_000, 7)
        settings = box_settings(tmp_path / "box", pki, broker.port)
        factory = queue_packages(settings, [pkg])
        cfg = receiver_config(rx_dir, pki, broker.port, verify=False)
        rx = Running(Receiver(cfg))
        box = Running(Sender(settings, factory), until_empty=True)
        try:
            wait_for(lambda: "disk full" in (outbox_rows(factory)[pkg.package_id].reason or ""), 30, "disk full")
            assert rx.obj.stats.disk_full >= 1 and outbox_rows(factory)[pkg.package_id].state == "sending"
            subprocess.run(["mount", "-o", "remount,size=20m", str(rx_dir)], check=True)  # space freed
            box.thread.join(60)
        finally:
            box.stop()
            rx.stop()
        _assert_delivered_once(factory, rx_dir, [pkg])
    finally:
        subprocess.run(["umount", "-l", str(rx_dir)], check=False)


def _receiver_process(pki: Pki, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    c = pki.clients["receiver-1"]
    return subprocess.Popen(
        [sys.executable, "-m", "province", "serve", "--no-verify", "--port", str(port), "--name", "receiver-1",
         "--ca", str(pki.ca.cert), "--cert", str(c.cert), "--key", str(c.key), "--data-dir", str(data_dir),
         "--dashboard-port", "0", "--no-telemetry"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_receiver_killed_and_restarted_resumes_when_it_announces_online(
    fresh_broker: Broker, pki: Pki, tmp_path: Path
) -> None:
    """kill -9 of the only receiver mid-transfer: the segments in flight to it are never answered. The box
    waits without counting an attempt and, once the restarted receiver says "online", asks where to resume
    (init) at once: well inside the 30 s response timeout it would otherwise sit out."""
    import time

    from tests.integration.test_receiver import Monitor

    timeout = 30.0
    pkg = raw_package(tmp_path, 4_000_000, 9)
    settings = box_settings(tmp_path / "box", pki, fresh_broker.port, rate_kbit=8000, response_timeout_s=timeout)
    factory = queue_packages(settings, [pkg])
    states = Monitor(fresh_broker, pki, ("province/receivers/+/state",))
    sender = Sender(settings, factory)
    rx = _receiver_process(pki, fresh_broker.port, tmp_path / "rx")
    box = None
    try:
        wait_for(lambda: b'"online"' in b"".join(p for _t, p in list(states.messages)), 30, "receiver online")
        box = Running(sender, until_empty=True)
        wait_for(lambda: sender.stats.segments >= 3, 30, "the first segments")
        rx.send_signal(signal.SIGKILL)  # its will says "offline"; what it had in flight is gone
        rx.wait(10)
        wait_for(lambda: sender.paused() == "receiver offline", 10, "the box to see the receiver offline")
        inits_before = sender.stats.inits
        time.sleep(1.0)
        rx = _receiver_process(pki, fresh_broker.port, tmp_path / "rx")
        restarted = time.monotonic()
        box.thread.join(timeout)
        took = time.monotonic() - restarted
        assert not box.thread.is_alive(), "the transfer did not finish after the receiver came back"
    finally:
        if box is not None:
            box.stop()
        rx.send_signal(signal.SIGTERM)
        rx.wait(10)
        states.close()
    # resumed on the announcement, not on the timeout: an init right after "online", no failed attempt
    assert took < timeout / 2, f"took {took:.1f} s after the receiver restarted"
    assert sender.stats.inits > inits_before
    row = outbox_rows(factory)[pkg.package_id]
    assert row.state == "receipted" and row.attempts == 0, (row.state, row.attempts, row.reason)
    _assert_delivered_once(factory, tmp_path / "rx", [pkg])
    # the bytes published are counted and kept for the health publisher
    from appliance.outbox import traffic

    kept = traffic.read(traffic.path_for(settings.data_dir))
    assert kept is not None and kept.payload_bytes == sender.stats.payload_bytes >= pkg.size
    assert kept.wire_bytes > kept.payload_bytes and kept.resent_bytes == sender.stats.resent_bytes
