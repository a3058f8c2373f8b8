"""Officer accounts and browser sessions: Argon2 passwords, server-side sessions, CSRF, login lockout.

The session cookie carries a random token; the database keeps only its SHA-256, with the session's
CSRF token and the time of the last request (idle timeout). Signing in always starts a new session
(no fixation). Wrong passwords are counted per account and per client address; past the limit the
account is locked for a while, whatever password is typed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from appliance.accounts import (
    USERNAME_CHARS,
    LoginFailure,
    Role,
    User,
    WebSession,
    check_password,
    failure_key,
    hash_password,
    valid_username,
)
from appliance.db import utcnow
from appliance.workflow import Actor

log = logging.getLogger(__name__)
__all__ = ["USERNAME_CHARS", "check_password", "hash_password", "valid_username"]  # from appliance.accounts


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- accounts (their changes, audited, are appliance.accounts) ------------------------------------
def create_user(
    session: Session, *, username: str, full_name: str, role: Role, password: str, id_number: str | None = None
) -> User:
    """An account without an audit event: for tests and `serve --dev` (people's changes: appliance.accounts)."""
    user = User(
        username=username,
        full_name=full_name,
        role=role,
        password_hash=hash_password(password),
        active=True,
        id_number=id_number or None,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    user = find_user(session, username=username)
    ok = check_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        return None
    return user


# --- sessions ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignedIn:
    user_id: int
    username: str
    full_name: str
    role: str
    csrf: str
    id_number: str | None = None
    must_change: bool = False  # signed in with a temporary password: only the password page until changed

    @property
    def actor(self) -> Actor:
        """Who asks, for the core's workflow functions and the audit trail."""
        return Actor(self.username, self.full_name, self.id_number)

    @property
    def supervisor(self) -> bool:
        return self.role == Role.SUPERVISOR


def start_session(session: Session, *, user: User, replaces: str | None = None) -> str:
    """A new session for the user; the old one (if any cookie came with the login) is dropped."""
    if replaces:
        session.execute(delete(WebSession).where(WebSession.id == token_hash(replaces)))
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=token_hash(token), user_id=user.id, csrf=secrets.token_urlsafe(32)))
    session.flush()
    return token


def end_session(session: Session, *, token: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == token_hash(token)))


_SESSION_ROW = (
    select(
        WebSession.last_seen,
        WebSession.csrf,
        User.id,
        User.username,
        User.full_name,
        User.role,
        User.active,
        User.id_number,
        User.must_change,
    )
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.id == bindparam("key"))
)


def lookup_session(session: Session, *, token: str, idle: timedelta) -> SignedIn | None:
    """The signed-in officer for a cookie token, or None (unknown, expired or account disabled).

    One indexed read on every request (session and account together); a write only when the
    session ends or its last-seen time is refreshed."""
    key = token_hash(token)
    row = session.execute(_SESSION_ROW, {"key": key}).first()
    if row is None:  # unknown (sessions of a removed account go with it: ON DELETE CASCADE)
        return None
    last_seen, csrf, user_id, username, full_name, role, active, id_number, must_change = row
    now = utcnow()
    last = _aware(last_seen)
    if now - last > idle or not active:
        session.execute(delete(WebSession).where(WebSession.id == key))
        return None
    if now - last > timedelta(seconds=30):  # fewer writes: refresh at most twice a minute
        session.execute(update(WebSession).where(WebSession.id == key).values(last_seen=now))
    return SignedIn(user_id, username, full_name, role, csrf, id_number, bool(must_change))


def _aware(when: datetime) -> datetime:
    from datetime import UTC

    return when if when.tzinfo else when.replace(tzinfo=UTC)


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


# --- login throttle -----------------------------------------------------------------------------
class LoginThrottle:
    """Counts wrong passwords per account and per client; locks either for ``lockout_s``.

    The failures live in the database (web_login_failures), so a restart does not reset a lockout.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        max_failures: int,
        lockout_s: float,
        per_client: int | None = None,
    ) -> None:
        self.factory = factory
        self.max_failures = max_failures
        self.per_client = per_client or max_failures * 4
        self.lockout_s = lockout_s

    def _count(self, session: Session, key: str, since: datetime) -> int:
        return int(
            session.scalar(
                select(func.count()).select_from(LoginFailure).where(LoginFailure.key == key, LoginFailure.at >= since)
            )
            or 0
        )

    def attempt(self, username: str, client: str) -> tuple[int, int] | None:
        """Reserve one sign-in attempt, atomically: None when the account or the client is locked.

        The reservation is recorded as a failure before the password is checked, in one write transaction
        (the first statement is a write, so concurrent attempts take turns): 40 parallel wrong passwords
        get ``max_failures`` evaluations, not 40. A correct password gives the reservation back
        (:meth:`succeeded`)."""
        now = utcnow()
        since = now - timedelta(seconds=self.lockout_s)
        with self.factory() as session, session.begin():
            session.execute(delete(LoginFailure).where(LoginFailure.at < since))  # a write: the lock is ours
            if (
                self._count(session, failure_key(username), since) >= self.max_failures
                or self._count(session, "c:" + client, since) >= self.per_client
            ):
                return None
            user_row, client_row = (
                LoginFailure(key=failure_key(username), at=now),
                LoginFailure(key="c:" + client, at=now),
            )
            session.add_all([user_row, client_row])
            session.flush()
            return user_row.id, client_row.id

    def failed(self, username: str, client: str) -> None:
        """The reserved attempt stays counted (nothing more to write)."""
        log.warning("failed sign-in for an account from client=%s", client)

    def succeeded(self, username: str, reservation: tuple[int, int]) -> None:
        with self.factory() as session, session.begin():
            session.execute(delete(LoginFailure).where(LoginFailure.key == failure_key(username)))
            session.execute(delete(LoginFailure).where(LoginFailure.id.in_(list(reservation))))
