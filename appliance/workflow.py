"""A document's life as one table: the states, the moves allowed between them, and the one function
that makes a move (and writes it to the audit trail).

```
captured -> digitized -> reviewed -> signed -> queued -> delivered
                                                       -> rejected -> queued (sent again)
failed: any step before signing that could not finish; the officer fixes the pages and it is redone
```
Page edits (rotate, move, delete, replace, split) send a digitized, reviewed or failed document back to
captured. From signed on a document is frozen: a correction is a new version (see
:func:`appliance.documents.correct`), never an edit. Every module that changes a document's state calls
:func:`move`; nothing else writes ``Document.state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from appliance import audit
from appliance.db import DocState, Document
from appliance.errors import DocumentFrozen, IllegalTransition

S = DocState


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change: an officer (from the web session or the CLI's --user) or the system."""

    username: str
    full_name: str = ""
    id_number: str | None = None  # CCCD, compared with the signing certificate


SYSTEM = Actor("system", "Hệ thống")

TRANSITIONS: dict[DocState, frozenset[DocState]] = {
    S.CAPTURED: frozenset({S.CAPTURED, S.DIGITIZED, S.FAILED}),
    S.DIGITIZED: frozenset({S.CAPTURED, S.REVIEWED, S.FAILED}),
    S.REVIEWED: frozenset({S.CAPTURED, S.REVIEWED, S.SIGNED, S.FAILED}),
    S.SIGNED: frozenset({S.QUEUED}),
    S.QUEUED: frozenset({S.DELIVERED, S.REJECTED}),
    S.REJECTED: frozenset({S.QUEUED, S.DELIVERED}),
    S.DELIVERED: frozenset(),
    S.FAILED: frozenset({S.CAPTURED, S.DIGITIZED, S.FAILED}),
}

FROZEN = frozenset({S.SIGNED, S.QUEUED, S.DELIVERED, S.REJECTED})  # what was signed cannot change
PAGES_EDITABLE = frozenset({S.DIGITIZED, S.REVIEWED, S.FAILED})  # page edits and review
DIGITIZED_OR_LATER = frozenset({S.DIGITIZED, S.REVIEWED, S.SIGNED, S.QUEUED, S.DELIVERED, S.REJECTED})
SENT_OR_LATER = frozenset({S.QUEUED, S.DELIVERED})  # handed over for the warehouse (not refused)
CORRECTABLE = frozenset({S.SIGNED, S.QUEUED, S.DELIVERED, S.REJECTED})

LABELS_VI = {
    S.CAPTURED: "Đã quét, chờ xử lý",
    S.DIGITIZED: "Đã số hóa, chờ kiểm tra",
    S.REVIEWED: "Đã kiểm tra, chờ ký",
    S.SIGNED: "Đã ký số",
    S.QUEUED: "Đã đưa vào hàng chờ gửi",
    S.DELIVERED: "Kho dữ liệu đã tiếp nhận",
    S.REJECTED: "Kho dữ liệu từ chối",
    S.FAILED: "Lỗi khi xử lý",
}


def allowed(current: str, target: DocState) -> bool:
    try:
        state = DocState(current)
    except ValueError:
        return False
    return target in TRANSITIONS[state]


def label(state: str) -> str:
    """The officer's words for a state (the raw value for one this version does not know)."""
    try:
        return LABELS_VI[DocState(state)]
    except ValueError:
        return state


def frozen(state: str) -> bool:
    return state in FROZEN


def move(
    session: Session,
    doc: Document,
    target: DocState,
    *,
    actor: Actor,
    action: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Move ``doc`` to ``target`` and append the move to the audit trail, or refuse with a domain error.

    ``action`` names the step in the trail (default: the target state); staying in the same state is
    allowed only where the table says so (a second review, a redo)."""
    current = doc.state
    if not allowed(current, target):
        if current in FROZEN:
            raise DocumentFrozen(f"document {doc.id} is {current}; cannot move to {target}")
        raise IllegalTransition(f"document {doc.id}: {current} -> {target} is not allowed")
    doc.state = target
    info = {"from": current, "to": str(target)} | (detail or {})
    audit.record(
        session,
        actor=actor.username,
        action=action or str(target),
        document_id=doc.id,
        dossier_code=doc.dossier_code,
        detail=info,
    )
