"""The account lifecycle in the core (appliance.accounts), against a real SQLite file: each change, each
refusal, and the audit event each change leaves (never a password)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.orm import Session, sessionmaker

from appliance import accounts, audit, db
from appliance.accounts import LoginFailure, Role, User, WebSession
from appliance.errors import (
    AccountExists,
    AccountNotFound,
    FullNameMissing,
    InvalidPersonalId,
    InvalidRole,
    InvalidUsername,
    LastSupervisor,
    PasswordIncorrect,
    PasswordTooShort,
    PasswordUnchanged,
)
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.records import AuditEvent
from appliance.workflow import Actor

BOSS = Actor("lanhdao", "Trần Văn B")
PW = "mat-khau-can-bo-1"
CCCD = "001190012345"


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'box.db'}")
    db.upgrade(engine)
    factory = db.session_factory(engine)
    with db.transaction(factory) as session:
        accounts.create(
            session, actor=accounts.CLI, username="lanhdao", full_name="Trần Văn B", role="supervisor", password=PW
        )
        accounts.create(session, actor=BOSS, username="canbo", full_name="Nguyễn Thị Ánh", role="officer", password=PW)
    yield factory
    engine.dispose()


def _events(factory: sessionmaker[Session], action: str) -> list[audit.Entry]:
    with factory() as session:
        return [e for e in audit.for_actions(session, actions=accounts.ACTIONS) if e.action == action]


def _user(factory: sessionmaker[Session], name: str = "canbo") -> User:
    with factory() as session:
        user = accounts.find(session, username=name)
        assert user is not None
        return user


def _sessions(factory: sessionmaker[Session], name: str = "canbo") -> int:
    with factory() as session:
        return int(
            session.scalar(sa.select(sa.func.count()).select_from(WebSession).join(User).where(User.username == name))
            or 0
        )


def _sign_in(factory: sessionmaker[Session], name: str = "canbo") -> None:
    with db.transaction(factory) as session:
        user = accounts.find(session, username=name)
        assert user is not None
        session.add(WebSession(id=secrets.token_hex(32), user_id=user.id, csrf="c"))


def test_create_records_who_made_which_account(factory: sessionmaker[Session]) -> None:
    user = _user(factory)
    assert (user.role, user.active, user.must_change, user.id_number) == ("officer", True, False, None)
    assert accounts.check_password(user.password_hash, PW)
    created = _events(factory, "account_create")
    assert [(e.actor, e.detail["account"], e.detail["role"]) for e in reversed(created)] == [
        ("cli", "lanhdao", "supervisor"),
        ("lanhdao", "canbo", "officer"),
    ]
    assert created[0].label == "Tạo tài khoản" and created[0].dossier_code is None


def test_create_refusals(factory: sessionmaker[Session]) -> None:
    cases: list[tuple[dict[str, str], type[Exception]]] = [
        ({"username": "Cán Bộ"}, InvalidUsername),
        ({"username": "x"}, InvalidUsername),
        ({"full_name": "  "}, FullNameMissing),
        ({"role": "admin"}, InvalidRole),
        ({"password": "a" * (accounts.MIN_PASSWORD - 1)}, PasswordTooShort),
        ({"id_number": "12345"}, InvalidPersonalId),
        ({"id_number": "123456789"}, InvalidPersonalId),  # an old 9-digit CMND is not a CCCD
        ({"username": "CANBO"}, AccountExists),  # names are folded to lower case
    ]
    for change, error in cases:
        fields = {"username": "moi", "full_name": "Lê Văn C", "role": "officer", "password": PW} | change
        with pytest.raises(error), db.transaction(factory) as session:
            accounts.create(session, actor=BOSS, **fields)
    with factory() as session:
        assert accounts.find(session, username="moi") is None
    with db.transaction(factory) as session:
        made = accounts.create(
            session,
            actor=BOSS,
            username=" Moi ",
            full_name="Lê Văn C",
            role="officer",
            password=PW,
            id_number="001 190 012 345",
            must_change=True,
        )
        assert (made.username, made.id_number, made.must_change) == ("moi", CCCD, True)


def test_every_refusal_has_a_vietnamese_sentence() -> None:
    for error in (AccountExists, AccountNotFound, FullNameMissing, InvalidRole, InvalidUsername, LastSupervisor):
        assert message_for(error()) == MESSAGES_VI[error.code] != MESSAGES_VI["unknown"]
    for error in (PasswordIncorrect, PasswordTooShort, PasswordUnchanged):
        assert "Mật khẩu" in message_for(error())
    assert str(accounts.MIN_PASSWORD) in MESSAGES_VI["password_too_short"]


def test_reset_password_gives_a_temporary_password_to_change(factory: sessionmaker[Session]) -> None:
    _sign_in(factory)
    with db.transaction(factory) as session:
        session.add_all([LoginFailure(key=accounts.failure_key("canbo")) for _ in range(5)])
    with db.transaction(factory) as session:
        temporary = accounts.reset_password(session, actor=BOSS, username="canbo")
    assert len(temporary) >= accounts.MIN_PASSWORD and temporary.count("-") == 2
    user = _user(factory)
    assert user.must_change and accounts.check_password(user.password_hash, temporary)
    assert not accounts.check_password(user.password_hash, PW)
    assert _sessions(factory) == 0  # signed out everywhere
    with factory() as session:
        listed = {a.username: a for a in accounts.listing(session, max_failures=5, since=db.utcnow() - timedelta(1))}
    assert not listed["canbo"].locked and listed["canbo"].must_change  # the lockout went with the old password
    (event,) = _events(factory, "password_reset")
    assert (event.actor, event.detail) == ("lanhdao", {"account": "canbo"})
    with factory() as session:
        stored = json.dumps([r.detail for r in session.scalars(sa.select(AuditEvent))], ensure_ascii=False)
    assert temporary not in stored and PW not in stored and "hash" not in stored
    with pytest.raises(AccountNotFound), db.transaction(factory) as session:
        accounts.reset_password(session, actor=BOSS, username="khongco")


def test_change_password_checks_the_old_one_and_clears_the_flag(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as session:
        temporary = accounts.reset_password(session, actor=BOSS, username="canbo")
    refusals: list[tuple[str, str, type[Exception]]] = [
        (PW, "mat-khau-moi-12345", PasswordIncorrect),  # the old password no longer counts
        (temporary, "ngan", PasswordTooShort),
        (temporary, temporary, PasswordUnchanged),
    ]
    for old, new, error in refusals:
        with pytest.raises(error), db.transaction(factory) as session:
            accounts.change_password(session, username="canbo", old=old, new=new)
    assert _user(factory).must_change
    _sign_in(factory)
    _sign_in(factory)
    with factory() as session:
        keep = session.scalars(sa.select(WebSession.id)).first()
    with db.transaction(factory) as session:
        accounts.change_password(session, username="canbo", old=temporary, new="mat-khau-moi-12345", keep_session=keep)
    user = _user(factory)
    assert not user.must_change and accounts.check_password(user.password_hash, "mat-khau-moi-12345")
    assert _sessions(factory) == 1  # the one asking stays signed in, the others end
    (event,) = _events(factory, "password_change")
    assert (event.actor, event.detail) == ("canbo", {"account": "canbo", "after_reset": True})


def test_deactivate_ends_sessions_and_reactivate(factory: sessionmaker[Session]) -> None:
    _sign_in(factory)
    with db.transaction(factory) as session:
        assert accounts.deactivate(session, actor=BOSS, username="canbo")
    assert not _user(factory).active and _sessions(factory) == 0
    with db.transaction(factory) as session:
        assert not accounts.deactivate(session, actor=BOSS, username="canbo")  # nothing to do, nothing recorded
        assert accounts.reactivate(session, actor=BOSS, username="canbo")
        assert not accounts.reactivate(session, actor=BOSS, username="canbo")
    assert _user(factory).active
    assert len(_events(factory, "account_deactivate")) == len(_events(factory, "account_reactivate")) == 1


def test_the_last_active_supervisor_stays(factory: sessionmaker[Session]) -> None:
    for change in (
        lambda s: accounts.deactivate(s, actor=BOSS, username="lanhdao"),
        lambda s: accounts.change_role(s, actor=BOSS, username="lanhdao", role="officer"),
    ):
        with pytest.raises(LastSupervisor), db.transaction(factory) as session:
            change(session)
        boss = _user(factory, "lanhdao")
        assert boss.active and boss.role == Role.SUPERVISOR  # rolled back
    assert "không còn lãnh đạo" in message_for(LastSupervisor())
    with db.transaction(factory) as session:  # a second supervisor: now the first may step down
        assert accounts.change_role(session, actor=BOSS, username="canbo", role="supervisor")
        assert accounts.change_role(session, actor=BOSS, username="lanhdao", role="officer")
    with pytest.raises(LastSupervisor), db.transaction(factory) as session:
        accounts.deactivate(session, actor=BOSS, username="canbo")
    with db.transaction(factory) as session:  # an inactive supervisor does not count
        assert accounts.change_role(session, actor=BOSS, username="lanhdao", role="supervisor")
        assert accounts.deactivate(session, actor=BOSS, username="lanhdao")
    with pytest.raises(LastSupervisor), db.transaction(factory) as session:
        accounts.change_role(session, actor=BOSS, username="canbo", role="officer")


def test_unlock_clears_the_account_failures_only(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as session:
        session.add_all([LoginFailure(key=accounts.failure_key("canbo")) for _ in range(5)])
        session.add_all([LoginFailure(key="c:10.0.0.9"), LoginFailure(key=accounts.failure_key("lanhdao"))])
    since = db.utcnow() - timedelta(minutes=15)
    with factory() as session:
        assert [a.locked for a in accounts.listing(session, max_failures=5, since=since)] == [True, False]
    with db.transaction(factory) as session:
        assert accounts.unlock(session, actor=BOSS, username="canbo") == 5
    with factory() as session:
        assert not any(a.locked for a in accounts.listing(session, max_failures=5, since=since))
        assert session.scalar(sa.select(sa.func.count()).select_from(LoginFailure)) == 2
    (event,) = _events(factory, "account_unlock")
    assert event.detail == {"account": "canbo", "failures": 5}


def test_role_name_and_id_number_changes_keep_old_and_new(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as session:
        assert accounts.change_role(session, actor=BOSS, username="canbo", role="supervisor")
        assert not accounts.change_role(session, actor=BOSS, username="canbo", role="supervisor")
        assert accounts.set_id_number(session, actor=BOSS, username="canbo", id_number=CCCD)
        assert not accounts.set_id_number(session, actor=BOSS, username="canbo", id_number=CCCD)
        assert accounts.set_full_name(session, actor=BOSS, username="canbo", full_name="Nguyễn Thị Ánh Hồng")
    with pytest.raises(InvalidRole), db.transaction(factory) as session:
        accounts.change_role(session, actor=BOSS, username="canbo", role="root")
    with pytest.raises(InvalidPersonalId), db.transaction(factory) as session:
        accounts.set_id_number(session, actor=BOSS, username="canbo", id_number="0011900123")
    user = _user(factory)
    assert (user.role, user.id_number, user.full_name) == ("supervisor", CCCD, "Nguyễn Thị Ánh Hồng")
    (role,) = _events(factory, "account_role")
    assert role.detail == {"account": "canbo", "old": "officer", "new": "supervisor"}
    (pid,) = _events(factory, "account_id_number")
    assert pid.detail == {"account": "canbo", "old": None, "new": CCCD} and pid.label == "Sửa số CCCD"
    with db.transaction(factory) as session:  # an empty field removes it
        assert accounts.set_id_number(session, actor=BOSS, username="canbo", id_number=" ")
    assert _user(factory).id_number is None


def test_the_migration_keeps_existing_passwords(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007_workflow")
        conn.execute(
            sa.text(
                "INSERT INTO web_users (username, full_name, role, password_hash, active, created_at) "
                "VALUES ('cu', 'Cũ', 'officer', :h, 1, CURRENT_TIMESTAMP)"
            ),
            {"h": accounts.hash_password(PW)},
        )
    db.upgrade(engine)
    with db.transaction(db.session_factory(engine)) as session:
        old = accounts.find(session, username="cu")
        assert old is not None and old.must_change is False
        accounts.reset_password(session, actor=BOSS, username="cu")
    engine.dispose()
