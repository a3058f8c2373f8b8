"""Delivery: what the warehouse's receipt (or refusal) does to the documents of a package.

The outbox sender calls :func:`receipt` in the same transaction that marks the package receipted or
rejected, so the package and its documents never disagree; :func:`resend` puts a refused package back in
the queue (after the officer fixed what the warehouse named) and its documents back to queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance import workflow
from appliance.db import DocState, Document
from appliance.outbox import store
from appliance.records import DocumentInfo
from appliance.workflow import Actor

WAREHOUSE = Actor("warehouse", "Kho dữ liệu tỉnh")


def _members(session: Session, package_id: str) -> list[tuple[Document, DocumentInfo]]:
    rows = session.execute(
        select(Document, DocumentInfo)
        .join(DocumentInfo, DocumentInfo.document_id == Document.id)
        .where(DocumentInfo.package_id == package_id)
    ).all()
    return [(doc, info) for doc, info in rows]


def receipt(
    session: Session, *, package_id: str, accepted: bool, reason: str | None = None, warehouse_id: str | None = None
) -> list[str]:
    """Move the package's documents to delivered or rejected (with the warehouse's reason). Idempotent."""
    moved = []
    target = DocState.DELIVERED if accepted else DocState.REJECTED
    for doc, info in _members(session, package_id):
        if doc.state == target or not workflow.allowed(doc.state, target):
            continue
        detail: dict[str, str | None] = {"package_id": package_id, "warehouse_id": warehouse_id}
        if accepted:
            info.delivered_at, info.rejected_reason = datetime.now(UTC), None
        else:
            info.rejected_reason = (reason or "rejected")[:500]
            detail["reason"] = info.rejected_reason
        workflow.move(session, doc, target, actor=WAREHOUSE, detail=detail)
        moved.append(doc.id)
    return moved


def resend(session: Session, *, actor: Actor, item_id: int) -> store.OutboxItem:
    """Queue a package again (OutboxError when it cannot be); its refused documents go back to queued."""
    item = store.retry(session, item_id=item_id)
    for doc, _info in _members(session, item.package_id):
        if doc.state == DocState.REJECTED:
            workflow.move(
                session, doc, DocState.QUEUED, actor=actor, action="resend", detail={"package_id": item.package_id}
            )
    return item


@dataclass(frozen=True, slots=True)
class Member:
    document_id: str
    title: str
    state: str
    version: int


@dataclass(frozen=True, slots=True)
class Tracked:
    item: store.OutboxItem
    documents: tuple[Member, ...]


def tracking(session: Session, *, limit: int = 200) -> list[Tracked]:
    """The newest packages with the documents each carries (what the tracking page shows)."""
    items = store.list_items(session, limit=limit)
    by_package: dict[str, list[Member]] = {i.package_id: [] for i in items}
    if by_package:
        rows = session.execute(
            select(DocumentInfo.package_id, Document.id, Document.state, Document.version, DocumentInfo.fields)
            .join(Document, Document.id == DocumentInfo.document_id)
            .where(DocumentInfo.package_id.in_(list(by_package)))
            .order_by(Document.created_at)
        ).all()
        for package_id, doc_id, state, version, fields in rows:
            fields = fields or {}
            title = str(fields.get("trich_yeu") or fields.get("loai_van_ban") or fields.get("so_ky_hieu") or "")
            by_package[package_id].append(Member(doc_id, title, state, version or 1))
    return [Tracked(i, tuple(by_package.get(i.package_id, []))) for i in items]
