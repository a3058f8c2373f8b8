"""The outbox queue in a real SQLite database: the contract the web UI relies on."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from appliance import db
from appliance.errors import OutboxError
from appliance.outbox import store
from appliance.outbox.store import OutboxItem, PackageState


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    return db.session_factory(engine)


def _pkg(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_enqueue_is_idempotent_and_records_size_and_hash(factory: sessionmaker[Session], tmp_path: Path) -> None:
    data = b"x" * 3000
    path = _pkg(tmp_path, "a.asice", data)
    with db.transaction(factory) as s:
        item = store.enqueue(s, path=path, package_id="a" * 64, dossier_code="000.00.19.H12-230412-0007")
        first_id = item.id
    with db.transaction(factory) as s:
        again = store.enqueue(s, path=path, package_id="a" * 64, priority=0)
        assert again.id == first_id and again.priority == 2  # unchanged
        assert again.size == 3000 and again.sha256 == hashlib.sha256(data).hexdigest()
        assert again.state == PackageState.QUEUED and again.attempts == 0 and again.bytes_acked == 0
        assert len(store.list_items(s)) == 1


def test_list_filters_by_state_newest_first_and_depth(factory: sessionmaker[Session], tmp_path: Path) -> None:
    with db.transaction(factory) as s:
        for i in range(4):
            store.enqueue(s, path=_pkg(tmp_path, f"{i}.asice", bytes([i]) * 10), package_id=f"{i}" * 64)
    with db.transaction(factory) as s:
        items = store.list_items(s)
        assert [i.package_id[0] for i in items] == ["3", "2", "1", "0"]
        items[0].state = PackageState.RECEIPTED
        items[1].state = PackageState.REJECTED
    with db.transaction(factory) as s:
        assert [i.package_id[0] for i in store.list_items(s, states=["queued"])] == ["1", "0"]
        assert len(store.list_items(s, limit=2)) == 2
        count, oldest = store.depth(s)
        assert count == 2
        zero = s.get(OutboxItem, 1)
        assert zero is not None and oldest is not None and oldest.tzinfo is not None
        assert oldest == store.aware(zero.created_at)


def test_depth_of_empty_queue(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        assert store.depth(s) == (0, None)


def test_retry_only_rejected_and_resets(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = _pkg(tmp_path, "r.asice", b"old")
    with db.transaction(factory) as s:
        item = store.enqueue(s, path=path, package_id="r" * 64)
        with pytest.raises(OutboxError):
            store.retry(s, item_id=item.id)
        item.state, item.reason, item.attempts, item.bytes_acked = PackageState.REJECTED, "untrusted", 3, 3
        item_id = item.id
    path.write_bytes(b"corrected")  # the officer re-signed it
    with db.transaction(factory) as s:
        item = store.retry(s, item_id=item_id)
        assert (item.state, item.reason, item.attempts, item.bytes_acked) == ("queued", None, 0, 0)
        assert item.size == len(b"corrected")
    with pytest.raises(OutboxError), db.transaction(factory) as s:
        store.retry(s, item_id=999)


def test_next_due_orders_by_priority_then_age_and_respects_backoff(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    with db.transaction(factory) as s:
        bulk = store.enqueue(s, path=_pkg(tmp_path, "b", b"b"), package_id="b" * 64, priority=3)
        store.enqueue(s, path=_pkg(tmp_path, "p", b"p"), package_id="p" * 64, priority=2)
        status = store.enqueue(s, path=_pkg(tmp_path, "s", b"s"), package_id="s" * 64, priority=0)
        status.next_try_at = now + dt.timedelta(minutes=5)  # backing off
        bulk_id = bulk.id
    with db.transaction(factory) as s:
        due = store.next_due(s, now=now)
        assert due is not None and due.package_id == "p" * 64
        due.state = PackageState.TRANSFERRED
    with db.transaction(factory) as s:
        due = store.next_due(s, now=now)
        assert due is not None and due.id == bulk_id
        later = store.next_due(s, now=now + dt.timedelta(minutes=6))
        assert later is not None and later.package_id == "s" * 64


def test_purge_archive_after_retention(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = _pkg(tmp_path, "old.asice", b"data")
    now = dt.datetime.now(dt.UTC)
    with db.transaction(factory) as s:
        item = store.enqueue(s, path=path, package_id="o" * 64)
        item.state = PackageState.RECEIPTED
        item.receipted_at = now - dt.timedelta(days=10)
    with db.transaction(factory) as s:
        assert store.purge_archive(s, now=now, retention_days=30) == []
        assert path.exists()
        assert store.purge_archive(s, now=now, retention_days=7) == [str(path)]
    assert not path.exists()
    with db.transaction(factory) as s:
        assert store.list_items(s)[0].archived == 0  # the record stays


def test_sender_factory_upgrades_a_new_database_without_alembic_in_the_sender(tmp_path: Path) -> None:
    """`appliance outbox run` keeps alembic (≈13 MB) out of its process: a child upgrades when needed."""
    import subprocess
    import sys

    code = (
        "import sys; from appliance.settings import load_settings; from appliance.outbox import sender;"
        "from appliance import db; from appliance.outbox import store;"
        "f = sender.open_sender_factory(load_settings(data_dir=sys.argv[1]));"
        "s = f(); print(len(store.list_items(s)), 'alembic' in sys.modules)"
    )
    for _ in range(2):  # a new database (upgraded by the child), then a current one (checked, not upgraded)
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "box")], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["0", "False"]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'box' / 'appliance.db'}")
    from appliance.outbox.sender import migration_heads, schema_is_current

    heads = migration_heads()
    assert schema_is_current(engine) and heads
    with engine.begin() as conn:  # as if the newest migration had not run yet
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0002_outbox'")
    assert not schema_is_current(engine)  # behind the scripts: the sender would upgrade
