"""Who may use the readiness dashboard: provincial IT accounts, browser sessions, CSRF, and who may scrape
`/metrics`.

Accounts and sessions live in the catalogue database next to the telemetry tables (`province_accounts`,
`province_sessions`). Passwords are Argon2id hashes (argon2-cffi, as the box's web UI). Signing in starts a
new server-side session: the cookie carries a random token, the database only its SHA-256, the session's
CSRF token and the time of the last request (idle timeout). Every POST must carry the session's CSRF token
in the form, and a cross-site `Origin` is refused outright. Wrong passwords are counted per account and per
client address in memory; past the limit that account (or client) is refused for `lockout_s`, whatever
password is typed.

`/metrics` answers a request with `Authorization: Bearer <token>` when a token is configured, otherwise
only clients on the loopback interface (a reverse proxy in front must set X-Forwarded-For, which uvicorn
honours from 127.0.0.1, or not forward `/metrics` at all).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Boolean, DateTime, Engine, ForeignKey, String, delete, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from appliance.db import utcnow
from province import catalogue

log = logging.getLogger(__name__)

COOKIE = "province_session"
LOGIN_COOKIE = "province_login"  # the sign-in form's own CSRF token (double submit), before any session
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
DEV_ACCOUNT = "it-dev"

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not-a-real-password")  # verified for unknown names: the same timing


class AccountBase(DeclarativeBase):
    pass


class Account(AccountBase):
    __tablename__ = "province_accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    role: Mapped[str | None] = mapped_column(String(16))  # "operator" | "viewer"; None (older rows): operator


class DashboardSession(AccountBase):
    __tablename__ = "province_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the cookie's token
    username: Mapped[str] = mapped_column(ForeignKey("province_accounts.username", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AccountError(ValueError):
    """An account that cannot be created or changed (bad name, too short a password, unknown)."""


def create_tables(engine: Engine) -> None:
    catalogue.create_tables(engine, AccountBase.metadata)


def _ready(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The factory, with the account tables created if this database has none yet."""
    create_tables(factory.kw["bind"])
    return factory


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: object, expected: str) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- accounts -----------------------------------------------------------------------------------
OPERATOR, VIEWER = "operator", "viewer"
ROLES = (OPERATOR, VIEWER)  # a viewer reads every page; only an operator marks incidents handled


def set_account(
    factory: sessionmaker[Session], *, username: str, full_name: str, password: str, role: str | None = None
) -> None:
    """Create the account, or give an existing one this name and password and enable it again (its open
    sessions end). ``role``: operator (the default for a new account) or viewer; None keeps an existing one."""
    if role is not None and role not in ROLES:
        raise AccountError(f"role: one of {', '.join(ROLES)}")
    if not 2 <= len(username) <= 64 or not set(username) <= USERNAME_CHARS:
        raise AccountError("username: 2-64 characters among a-z 0-9 . _ -")
    if len(password) < 10:
        raise AccountError("password: at least 10 characters")
    with _ready(factory)() as s, s.begin():
        acc = s.get(Account, username)
        if acc is None:
            s.add(
                Account(
                    username=username,
                    full_name=full_name or username,
                    password_hash=hash_password(password),
                    role=role or OPERATOR,
                )
            )
        else:
            acc.full_name = full_name or acc.full_name
            acc.role = role or acc.role
            acc.password_hash, acc.active = hash_password(password), True
            s.execute(delete(DashboardSession).where(DashboardSession.username == username))


def disable_account(factory: sessionmaker[Session], username: str) -> None:
    with _ready(factory)() as s, s.begin():
        acc = s.get(Account, username)
        if acc is None:
            raise AccountError(f"no account {username!r}")
        acc.active = False
        s.execute(delete(DashboardSession).where(DashboardSession.username == username))


def list_accounts(factory: sessionmaker[Session]) -> list[tuple[str, str, bool]]:
    with _ready(factory)() as s:
        return [(a.username, a.full_name, a.active) for a in s.scalars(select(Account).order_by(Account.username))]


def dev_account(factory: sessionmaker[Session]) -> tuple[str, str]:
    """(Re)create the development account with a new random password: (username, password)."""
    password = secrets.token_urlsafe(12)
    set_account(factory, username=DEV_ACCOUNT, full_name="IT tỉnh (thử)", password=password)
    return DEV_ACCOUNT, password


# --- sessions -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignedIn:
    username: str
    full_name: str
    csrf: str
    role: str = OPERATOR

    @property
    def operator(self) -> bool:
        return self.role == OPERATOR


