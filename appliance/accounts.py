"""Officers' accounts and their life: created, password reset (to be changed at the next sign-in), own
password changed, deactivated and reactivated, unlocked after a lockout, role and CCCD changed.

The web UI (supervisor's account page, the officer's own password page) and the CLI (`appliance user`) only
parse and call these functions; each is one change, made in the caller's transaction together with its
audit event (who did it, to which account, what changed; never a password). The tables live here too:
the account, its browser sessions (ended on deactivation and password reset) and its recent wrong
passwords (the sign-in lockout, :class:`appliance.web.auth.LoginThrottle`). Their names keep the
``web_`` prefix of the first schema.

At least one active supervisor always remains: a change that would leave none is refused
(:class:`~appliance.errors.LastSupervisor`), so the account page can never lock everyone out of itself.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from appliance import audit, domain
from appliance.db import Base, utcnow
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
from appliance.workflow import Actor

MIN_PASSWORD = 10  # characters, for every password an officer chooses
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
TEMPORARY_CHARS = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or copied by hand

CLI = Actor("cli", "Dòng lệnh trên thiết bị")  # who acts when `appliance user` is run at the box

ACTIONS = (
    "account_create",
    "password_reset",
    "password_change",
    "account_deactivate",
    "account_reactivate",
    "account_unlock",
    "account_role",
    "account_name",
    "account_id_number",
)


class Role(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"


ROLE_LABELS = {str(Role.OFFICER): "Cán bộ", str(Role.SUPERVISOR): "Lãnh đạo"}


# --- tables -------------------------------------------------------------------------------------
class User(Base):
    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.OFFICER)
    password_hash: Mapped[str] = mapped_column(String(200))
    id_number: Mapped[str | None] = mapped_column(String(32))  # CCCD, matched against the certificate
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change: Mapped[bool] = mapped_column(Boolean, default=False)  # a temporary password: change it first
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoginFailure(Base):
    """One wrong password, keyed "u:<username>" or "c:<client address>" (kept across restarts)."""

    __tablename__ = "web_login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def failure_key(username: str) -> str:
    """The key under which an account's wrong passwords are counted."""
    return "u:" + username


# --- passwords ----------------------------------------------------------------------------------
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not-a-real-password")  # verified for unknown names: same timing


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def temporary_password() -> str:
    """Twelve random characters in three groups (``abcd-efgh-jkmn``), easy to read out to the officer."""
    chars = "".join(secrets.choice(TEMPORARY_CHARS) for _ in range(12))
    return "-".join(chars[i : i + 4] for i in range(0, 12, 4))


def valid_username(name: str) -> bool:
    return 2 <= len(name) <= 64 and set(name) <= USERNAME_CHARS


def normal_username(name: str) -> str:
    return name.strip().lower()


# --- what the supervisor sees ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Account:
    username: str
    full_name: str
    role: str
    active: bool
    must_change: bool
    id_number: str | None
    locked: bool  # too many wrong passwords lately: sign-in refused until unlocked or the lockout ends
    created_at: datetime

    @property
    def supervisor(self) -> bool:
        return self.role == Role.SUPERVISOR

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


def listing(session: Session, *, max_failures: int, since: datetime) -> list[Account]:
    """Every account by user name, with whether it is locked now (``max_failures`` wrong passwords since
    ``since``, the lockout's window)."""
    counted = (
        select(LoginFailure.key, func.count())
        .where(LoginFailure.key.like("u:%"), LoginFailure.at >= since)
        .group_by(LoginFailure.key)
    )
    failures = {key: int(n) for key, n in session.execute(counted)}
    return [
        Account(
            u.username,
            u.full_name,
            u.role,
            u.active,
            u.must_change,
            u.id_number,
            failures.get(failure_key(u.username), 0) >= max_failures,
            u.created_at,
        )
        for u in session.scalars(select(User).order_by(User.username))
    ]


def find(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == normal_username(username)))


def _get(session: Session, username: str) -> User:
    user = find(session, username=username)
    if user is None:
        raise AccountNotFound(f"no account {username!r}")
    return user


def _record(session: Session, actor: Actor, action: str, user: User, **detail: object) -> None:
    audit.record(session, actor=actor.username, action=action, detail={"account": user.username, **detail})


def _end_sessions(session: Session, user: User, *, keep: str | None = None) -> None:
    query = delete(WebSession).where(WebSession.user_id == user.id)
    if keep is not None:
        query = query.where(WebSession.id != keep)
    session.execute(query)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PasswordTooShort(f"a password needs {MIN_PASSWORD} characters")


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidRole(f"no role {role!r}") from None


def _id_number(text: str | None) -> str | None:
    """A CCCD of 12 digits (None for an empty field); an old 9-digit CMND is refused."""
    if not (text or "").strip():
        return None
    check = domain.check_personal_id(text or "")
    if not check.ok or len(check.value) != 12:
        raise InvalidPersonalId("an officer's CCCD has 12 digits")
    return check.value


