"""Tables of the web UI only: form nonces. Accounts, their browser sessions and login failures belong to
the core (:mod:`appliance.accounts`, re-exported here); the workflow's tables (dossiers, reviews, audit
trail ...) too: :mod:`appliance.records`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.accounts import LoginFailure, Role, User, WebSession
from appliance.db import Base, utcnow

__all__ = ["FormNonce", "LoginFailure", "Role", "User", "WebSession"]


class FormNonce(Base):
    """A submitted form's one-time value and where its first submit led (double-submit guard)."""

    __tablename__ = "web_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
