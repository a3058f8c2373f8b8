"""The officers' certificate roster: every certificate this box has seen an officer present (the token
pre-check on the signing page, a remote credential) or sign with, and the organisation's certificate.

The supervisor page "Chứng thư số cán bộ" shows one verdict per officer (`VERDICTS`); telemetry can carry
the same rows (only what a certificate itself shows). A row is keyed by (username, certificate SHA-256):
seen again, it only moves `last_seen` and the facts that can change (revocation at the last check).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Boolean, DateTime, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from appliance import accounts
from appliance.db import Base, utcnow
from appliance.sign.token import CertInfo

ORGANISATION = ""  # the username of the organisation certificate's rows
EXPIRING_DAYS = 30

MISSING = "missing"
VALID = "valid"
EXPIRING = "expiring"
EXPIRED = "expired"
REVOKED = "revoked"
MISMATCH = "mismatch"
VERDICTS = {
    MISSING: "chưa có",
    VALID: "hợp lệ",
    EXPIRING: "sắp hết hạn",
    EXPIRED: "hết hạn",
    REVOKED: "bị thu hồi",
    MISMATCH: "không khớp tên",
}


class OfficerCertificate(Base):
    __tablename__ = "officer_certificates"
    __table_args__ = (UniqueConstraint("username", "sha256", name="uq_officer_certificates_user_cert"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)  # "" = the organisation's certificate
    role: Mapped[str] = mapped_column(String(16))  # officer | organisation
    source: Mapped[str] = mapped_column(String(32))  # token | remote:<provider>
    sha256: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    common_name: Mapped[str] = mapped_column(String(200))
    serial: Mapped[str] = mapped_column(String(80))
    issuer: Mapped[str] = mapped_column(String(500))
    not_before: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    key_type: Mapped[str] = mapped_column(String(16), default="")
    key_bits: Mapped[int] = mapped_column(Integer, default=0)
    pss: Mapped[bool | None] = mapped_column(Boolean)  # the token / credential offers RSASSA-PSS (None: unknown)
    revocation: Mapped[str] = mapped_column(String(16), default="not_checked")  # good | revoked | unknown | ...
    revocation_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    name_matches: Mapped[bool] = mapped_column(Boolean, default=True)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    signed: Mapped[bool] = mapped_column(Boolean, default=False)  # has signed on this box (not only presented)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def record_seen(
    session: Session,
    *,
    username: str,
    cert: CertInfo,
    source: str,
    name_matches: bool = True,
    pss: bool | None = None,
    revocation: str | None = None,
    signed: bool = False,
    now: dt.datetime | None = None,
) -> OfficerCertificate:
    """Add or refresh one certificate of an officer (username) or of the organisation (ORGANISATION)."""
    now = now or dt.datetime.now(dt.UTC)
    row = session.scalars(
        select(OfficerCertificate).where(
            OfficerCertificate.username == username, OfficerCertificate.sha256 == cert.sha256
        )
    ).first()
    if row is None:
        row = OfficerCertificate(
            username=username,
            sha256=cert.sha256,
            role="organisation" if username == ORGANISATION else "officer",
            first_seen=now,
        )
        session.add(row)
    row.source = source[:32]
    row.subject, row.common_name, row.issuer = cert.subject[:500], cert.common_name[:200], cert.issuer[:500]
    row.serial, row.not_before, row.not_after = cert.serial[:80], cert.not_before, cert.not_after
    row.key_type, row.key_bits = cert.key_type, cert.key_bits
    row.name_matches, row.last_seen = name_matches, now
    if pss is not None:
        row.pss = pss
    if revocation is not None and revocation != "not_checked":
        row.revocation, row.revocation_at = revocation, now
    row.signed = row.signed or signed
    return row


def verdict(row: OfficerCertificate | None, now: dt.datetime) -> str:
    if row is None:
        return MISSING
    if row.revocation == "revoked":
        return REVOKED
    not_after = _aware(row.not_after)
    if not_after <= now:
        return EXPIRED
    if not row.name_matches:
        return MISMATCH
    if not_after - now <= dt.timedelta(days=EXPIRING_DAYS):
        return EXPIRING
    return VALID


@dataclass(frozen=True, slots=True)
class RosterLine:
    username: str  # "" for the organisation
    full_name: str
    verdict: str
    certificate: OfficerCertificate | None
    others: int  # further certificates seen for the same officer

    @property
    def label(self) -> str:
        return VERDICTS[self.verdict]

    @property
    def days_left(self) -> int | None:
        if self.certificate is None:
            return None
        return (_aware(self.certificate.not_after) - dt.datetime.now(dt.UTC)).days


def _best(rows: list[OfficerCertificate], now: dt.datetime) -> OfficerCertificate | None:
    """The certificate that speaks for an officer: a usable one valid longest, else the latest seen."""
    order = [VALID, EXPIRING, MISMATCH, EXPIRED, REVOKED]
    if not rows:
        return None
    return sorted(
        rows,
        key=lambda r: (
            order.index(verdict(r, now)),
            -_aware(r.not_after).timestamp(),
            -_aware(r.last_seen).timestamp(),
        ),
    )[0]


def roster(session: Session, *, officers: list[tuple[str, str]], now: dt.datetime | None = None) -> list[RosterLine]:
    """One line per officer (username, full name), then the organisation's certificate."""
    now = now or dt.datetime.now(dt.UTC)
    rows = list(session.scalars(select(OfficerCertificate)))
    by_user: dict[str, list[OfficerCertificate]] = {}
    for row in rows:
        by_user.setdefault(row.username, []).append(row)
    lines = []
    for username, full_name in [*officers, (ORGANISATION, "")]:
        seen = by_user.get(username, [])
        best = _best(seen, now)
        lines.append(RosterLine(username, full_name, verdict(best, now), best, max(0, len(seen) - 1)))
    return lines


def of_active_accounts(session: Session, *, now: dt.datetime | None = None) -> list[RosterLine]:
    """The roster of every active account (officers and supervisors, by username), then the organisation:
    what the supervisor page shows and telemetry carries."""
    users = session.scalars(select(accounts.User).where(accounts.User.active).order_by(accounts.User.username))
    return roster(session, officers=[(u.username, u.full_name) for u in users], now=now)


def as_telemetry(lines: list[RosterLine]) -> list[dict[str, object]]:
    """What travels to the province: the verdict and what the certificate itself shows (no ID numbers
    beyond the subject, no PIN, nothing from the officer's account but the username)."""
    out: list[dict[str, object]] = []
    for line in lines:
        cert = line.certificate
        out.append(
            {
                "username": line.username,
                "role": "organisation" if line.username == ORGANISATION else "officer",
                "verdict": line.verdict,
                "subject": cert.subject if cert else None,
                "serial": cert.serial if cert else None,
                "issuer": cert.issuer if cert else None,
                "not_after": _aware(cert.not_after).isoformat() if cert else None,
                "key": f"{cert.key_type}-{cert.key_bits}" if cert else None,
                "pss": cert.pss if cert else None,
                "revocation": cert.revocation if cert else None,
                "last_seen": _aware(cert.last_seen).isoformat() if cert else None,
            }
        )
    return out
