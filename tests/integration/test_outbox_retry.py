# ruff: noqa: F811 - pytest fixtures imported from tests.mqtt
"""`appliance outbox retry ID` after a rejection (docs/protocol.md, "Rejected packages and retry").

A corrected package normally has a new package id (the id is a hash over the documents' digests): it is
queued with `outbox add` and the rejected row stays as the record. `retry` re-sends the file at the row's
path as it is now; the warehouse verifies it afresh (rejections are logged, never catalogued)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.outbox.sender import Sender
from province import catalogue
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
    outbox_rows,
    pki,
    queue_packages,
    receiver_config,
)
from tests.softhsm import SoftToken

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _tampered(good: Pkg, dest: Path) -> Pkg:
    """The same manifest (so the same package id) around an altered document: fails verification."""
    with zipfile.ZipFile(good.path) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.infolist():
            blob = src.read(item)
            if item.filename.endswith(".pdf"):
                blob = blob[:300] + bytes([blob[300] ^ 1]) + blob[301:]
            dst.writestr(item, blob)
    return Pkg(dest, good.package_id, dest.stat().st_size)


def _appliance(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "outbox", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_retry_resends_and_reverifies_and_a_corrected_package_is_a_new_row(
    broker: Broker, pki: Pki, shared_token: SoftToken, tmp_path: Path
) -> None:
    good, corrected = build_packages(tmp_path / "pkgs", shared_token, [20_000, 21_000], first_seed=400)
    bad = _tampered(good, tmp_path / "outgoing.asice")
    settings = box_settings(tmp_path / "box", pki, broker.port)
    env = box_env(tmp_path / "box", pki, broker.port)
    factory = queue_packages(settings, [bad])
    rx_dir = tmp_path / "rx"
    rx = Running(Receiver(receiver_config(rx_dir, pki, broker.port, trust=(shared_token.ca.pem,))))
    try:
        Sender(settings, factory).run(until_empty=True)
        first = outbox_rows(factory)[bad.package_id]
        assert first.state == "rejected" and "wrong_hash" in (first.reason or "")

        # 1. retry without correcting anything: sent again, verified again, rejected again
        done = _appliance("retry", str(first.id), env=env)
        assert done.returncode == 0 and f"#{first.id} queued again" in done.stdout, done.stderr
        assert outbox_rows(factory)[bad.package_id].state == "queued"
        Sender(settings, factory).run(until_empty=True)
        assert outbox_rows(factory)[bad.package_id].state == "rejected"
        assert rx.obj.stats.rejected == 2 and rx.obj.stats.accepted == 0

        # 2. the usual correction: a new package (new id) is queued; the rejected row stays as the record
        assert corrected.package_id != bad.package_id
        added = _appliance("add", str(corrected.path), env=env)
        assert added.returncode == 0, added.stderr
        Sender(settings, factory).run(until_empty=True)
        rows = outbox_rows(factory)
        assert rows[corrected.package_id].state == "receipted"
        assert rows[bad.package_id].state == "rejected" and rows[bad.package_id].reason

        # 3. the file at the row's path replaced by a valid package with the same id, then retry:
        #    re-sent (the new size and SHA-256 are taken), verified afresh, accepted
        shutil.copyfile(good.path, bad.path)
        done = _appliance("retry", str(first.id), env=env)
        assert done.returncode == 0, done.stderr
        retried = outbox_rows(factory)[bad.package_id]
        assert (retried.state, retried.size, retried.attempts, retried.reason) == ("queued", good.size, 0, None)
        Sender(settings, factory).run(until_empty=True)
    finally:
        rx.stop()
    rows = outbox_rows(factory)
    assert rows[bad.package_id].state == "receipted" and rows[bad.package_id].warehouse_id
    assert rx.obj.stats.rejected == 2 and rx.obj.stats.accepted == 2
    stored = sorted(r.package_id for r in catalogue_rows(rx_dir))
    assert stored == sorted([good.package_id, corrected.package_id])  # each once
    factory_rx = catalogue.open_catalogue(f"sqlite:///{rx_dir / 'catalogue.db'}")
    with factory_rx() as s:
        rejections = catalogue.list_rejections(s)
    assert [j.package_id for j in rejections] == [bad.package_id, bad.package_id]  # the record of both

    # retry is only for rejected rows
    again = _appliance("retry", str(first.id), env=env)
    assert again.returncode != 0 and "receipted" in again.stderr
