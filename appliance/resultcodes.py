"""Result codes ("mã kết quả"): minted from a database sequence, each code held by one document.

``result_codes.code`` is the primary key, so two officers reviewing at once, a hand-typed code that is
already taken, or a code whose document was deleted can never give the same legal identifier twice:
the second writer's insert fails inside its own transaction and gets :class:`DuplicateResultCode`. The
sequence row is incremented in the writer's transaction (SQLite serialises writers), and a minted
value that collides with a hand-typed code is skipped. A correction takes over its predecessor's code.
The code's format is a setting (:mod:`appliance.sign.resultcode`), since the law does not fix it.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from appliance.db import utcnow
from appliance.errors import DuplicateResultCode
from appliance.records import ResultCode, Sequence
from appliance.settings import SignSettings
from appliance.sign.resultcode import check_result_code, make_result_code

SEQUENCE = "result_code"
MAX_SKIPS = 1000


def _next(session: Session) -> int:
    bumped = session.execute(
        update(Sequence).where(Sequence.name == SEQUENCE).values(value=Sequence.value + 1).returning(Sequence.value)
    ).scalar()
    if bumped is not None:
        return int(bumped)
    session.add(Sequence(name=SEQUENCE, value=1))
    session.flush()
    return 1


def _claim(session: Session, code: str, document_id: str, *, minted: bool) -> bool:
    """Hold ``code`` for the document; False when another document holds it.

    One statement that inserts unless the code exists (no savepoint: with SQLite's deferred transactions a
    savepoint opened before the first write would commit on its own), then a read of who holds it."""
    dialect = session.get_bind().dialect.name
    values = {"code": code, "document_id": document_id, "minted": minted, "created_at": utcnow()}
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(ResultCode).values(**values).on_conflict_do_nothing(index_elements=["code"]))
    else:
        session.execute(sqlite_insert(ResultCode).values(**values).on_conflict_do_nothing(index_elements=["code"]))
    holder = session.scalar(select(ResultCode.document_id).where(ResultCode.code == code))
    return holder == document_id


def release(session: Session, *, document_id: str, back_to: str | None = None) -> None:
    """Give up the codes a document holds (its review changed kind or code before signing).

    A correction's code came from the version it corrects (``back_to``), which was signed with it: the code
    goes back there, never to the pool."""
    for row in session.scalars(select(ResultCode).where(ResultCode.document_id == document_id)):
        if back_to is not None:
            row.document_id = back_to
        else:
            session.delete(row)
    session.flush()


def mint(session: Session, *, document_id: str, sign: SignSettings) -> str:
    """A new code from the sequence, held by ``document_id``."""
    for _ in range(MAX_SKIPS):
        code = make_result_code(
            sign.result_code_template, sign.result_code_pattern, agency=sign.agency_code, seq=_next(session)
        )
        if _claim(session, code, document_id, minted=True):
            return code
    raise DuplicateResultCode(f"{MAX_SKIPS} sequence values in a row are taken by typed codes")


def assign(session: Session, *, document_id: str, code: str, sign: SignSettings) -> str:
    """A typed code, checked against the configured pattern and held by ``document_id``."""
    code = check_result_code(code, sign.result_code_pattern)
    if not _claim(session, code, document_id, minted=False):
        raise DuplicateResultCode(f"result code {code} is held by another document")
    return code


def hand_over(session: Session, *, old_document_id: str, new_document_id: str) -> None:
    """A correction carries its predecessor's code(s)."""
    for row in session.scalars(select(ResultCode).where(ResultCode.document_id == old_document_id)):
        row.document_id = new_document_id