def _keep_a_supervisor(session: Session) -> None:
    """Called after the change (flushed by the query, in the same transaction): one active supervisor left."""
    left = session.scalar(
        select(func.count()).select_from(User).where(User.role == Role.SUPERVISOR, User.active.is_(True))
    )
    if not left:
        raise LastSupervisor("no active supervisor would be left")


# --- changes --------------------------------------------------------------------------------------
def create(
    session: Session,
    *,
    actor: Actor,
    username: str,
    full_name: str,
    role: str,
    password: str,
    id_number: str | None = None,
    must_change: bool = False,
) -> User:
    """A new account. ``must_change`` when someone else chose the password (the supervisor's form)."""
    name = normal_username(username)
    if not valid_username(name):
        raise InvalidUsername(f"bad user name {username!r}")
    if not full_name.strip():
        raise FullNameMissing("full name missing")
    chosen_role = _role(role)
    _check_password(password)
    pid = _id_number(id_number)
    if find(session, username=name) is not None:
        raise AccountExists(f"account {name!r} exists")
    user = User(
        username=name,
        full_name=full_name.strip(),
        role=chosen_role,
        password_hash=hash_password(password),
        id_number=pid,
        active=True,
        must_change=must_change,
    )
    session.add(user)
    session.flush()
    _record(session, actor, "account_create", user, full_name=user.full_name, role=str(chosen_role), id_number=pid)
    return user


def reset_password(session: Session, *, actor: Actor, username: str) -> str:
    """A new temporary password (returned once, stored only as a hash) that must be changed at the next
    sign-in; the account's sessions end and its lockout is cleared."""
    user = _get(session, username)
    password = temporary_password()
    user.password_hash, user.must_change = hash_password(password), True
    _end_sessions(session, user)
    session.execute(delete(LoginFailure).where(LoginFailure.key == failure_key(user.username)))
    _record(session, actor, "password_reset", user)
    return password


def change_password(session: Session, *, username: str, old: str, new: str, keep_session: str | None = None) -> None:
    """The officer's own change: the current (or temporary) password, then a new one of ``MIN_PASSWORD``
    characters that differs from it. The account's other sessions end (``keep_session``: the stored id of
    the one asking)."""
    user = _get(session, username)
    if not check_password(user.password_hash, old):
        raise PasswordIncorrect("the current password is wrong")
    _check_password(new)
    if new == old:
        raise PasswordUnchanged("the new password is the old one")
    was_temporary = user.must_change
    user.password_hash, user.must_change = hash_password(new), False
    _end_sessions(session, user, keep=keep_session)
    _record(session, Actor(user.username, user.full_name), "password_change", user, after_reset=was_temporary)


def deactivate(session: Session, *, actor: Actor, username: str) -> bool:
    """The account can no longer sign in and its sessions end (False: it was inactive already)."""
    user = _get(session, username)
    if not user.active:
        return False
    user.active = False
    _keep_a_supervisor(session)
    _end_sessions(session, user)
    _record(session, actor, "account_deactivate", user)
    return True


def reactivate(session: Session, *, actor: Actor, username: str) -> bool:
    """The account can sign in again (False: it was active already)."""
    user = _get(session, username)
    if user.active:
        return False
    user.active = True
    _record(session, actor, "account_reactivate", user)
    return True


def unlock(session: Session, *, actor: Actor, username: str) -> int:
    """Forget the account's recent wrong passwords, so it can sign in at once; how many there were."""
    user = _get(session, username)
    key = failure_key(user.username)
    count = int(session.scalar(select(func.count()).select_from(LoginFailure).where(LoginFailure.key == key)) or 0)
    session.execute(delete(LoginFailure).where(LoginFailure.key == key))
    _record(session, actor, "account_unlock", user, failures=count)
    return count


def change_role(session: Session, *, actor: Actor, username: str, role: str) -> bool:
    """Officer <-> supervisor; takes effect on the account's next request (False: no change)."""
    user = _get(session, username)
    new = _role(role)
    old = user.role
    if old == new:
        return False
    user.role = str(new)
    if old == Role.SUPERVISOR:
        _keep_a_supervisor(session)
    _record(session, actor, "account_role", user, old=old, new=str(new))
    return True


def set_full_name(session: Session, *, actor: Actor, username: str, full_name: str) -> bool:
    """The name shown on the account and compared with the signing certificate (False: no change)."""
    user = _get(session, username)
    name = full_name.strip()
    if not name:
        raise FullNameMissing("full name missing")
    if name == user.full_name:
        return False
    old, user.full_name = user.full_name, name[:200]
    _record(session, actor, "account_name", user, old=old, new=user.full_name)
    return True


def set_id_number(session: Session, *, actor: Actor, username: str, id_number: str | None) -> bool:
    """The officer's CCCD (12 digits; empty removes it), compared with the signing certificate."""
    user = _get(session, username)
    pid = _id_number(id_number)
    if pid == user.id_number:
        return False
    old, user.id_number = user.id_number, pid
    _record(session, actor, "account_id_number", user, old=old, new=pid)
    return True
