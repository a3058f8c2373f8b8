"""The audit trail: an append-only record of who did what and when, per dossier and per document.

Every workflow function appends here in the same transaction as the change it describes, so the trail
and the data never disagree. Rows are never updated or deleted: on SQLite, triggers (migration
0007_workflow) refuse both, whoever asks. The trail is shown on the document page, exported as CSV
and carried in each package's manifest for the warehouse.

Actions: capture, digitize, fail, review, field (old -> new), kind, result_code, page, split, sign,
queue, deliver, reject, resend, correct, supersede, reuse, open_dossier, certificate_confirmed; and the
accounts' events (appliance.accounts: account_create, password_reset, password_change, account_deactivate,
account_reactivate, account_unlock, account_role, account_name, account_id_number), which name the account in
``detail["account"]`` and belong to no dossier.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from appliance.db import Document, utcnow
from appliance.domain import VN_TZ
from appliance.records import AuditEvent

SYSTEM = "system"


ACTION_LABELS = {
    "open_dossier": "Mở hồ sơ",
    "capture": "Quét / nhận trang",
    "captured": "Quét / nhận trang",
    "digitized": "Số hóa xong",
    "failed": "Lỗi khi xử lý",
    "redo": "Xử lý lại",
    "review": "Kiểm tra, lưu thông tin",
    "reviewed": "Kiểm tra, lưu thông tin",
    "field": "Sửa trường",
    "kind": "Chọn loại tài liệu",
    "result_code": "Mã kết quả",
    "page": "Sửa trang",
    "split": "Tách tài liệu",
    "signed": "Ký số",
    "certificate_confirmed": "Xác nhận ký bằng chứng thư không mang tên mình",
    "queued": "Đưa vào hàng chờ gửi",
    "delivered": "Kho dữ liệu tiếp nhận",
    "rejected": "Kho dữ liệu từ chối",
    "resend": "Gửi lại",
    "correct": "Tạo bản điều chỉnh",
    "supersede": "Được thay bằng bản điều chỉnh",
    "reuse": "Dùng lại giấy tờ đã số hóa",
    "account_create": "Tạo tài khoản",
    "password_reset": "Đặt lại mật khẩu (mật khẩu tạm thời)",
    "password_change": "Đổi mật khẩu",
    "account_deactivate": "Ngừng hoạt động tài khoản",
    "account_reactivate": "Cho tài khoản hoạt động lại",
    "account_unlock": "Mở khóa đăng nhập",
    "account_role": "Đổi vai trò",
    "account_name": "Sửa họ tên",
    "account_id_number": "Sửa số CCCD",
}


@dataclass(frozen=True, slots=True)
class Entry:
    at: datetime
    actor: str
    action: str
    dossier_code: str | None
    document_id: str | None
    detail: dict[str, Any]

    @property
    def label(self) -> str:
        return ACTION_LABELS.get(self.action, self.action)

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.astimezone(VN_TZ).isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action,
            "dossier_code": self.dossier_code,
            "document_id": self.document_id,
            "detail": self.detail,
        }


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    document_id: str | None = None,
    dossier_code: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event (in the caller's transaction)."""
    session.add(
        AuditEvent(
            at=utcnow(),
            actor=actor[:64],
            action=action[:32],
            document_id=document_id,
            dossier_code=dossier_code,
            detail=dict(detail or {}),
        )
    )


def _entries(rows: Iterable[AuditEvent]) -> list[Entry]:
    return [Entry(r.at, r.actor, r.action, r.dossier_code, r.document_id, dict(r.detail or {})) for r in rows]


def for_documents(session: Session, *, document_ids: Sequence[str]) -> list[Entry]:
    """The trail of these documents (e.g. every version of one), oldest first."""
    if not document_ids:
        return []
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.document_id.in_(list(document_ids))).order_by(AuditEvent.id)
    )
    return _entries(rows)


def for_dossier(session: Session, *, dossier_code: str) -> list[Entry]:
    """Everything about a dossier: its own events and its documents', oldest first."""

    doc_ids = select(Document.id).where(Document.dossier_code == dossier_code)
    rows = session.scalars(
        select(AuditEvent)
        .where(or_(AuditEvent.dossier_code == dossier_code, AuditEvent.document_id.in_(doc_ids)))
        .order_by(AuditEvent.id)
    )
    return _entries(rows)


def for_actions(session: Session, *, actions: Sequence[str], limit: int = 100) -> list[Entry]:
    """The latest events of these kinds (e.g. the accounts' changes), newest first."""
    rows = session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(list(actions))).order_by(AuditEvent.id.desc()).limit(limit)
    )
    return _entries(rows)


CSV_HEADER = ("thoi_gian", "nguoi_thuc_hien", "thao_tac", "ma_ho_so", "ma_tai_lieu", "chi_tiet")


def _detail_text(detail: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in detail.items() if v not in (None, ""))


def to_csv(entries: Iterable[Entry]) -> str:
    """The trail as CSV (UTF-8 with BOM, so Excel on Windows reads the Vietnamese text)."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_HEADER)
    for e in entries:
        out.writerow(
            [
                e.at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M:%S"),
                e.actor,
                e.label,
                e.dossier_code or "",
                e.document_id or "",
                _detail_text(e.detail),
            ]
        )
    return "\ufeff" + buf.getvalue()