class Throttle:
    """Wrong passwords in the last `window_s`, per account and per client address (in memory: a restart
    forgets them, which only ever lets a locked account try again sooner)."""

    def __init__(self, *, per_account: int = 5, per_client: int = 20, window_s: float = 900.0) -> None:
        self.per_account, self.per_client, self.window_s = per_account, per_client, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> int:
        q = self._failures.get(key)
        while q and now - q[0] > self.window_s:
            q.popleft()
        return len(q or ())

    def locked(self, username: str, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return (
                self._recent("u:" + username, now) >= self.per_account
                or self._recent("c:" + client, now) >= self.per_client
            )

    def reserve(self, username: str, client: str) -> float | None:
        """Count this attempt as a failure before the password is checked, atomically with the lockout
        check (parallel wrong passwords cannot outrun it): None when locked, else a stamp that
        :meth:`succeeded` gives back."""
        now = time.monotonic()
        with self._lock:
            if (
                self._recent("u:" + username, now) >= self.per_account
                or self._recent("c:" + client, now) >= self.per_client
            ):
                return None
            for key in ("u:" + username, "c:" + client):
                self._failures.setdefault(key, deque()).append(now)
            return now

    def failed(self, username: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in ("u:" + username, "c:" + client):
                self._failures.setdefault(key, deque()).append(now)
                self._recent(key, now)

    def succeeded(self, username: str, client: str | None = None, stamp: float | None = None) -> None:
        with self._lock:
            self._failures.pop("u:" + username, None)
            q = self._failures.get("c:" + client) if client is not None else None
            if q is not None and stamp is not None and stamp in q:
                q.remove(stamp)


@dataclass
class Gate:
    """The dashboard's sign-in, sessions and `/metrics` access, built once by `create_app`."""

    factory: sessionmaker[Session]
    idle: timedelta = timedelta(hours=1)
    metrics_token: str | None = None
    throttle: Throttle = field(default_factory=Throttle)

    def sign_in(self, username: str, password: str, client: str) -> str | None:
        """A new session's cookie token for the right password, else None (also while locked out)."""
        name = username.strip().lower()
        stamp = self.throttle.reserve(name, client)
        if stamp is None:
            check_password(None, password)  # the same work as a real attempt
            log.warning("sign-in refused while locked out: client=%s", client)
            return None
        with self.factory() as s, s.begin():
            acc = s.get(Account, name)
            ok = check_password(acc.password_hash if acc else None, password)
            if acc is None or not ok or not acc.active:
                log.warning("failed dashboard sign-in from client=%s", client)  # the reservation stays
                return None
            token = secrets.token_urlsafe(32)
            s.add(DashboardSession(id=token_hash(token), username=name, csrf=secrets.token_urlsafe(32)))
        self.throttle.succeeded(name, client, stamp)
        log.info("dashboard sign-in: %s from %s", name, client)
        return token

    def lookup(self, token: str | None) -> SignedIn | None:
        """The signed-in account for a cookie token: None when unknown, idle too long or disabled."""
        if not token:
            return None
        key = token_hash(token)
        with self.factory() as s, s.begin():
            row = s.execute(
                select(
                    DashboardSession.last_seen,
                    DashboardSession.csrf,
                    Account.username,
                    Account.full_name,
                    Account.active,
                    Account.role,
                )
                .join(Account, Account.username == DashboardSession.username)
                .where(DashboardSession.id == key)
            ).first()
            if row is None:
                return None
            last_seen, csrf, username, full_name, active, role = row
            now = utcnow()
            if now - _aware(last_seen) > self.idle or not active:
                s.execute(delete(DashboardSession).where(DashboardSession.id == key))
                return None
            if now - _aware(last_seen) > timedelta(seconds=30):  # at most two writes a minute per session
                s.execute(update(DashboardSession).where(DashboardSession.id == key).values(last_seen=now))
        return SignedIn(username, full_name, csrf, role or OPERATOR)

    def sign_out(self, token: str | None) -> None:
        if token:
            with self.factory() as s, s.begin():
                s.execute(delete(DashboardSession).where(DashboardSession.id == token_hash(token)))

    def metrics_allowed(self, authorization: str | None, client: str | None) -> bool:
        if self.metrics_token:
            scheme, _, given = (authorization or "").partition(" ")
            return scheme.lower() == "bearer" and same_token(given.strip(), self.metrics_token)
        try:
            return client is not None and ipaddress.ip_address(client).is_loopback
        except ValueError:
            return False
