"""A document's life at the service level (no browser, no FastAPI): every move of the state table and every
refusal, review and result codes (two writers at once), page edits, corrections, reuse, delivery, the
append-only audit trail, the indicators and the recorded capture path with its resume, against a real
SQLite file in tmp_path.

Documents are set up through the core's own functions wherever one exists; a test that needs a document in
a later state (signed, queued ...) moves it there with :func:`appliance.workflow.move`, as signing does, or
writes the state directly when the path that leads there is not what the test is about.
"""

from __future__ import annotations

import csv
import io
import itertools
import threading
import traceback
from collections.abc import Iterator
from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from appliance import audit, db, delivery, documents, dossiers, indicators, pipeline, resultcodes, workflow
from appliance.db import DocState, Document
from appliance.errors import (
    DocumentBusy,
    DocumentFrozen,
    DuplicateResultCode,
    FormInvalid,
    IllegalTransition,
    InvalidResultCode,
    NotFound,
    OutboxError,
)
from appliance.model import Field, RawPage, Source
from appliance.originals import OriginalStore
from appliance.outbox import store as outbox
from appliance.records import AuditEvent, DocumentInfo, Intake, Kind, ResultCode, Reuse, Separator
from appliance.records import Sequence as SequenceRow
from appliance.settings import Settings, SignSettings, load_settings
from appliance.workflow import Actor

S = DocState
AGENCY = "000.00.19.H12"
SIGN = SignSettings(agency_code=AGENCY)
CODE = "000.00.19.H12-230412-0007"
OTHER_CODE = "000.00.19.H12-230413-0008"
ANH = Actor("anh.nt", "Nguyễn Thị Ánh", "001203004005")
BINH = Actor("binh.tv", "Trần Văn Bình")

# The state table as DESIGN.md draws it: the test is the second copy, so a change to the table is deliberate.
EXPECTED_TABLE: dict[DocState, set[DocState]] = {
    S.CAPTURED: {S.CAPTURED, S.DIGITIZED, S.FAILED},
    S.DIGITIZED: {S.CAPTURED, S.REVIEWED, S.FAILED},
    S.REVIEWED: {S.CAPTURED, S.REVIEWED, S.SIGNED, S.FAILED},
    S.SIGNED: {S.QUEUED},
    S.QUEUED: {S.DELIVERED, S.REJECTED},
    S.REJECTED: {S.QUEUED, S.DELIVERED},
    S.DELIVERED: set(),
    S.FAILED: {S.CAPTURED, S.DIGITIZED, S.FAILED},
}
PAIRS = [(a, b) for a in DocState for b in DocState]
ALLOWED = [(a, b) for a, b in PAIRS if b in EXPECTED_TABLE[a]]
REFUSED = [(a, b) for a, b in PAIRS if b not in EXPECTED_TABLE[a]]
FROZEN_STATES = [S.SIGNED, S.QUEUED, S.DELIVERED, S.REJECTED]


# --- fixtures and helpers ------------------------------------------------------------------------------
def _factory(path: Path) -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    yield db.session_factory(engine)
    engine.dispose()


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A fresh SQLite file, brought to the newest migration (the audit triggers included)."""
    yield from _factory(tmp_path / "appliance.db")


@pytest.fixture
def originals(tmp_path: Path) -> OriginalStore:
    return OriginalStore(tmp_path / "originals")


_seeds = itertools.count(1)


def noise_page(seed: int, shape: tuple[int, int] = (48, 32)) -> np.ndarray:
    """A tiny grey page of its own (distinct digest) for tests that never OCR it."""
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def make_doc(
    session: Session,
    originals: OriginalStore,
    *,
    state: DocState = S.DIGITIZED,
    pages: int = 1,
    dossier_code: str | None = CODE,
    backlog: bool = False,
    found: tuple[Field, ...] = (),
) -> Document:
    """A recorded document (originals stored, capture in the trail), digitized unless asked otherwise."""
    shas = [originals.put_image(noise_page(next(_seeds)), dpi=100) for _ in range(pages)]
    doc = db.create_document(
        session,
        source="file",
        pages=[(sha, f"trang-{i + 1}.png", 100.0) for i, sha in enumerate(shas)],
        dossier_code=dossier_code,
    )
    documents.captured(session, doc, actor=ANH, backlog=backlog, detail={"source": "file", "pages": pages})
    if state != S.CAPTURED:
        doc.pdf_path, doc.pdf_sha256, doc.pdf_bytes = f"/nonexistent/{doc.id}.pdf", doc.id.replace("-", "")[:64], 1
        documents.digitized(session, doc, text="Giấy xác nhận", found=found)
    if state not in (S.CAPTURED, S.DIGITIZED):
        doc.state = state  # set-up only: the moves that lead here are tested on their own
    session.flush()
    return doc


def review_form(kind: str = Kind.COMPONENT, **kwargs: object) -> documents.ReviewForm:
    fields = kwargs.pop("fields", {})
    return documents.ReviewForm(kind=kind, fields=fields, **kwargs)  # type: ignore[arg-type]


def review(
    session: Session, doc_id: str, *, actor: Actor = ANH, kind: str = Kind.COMPONENT, **kwargs: object
) -> DocumentInfo:
    return documents.review(session, actor=actor, doc_id=doc_id, form=review_form(kind, **kwargs), sign=SIGN)


def sign_like(session: Session, doc: Document, package_id: str) -> None:
    """What signing.sign records once the token has signed: reviewed -> signed -> queued, in a package."""
    info = session.get(DocumentInfo, doc.id)
    assert info is not None
    info.package_id = package_id
    workflow.move(session, doc, S.SIGNED, actor=ANH, detail={"certificate_serial": "01"})
    workflow.move(session, doc, S.QUEUED, actor=ANH, detail={"package_id": package_id})


def trail(session: Session, doc_id: str) -> list[audit.Entry]:
    return audit.for_documents(session, document_ids=[doc_id])


def events(session: Session, doc_id: str | None = None) -> int:
    q = select(func.count()).select_from(AuditEvent)
    if doc_id is not None:
        q = q.where(AuditEvent.document_id == doc_id)
    return int(session.scalar(q) or 0)


def code(seq: int) -> str:
    return f"KQ.{AGENCY}.{seq:06d}"


# --- 1. the state table ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[sessionmaker[Session], OriginalStore]]:
    """One database for the whole table (each case makes its own document)."""
    d = tmp_path_factory.mktemp("table")
    for factory in _factory(d / "appliance.db"):
        yield factory, OriginalStore(d / "originals")


def test_the_table_is_the_documented_one() -> None:
    assert {state: set(targets) for state, targets in workflow.TRANSITIONS.items()} == EXPECTED_TABLE
    assert set(workflow.FROZEN) == set(FROZEN_STATES)
    assert all(workflow.label(s) != s for s in DocState)  # every state has the officer's words


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_move_is_made_and_recorded(
    table_db: tuple[sessionmaker[Session], OriginalStore], current: DocState, target: DocState
) -> None:
    factory, originals = table_db
    with db.transaction(factory) as session:
        doc = make_doc(session, originals, state=current)
        before = events(session, doc.id)
        workflow.move(session, doc, target, actor=BINH, detail={"why": "test"})
    with db.transaction(factory) as session:
        fresh = session.get(Document, doc.id)
        assert fresh is not None and fresh.state == target
        last = trail(session, doc.id)
        assert len(last) == before + 1
        assert (last[-1].actor, last[-1].action) == ("binh.tv", str(target))
        assert last[-1].detail == {"from": str(current), "to": str(target), "why": "test"}
        assert last[-1].dossier_code == CODE


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=[f"{a}->{b}" for a, b in REFUSED])
def test_every_other_move_is_refused_and_changes_nothing(
    table_db: tuple[sessionmaker[Session], OriginalStore], current: DocState, target: DocState
) -> None:
    factory, originals = table_db
    with db.transaction(factory) as session:
        doc = make_doc(session, originals, state=current)
        before = events(session, doc.id)
    expected = DocumentFrozen if current in FROZEN_STATES else IllegalTransition
    with db.transaction(factory) as session:
        loaded = session.get(Document, doc.id)
        assert loaded is not None
        with pytest.raises(expected):
            workflow.move(session, loaded, target, actor=BINH)
        assert loaded.state == current
        assert events(session, doc.id) == before


def test_a_state_this_version_does_not_know_is_refused(
    factory: sessionmaker[Session], originals: OriginalStore
) -> None:
    with db.transaction(factory) as session:
        doc = make_doc(session, originals)
        doc.state = "ocr_done"  # a row from before migration 0007
        with pytest.raises(IllegalTransition):
            workflow.move(session, doc, S.DIGITIZED, actor=workflow.SYSTEM)
        assert not workflow.allowed("ocr_done", S.DIGITIZED) and workflow.label("ocr_done") == "ocr_done"


# --- 2. review ----------------------------------------------------------------------------------------------
def test_review_records_every_change_old_to_new(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    found = (Field("so_ky_hieu", "12/QĐ-UBN", 0.6), Field("so_ky_hieu", "12/QĐ-UBND", 0.9))
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, found=found).id
        info = session.get(DocumentInfo, doc_id)
        assert info is not None and info.fields == {"so_ky_hieu": "12/QĐ-UBND"}  # the most confident value

    with db.transaction(factory) as session:
        n = events(session, doc_id)
        info = review(
            session,
            doc_id,
            fields={"so_ky_hieu": "12/QĐ-UBND ", "trich_yeu": "Giấy khai sinh", "ngay_ban_hanh": "05/07/2023"},
            valid_until="31/12/2030",
        )
        assert info.reviewed_by == "anh.nt" and info.reviewed_at is not None and info.kind == Kind.COMPONENT
    with db.transaction(factory) as session:
        doc = documents.load(session, doc_id)
        assert doc.doc.state == S.REVIEWED and doc.dossier is None  # no dossier row was opened
        got = [(e.action, e.detail) for e in trail(session, doc_id)[n:]]
        assert got == [
            ("field", {"field": "ngay_ban_hanh", "old": "", "new": "05/07/2023"}),
            ("field", {"field": "trich_yeu", "old": "", "new": "Giấy khai sinh"}),
            ("kind", {"field": "kind", "old": None, "new": "component"}),
            ("field", {"field": "valid_until", "old": None, "new": "31/12/2030"}),
            ("review", {"from": "digitized", "to": "reviewed", "changes": 4}),
        ]  # the number was only trimmed: unchanged, not recorded
        assert "giay khai sinh" in doc.info.text_folded  # type: ignore[union-attr]

    # the officer decides it is a result: a minted code, recorded as a change
    with db.transaction(factory) as session:
        n = events(session, doc_id)
        fields = {"so_ky_hieu": "12/QĐ-UBND", "trich_yeu": "Giấy khai sinh", "ngay_ban_hanh": "05/07/2023"}
        info = review(session, doc_id, kind=Kind.RESULT, fields=fields, auto_code=True, valid_until="31/12/2030")
        assert info.result_code == code(1)
    with db.transaction(factory) as session:
        got = [(e.action, e.detail) for e in trail(session, doc_id)[n:]]
        assert got == [
            ("kind", {"field": "kind", "old": "component", "new": "result"}),
            ("result_code", {"field": "result_code", "old": None, "new": code(1)}),
            ("review", {"from": "reviewed", "to": "reviewed", "changes": 2}),
        ]
        held = session.get(ResultCode, code(1))
        assert held is not None and held.document_id == doc_id and held.minted

    # ... and back to a component: the code is released and the release is in the trail
    with db.transaction(factory) as session:
        n = events(session, doc_id)
        info = review(session, doc_id, fields=fields, valid_until="31/12/2030")
        assert info.result_code is None and info.kind == Kind.COMPONENT
    with db.transaction(factory) as session:
        got = [(e.action, e.detail) for e in trail(session, doc_id)[n:]]
        assert got[:2] == [
            ("kind", {"field": "kind", "old": "result", "new": "component"}),
            ("result_code", {"field": "result_code", "old": code(1), "new": None}),
        ]
        assert session.scalar(select(func.count()).select_from(ResultCode)) == 0

    # a second review that changes nothing says so
    with db.transaction(factory) as session:
        n = events(session, doc_id)
        review(session, doc_id, fields=fields, valid_until="31/12/2030")
    with db.transaction(factory) as session:
        assert [(e.action, e.detail["changes"]) for e in trail(session, doc_id)[n:]] == [("review", 0)]


@pytest.mark.parametrize(
    ("form", "errors"),
    [
        (
            review_form("", fields={"ngay_ban_hanh": "32/13/2023", "ma_tthc": "1.23"}, valid_until="mai"),
            {"kind", "ngay_ban_hanh", "ma_tthc", "valid_until"},
        ),
        (review_form("khac"), {"kind"}),
        (review_form(Kind.RESULT), {"result_code"}),  # a result needs a code, typed or minted
        (review_form(Kind.RESULT, result_code="SO-42"), {"result_code"}),  # not the configured pattern
    ],
    ids=["bad-date-tthc-no-kind", "unknown-kind", "result-without-code", "result-code-pattern"],
)
def test_review_form_errors_per_field_change_nothing(
    factory: sessionmaker[Session], originals: OriginalStore, form: documents.ReviewForm, errors: set[str]
) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals).id
        n = events(session)
    with factory() as session:
        with pytest.raises(FormInvalid) as info:
            documents.review(session, actor=ANH, doc_id=doc_id, form=form, sign=SIGN)
        assert set(info.value.errors) == errors
        assert all(isinstance(v, str) and v for v in info.value.errors.values())
        session.rollback()  # as db.transaction does on the error
    with db.transaction(factory) as session:
        loaded = documents.load(session, doc_id)
        assert loaded.doc.state == S.DIGITIZED and loaded.info is not None and loaded.info.kind is None
        assert events(session) == n
        assert session.scalar(select(func.count()).select_from(ResultCode)) == 0
    if "result_code" in errors and form.result_code:
        assert isinstance(info.value.__cause__, InvalidResultCode)


@pytest.mark.parametrize(
    ("state", "error"),
    [(S.CAPTURED, DocumentBusy), (S.FAILED, IllegalTransition), *((s, DocumentFrozen) for s in FROZEN_STATES)],
    ids=lambda v: str(v) if isinstance(v, str) else v.__name__,
)
def test_review_is_refused(
    factory: sessionmaker[Session], originals: OriginalStore, state: DocState, error: type[Exception]
) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, state=state).id
        n = events(session, doc_id)
    with factory() as session:
        with pytest.raises(error):
            review(session, doc_id, kind=Kind.RESULT, auto_code=True)
        session.rollback()
    with db.transaction(factory) as session:
        assert documents.load(session, doc_id).doc.state == state
        assert events(session, doc_id) == n
        assert session.scalar(select(func.count()).select_from(ResultCode)) == 0


def test_review_of_an_unknown_document(factory: sessionmaker[Session]) -> None:
    with factory() as session, pytest.raises(NotFound):
        review(session, "no-such-document")


# --- 3. result codes ---------------------------------------------------------------------------------------
def test_minted_codes_are_unique_and_increasing(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    with db.transaction(factory) as session:
        ids = [make_doc(session, originals).id for _ in range(5)]
    got = []
    for doc_id in ids:
        with db.transaction(factory) as session:
            got.append(review(session, doc_id, kind=Kind.RESULT, auto_code=True).result_code)
    assert got == [code(i) for i in range(1, 6)]
    with db.transaction(factory) as session:
        rows = session.scalars(select(ResultCode).order_by(ResultCode.code)).all()
        assert [(r.code, r.document_id, r.minted) for r in rows] == [
            (c, d, True) for c, d in zip(got, ids, strict=True)
        ]


def test_a_typed_code_held_by_another_document_is_refused(
    factory: sessionmaker[Session], originals: OriginalStore
) -> None:
    with db.transaction(factory) as session:
        a, b = (make_doc(session, originals).id for _ in range(2))
        review(session, a, kind=Kind.RESULT, result_code=f" {code(42)} ")
    with factory() as session:
        with pytest.raises(FormInvalid) as info:
            review(session, b, kind=Kind.RESULT, result_code=code(42))
        assert set(info.value.errors) == {"result_code"}
        assert isinstance(info.value.__cause__, DuplicateResultCode)
        session.rollback()
    with db.transaction(factory) as session:
        assert documents.load(session, b).doc.state == S.DIGITIZED
        held = session.get(ResultCode, code(42))
        assert held is not None and held.document_id == a and not held.minted
        # the holder itself may review again with its own code
        assert review(session, a, kind=Kind.RESULT, result_code=code(42)).result_code == code(42)


def test_a_typed_code_the_sequence_would_reach_is_skipped(
    factory: sessionmaker[Session], originals: OriginalStore
) -> None:
    with db.transaction(factory) as session:
        a, b, c, d = (make_doc(session, originals).id for _ in range(4))
    with db.transaction(factory) as session:
        assert review(session, a, kind=Kind.RESULT, auto_code=True).result_code == code(1)
    with db.transaction(factory) as session:  # typed: what the sequence gives next, and the one after
        review(session, b, kind=Kind.RESULT, result_code=code(2))
        review(session, c, kind=Kind.RESULT, result_code=code(3))
    with db.transaction(factory) as session:
        assert review(session, d, kind=Kind.RESULT, auto_code=True).result_code == code(4)
        assert session.get(SequenceRow, resultcodes.SEQUENCE).value == 4  # type: ignore[union-attr]


def test_two_writers_at_once_never_share_a_code(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    """Two officers reviewing results at once, each in their own session on the same SQLite file: some codes
    minted, some typed ahead of the sequence. No code is held twice and no database error escapes."""
    per_writer = 24
    with db.transaction(factory) as session:
        ids = [make_doc(session, originals).id for _ in range(2 * per_writer)]
    typed = {doc_id: code(i + 2) for i, doc_id in enumerate(ids) if i % 5 == 0}  # codes the sequence reaches
    barrier = threading.Barrier(2)
    failures: list[str] = []
    refused: list[str] = []

    def writer(actor: Actor, mine: list[str]) -> None:
        barrier.wait()
        for doc_id in mine:
            want = typed.get(doc_id, "")
            try:
                with db.transaction(factory) as session:
                    review(session, doc_id, actor=actor, kind=Kind.RESULT, result_code=want, auto_code=not want)
            except FormInvalid as err:  # a typed code the other writer's sequence got first: the right answer
                if not (want and isinstance(err.__cause__, DuplicateResultCode)):
                    failures.append(traceback.format_exc())
                refused.append(doc_id)
            except Exception:  # noqa: BLE001 - reported below with the traceback
                failures.append(traceback.format_exc())

    threads = [
        threading.Thread(target=writer, args=(ANH, ids[0::2])),
        threading.Thread(target=writer, args=(BINH, ids[1::2])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not failures, "\n".join(failures)

    with db.transaction(factory) as session:
        infos = {i.document_id: i for i in session.scalars(select(DocumentInfo))}
        held = {r.code: r.document_id for r in session.scalars(select(ResultCode))}
        reviewed = [d for d in ids if d not in refused]
        codes = [infos[d].result_code for d in reviewed]
        assert len(codes) == len(set(codes)) == len(reviewed)
        assert held == {infos[d].result_code: d for d in reviewed}
        for doc_id in refused:  # refused only because another document holds that code
            assert typed[doc_id] in held and held[typed[doc_id]] != doc_id
            assert session.get(Document, doc_id).state == S.DIGITIZED  # type: ignore[union-attr]
        minted = sorted(int(c.rsplit(".", 1)[1]) for c in codes if c not in typed.values())  # type: ignore[union-attr]
        assert len(minted) == len(set(minted))


def test_two_writers_minting_directly(factory: sessionmaker[Session]) -> None:
    """resultcodes.mint in many short transactions from two threads: 1..2n, each exactly once."""
    n = 40
    barrier = threading.Barrier(2)
    got: list[str] = []
    failures: list[str] = []

    def writer(name: str) -> None:
        barrier.wait()
        for i in range(n):
            try:
                with db.transaction(factory) as session:
                    got.append(resultcodes.mint(session, document_id=f"{name}-{i}", sign=SIGN))
            except Exception:  # noqa: BLE001 - reported below with the traceback
                failures.append(traceback.format_exc())

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, "\n".join(failures)
    assert sorted(got) == [code(i) for i in range(1, 2 * n + 1)]


def test_a_rolled_back_review_holds_no_code(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    with db.transaction(factory) as session:
        a, b = (make_doc(session, originals).id for _ in range(2))
    with pytest.raises(RuntimeError), db.transaction(factory) as session:
        review(session, a, kind=Kind.RESULT, result_code=code(7))
        raise RuntimeError("the caller failed after the review: everything is rolled back")
    with db.transaction(factory) as session:
        assert documents.load(session, a).doc.state == S.DIGITIZED
        assert session.get(ResultCode, code(7)) is None  # fails: held by a, which never got it
        assert review(session, b, kind=Kind.RESULT, result_code=code(7)).result_code == code(7)


# --- 4. pages ---------------------------------------------------------------------------------------------
def _pages(session: Session, doc_id: str) -> list[tuple[int, str]]:
    doc = documents.load(session, doc_id).doc
    return [(p.index, p.original_sha256) for p in doc.pages]


@pytest.mark.parametrize("state", [S.DIGITIZED, S.REVIEWED, S.FAILED])
def test_page_edits_send_the_document_back_to_captured(
    factory: sessionmaker[Session], originals: OriginalStore, state: DocState
) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, pages=3, state=state).id
        a, b, c = (sha for _i, sha in _pages(session, doc_id))
        ids = [p.id for p in documents.load(session, doc_id).doc.pages]

    def edit(page_id: int, action: str) -> None:
        with db.transaction(factory) as session:
            doc = documents.edit_page(session, originals, actor=BINH, doc_id=doc_id, page_id=page_id, action=action)
            assert doc.state == S.CAPTURED
            last = trail(session, doc_id)[-1]
            assert (last.actor, last.action, last.detail["edit"], last.detail["to"]) == (
                "binh.tv",
                "page",
                action,
                "captured",
            )
            documents.digitized(session, doc, text="", found=())  # the pipeline redoes it

    edit(ids[2], "up")
    with db.transaction(factory) as session:
        assert _pages(session, doc_id) == [(0, a), (1, c), (2, b)]
    edit(ids[2], "up")
    edit(ids[2], "up")  # already first: nothing moves, still redone
    with db.transaction(factory) as session:
        assert _pages(session, doc_id) == [(0, c), (1, a), (2, b)]
    edit(ids[2], "down")
    with db.transaction(factory) as session:
        assert _pages(session, doc_id) == [(0, a), (1, c), (2, b)]
    edit(ids[0], "delete")
    with db.transaction(factory) as session:
        assert _pages(session, doc_id) == [(0, c), (1, b)]
        assert documents.load(session, doc_id).doc.page_count == 2
    edit(ids[1], "rotate")
    with db.transaction(factory) as session:
        doc = documents.load(session, doc_id).doc
        page = doc.pages[1]
        assert page.id == ids[1] and page.upright and page.original_sha256 != b
        image, _dpi = originals.get_image(page.original_sha256)
        before, _ = originals.get_image(b)
        assert np.array_equal(image, np.rot90(before, k=-1))  # a quarter turn clockwise


def test_replace_and_split(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, pages=4, state=S.REVIEWED, backlog=True).id
        ids = [p.id for p in documents.load(session, doc_id).doc.pages]
        shas = [sha for _i, sha in _pages(session, doc_id)]
    new_image = noise_page(999)
    with db.transaction(factory) as session:
        raw = RawPage(image=new_image, dpi=150, source=Source.SCANNER, label="ADF 1")
        doc = documents.replace_page(session, originals, actor=ANH, doc_id=doc_id, page_id=ids[1], raw=raw)
        assert doc.state == S.CAPTURED
        page = doc.pages[1]
        assert (page.label, page.dpi, page.upright) == ("ADF 1 (thay)", 150, False)
        assert np.array_equal(originals.get_image(page.original_sha256)[0], new_image)
        shas[1] = page.original_sha256
        assert trail(session, doc_id)[-1].detail == {"from": "reviewed", "to": "captured", "page": 2, "edit": "replace"}
        documents.digitized(session, doc, text="", found=())

    with db.transaction(factory) as session:
        with pytest.raises(FormInvalid):  # a cut before the first page is no cut
            documents.split(session, actor=ANH, doc_id=doc_id, page_ids=[ids[0]])
        parts = documents.split(session, actor=ANH, doc_id=doc_id, page_ids=[ids[0], ids[2], ids[3]])
    with db.transaction(factory) as session:
        assert parts[0] == doc_id and len(parts) == 3
        got = [_pages(session, p) for p in parts]
        assert got == [[(0, shas[0]), (1, shas[1])], [(0, shas[2])], [(0, shas[3])]]  # same originals
        for part in parts:
            loaded = documents.load(session, part)
            assert loaded.doc.state == S.CAPTURED and loaded.doc.dossier_code == CODE
            assert loaded.info is not None and loaded.info.backlog  # a backlog document's parts stay backlog
        assert documents.load(session, doc_id).doc.page_count == 2
        assert trail(session, doc_id)[-1].detail == {"from": "digitized", "to": "captured", "parts": 3}
        assert [(e.action, e.detail["split_from"]) for e in trail(session, parts[1])] == [("capture", doc_id)]


@pytest.mark.parametrize("state", [S.CAPTURED, *FROZEN_STATES])
def test_page_edits_are_refused_on_busy_and_frozen_documents(
    factory: sessionmaker[Session], originals: OriginalStore, state: DocState
) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, pages=2, state=state).id
        ids = [p.id for p in documents.load(session, doc_id).doc.pages]
        n = events(session)
    error = DocumentBusy if state == S.CAPTURED else DocumentFrozen
    raw = RawPage(image=noise_page(5), dpi=100, source=Source.FILE)
    with factory() as session:
        for action in documents.PAGE_ACTIONS:
            with pytest.raises(error):
                documents.edit_page(session, originals, actor=ANH, doc_id=doc_id, page_id=ids[0], action=action)
        with pytest.raises(error):
            documents.replace_page(session, originals, actor=ANH, doc_id=doc_id, page_id=ids[0], raw=raw)
        with pytest.raises(error):
            documents.split(session, actor=ANH, doc_id=doc_id, page_ids=[ids[1]])
        session.rollback()
    with db.transaction(factory) as session:
        assert documents.load(session, doc_id).doc.state == state
        assert len(_pages(session, doc_id)) == 2 and events(session) == n


def test_page_edit_refusals(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    with db.transaction(factory) as session:
        one = make_doc(session, originals).id
        other = make_doc(session, originals).id
        (only,) = (p.id for p in documents.load(session, one).doc.pages)
        (foreign,) = (p.id for p in documents.load(session, other).doc.pages)
    with factory() as session:
        with pytest.raises(FormInvalid) as info:
            documents.edit_page(session, originals, actor=ANH, doc_id=one, page_id=only, action="delete")
        assert set(info.value.errors) == {"pages"}
        with pytest.raises(NotFound):
            documents.edit_page(session, originals, actor=ANH, doc_id=one, page_id=foreign, action="rotate")
        with pytest.raises(IllegalTransition):
            documents.edit_page(session, originals, actor=ANH, doc_id=one, page_id=only, action="flip")
        session.rollback()
    with db.transaction(factory) as session:
        assert documents.load(session, one).doc.state == S.DIGITIZED and len(_pages(session, one)) == 1


# --- 5. corrections and reuse -------------------------------------------------------------------------------
def _signed_result(factory: sessionmaker[Session], originals: OriginalStore, *, package: str = "a" * 64) -> str:
    with db.transaction(factory) as session:
        doc = make_doc(session, originals, found=(Field("trich_yeu", "Giấy chứng nhận", 0.9),))
        review(session, doc.id, kind=Kind.RESULT, auto_code=True, fields={"trich_yeu": "Giấy chứng nhận"})
        sign_like(session, doc, package)
        return doc.id


@pytest.mark.parametrize("state", FROZEN_STATES)
def test_correct_makes_a_new_version(factory: sessionmaker[Session], originals: OriginalStore, state: DocState) -> None:
    old = _signed_result(factory, originals)
    with db.transaction(factory) as session:
        documents.load(session, old).doc.state = state  # signed, queued, delivered or rejected
    with db.transaction(factory) as session:
        new = documents.correct(session, actor=BINH, doc_id=old)
    with db.transaction(factory) as session:
        was, now = documents.load(session, old), documents.load(session, new)
        assert (now.doc.version, now.doc.supersedes_id, now.doc.superseded_by) == (2, old, None)
        assert (was.doc.superseded_by, was.doc.state) == (new, state)
        assert now.doc.state == S.DIGITIZED and now.doc.pdf_path == was.doc.pdf_path
        assert [p.original_sha256 for p in now.doc.pages] == [p.original_sha256 for p in was.doc.pages]
        assert now.info is not None and was.info is not None
        assert (now.info.kind, now.info.result_code, now.info.fields) == (Kind.RESULT, code(1), was.info.fields)
        assert now.info.package_id is None and now.info.signed_at is None and now.info.reviewed_at is None
        held = session.get(ResultCode, code(1))
        assert held is not None and held.document_id == new  # handed over
        assert [(e.action, e.actor, e.detail) for e in trail(session, new)] == [
            ("correct", "binh.tv", {"supersedes": old, "version": 2, "package_superseded": "a" * 64}),
            ("correct", "binh.tv", {"from": "captured", "to": "digitized"}),
        ]
        assert (trail(session, old)[-1].action, trail(session, old)[-1].detail) == ("supersede", {"superseded_by": new})
        assert [d.id for d in documents.versions(session, was.doc)] == [old, new]
        assert [d.id for d in documents.versions(session, now.doc)] == [old, new]

    with factory() as session:
        with pytest.raises(IllegalTransition, match="already has a correction"):
            documents.correct(session, actor=BINH, doc_id=old)
        with pytest.raises(IllegalTransition, match="nothing signed"):
            documents.correct(session, actor=BINH, doc_id=new)  # not signed yet
        with pytest.raises(DocumentFrozen):
            review(session, old, kind=Kind.RESULT, result_code=code(1))  # superseded (and frozen)
        session.rollback()

    # the new version goes through review (keeping its code) and signing again; then a third version
    with db.transaction(factory) as session:
        info = review(
            session, new, kind=Kind.RESULT, result_code=code(1), fields={"trich_yeu": "Giấy chứng nhận (sửa)"}
        )
        assert info.result_code == code(1)
        sign_like(session, documents.load(session, new).doc, "b" * 64)
    with db.transaction(factory) as session:
        third = documents.correct(session, actor=ANH, doc_id=new)
    with db.transaction(factory) as session:
        chain = documents.versions(session, documents.load(session, third).doc)
        assert [(d.id, d.version) for d in chain] == [(old, 1), (new, 2), (third, 3)]
        assert trail(session, third)[0].detail["package_superseded"] == "b" * 64
        assert session.get(ResultCode, code(1)).document_id == third  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [S.CAPTURED, S.DIGITIZED, S.REVIEWED, S.FAILED])
def test_only_signed_documents_are_corrected(
    factory: sessionmaker[Session], originals: OriginalStore, state: DocState
) -> None:
    with db.transaction(factory) as session:
        doc_id = make_doc(session, originals, state=state).id
    with factory() as session, pytest.raises(IllegalTransition):
        documents.correct(session, actor=ANH, doc_id=doc_id)
    with factory() as session, pytest.raises(NotFound):
        documents.correct(session, actor=ANH, doc_id="missing")


def test_a_correction_cannot_free_the_code_its_predecessor_was_signed_with(
    factory: sessionmaker[Session], originals: OriginalStore
) -> None:
    old = _signed_result(factory, originals)
    with db.transaction(factory) as session:
        new = documents.correct(session, actor=ANH, doc_id=old)
        other = make_doc(session, originals).id
    with db.transaction(factory) as session:
        review(session, new, kind=Kind.RESULT, result_code=code(50))  # the officer corrects the code too
    with factory() as session:
        with pytest.raises(FormInvalid):  # code(1) is in the signed package of the old version
            review(session, other, kind=Kind.RESULT, result_code=code(1))
        session.rollback()


def test_reuse_attaches_a_digitized_document_to_another_dossier(
    factory: sessionmaker[Session], originals: OriginalStore
) -> None:
    with db.transaction(factory) as session:
        for c in (CODE, OTHER_CODE):
            dossiers.open_dossier(session, actor=ANH, form={"code": c})
        source = make_doc(session, originals, found=(Field("so_ky_hieu", "5/GKS", 0.9),))
        review(session, source.id, fields={"so_ky_hieu": "5/GKS", "co_quan_ban_hanh": "UBND xã"})
        captured = make_doc(session, originals, state=S.CAPTURED).id
    with db.transaction(factory) as session:
        copy_id, created = documents.reuse(session, actor=BINH, source_id=source.id, dossier_code=OTHER_CODE)
        assert created
    with db.transaction(factory) as session:
        copy = documents.load(session, copy_id)
        assert copy.doc.state == S.REVIEWED and copy.doc.dossier_code == OTHER_CODE
        assert copy.info is not None and copy.info.kind == Kind.COMPONENT and copy.info.reviewed_by == "binh.tv"
        assert copy.info.fields["so_ky_hieu"] == "5/GKS" and copy.doc.pdf_sha256 == source.pdf_sha256
        assert documents.reused_from(session, copy_id) == (source.id, CODE)
        assert [e.action for e in trail(session, copy_id)] == ["reuse", "reuse", "review"]
        assert session.scalar(select(func.count()).select_from(Reuse)) == 1
        # the same paper again: the dossier's own copy, nothing new
        assert documents.reuse(session, actor=BINH, source_id=source.id, dossier_code=OTHER_CODE) == (copy_id, False)
        assert documents.reuse(session, actor=BINH, source_id=source.id, dossier_code=CODE) == (source.id, False)
        with pytest.raises(IllegalTransition):
            documents.reuse(session, actor=BINH, source_id=captured, dossier_code=OTHER_CODE)
        with pytest.raises(NotFound):
            documents.reuse(session, actor=BINH, source_id=source.id, dossier_code="000.00.19.H12-230414-0009")


# --- 6. delivery --------------------------------------------------------------------------------------------
def test_receipts_rejections_and_resend(
    factory: sessionmaker[Session], originals: OriginalStore, tmp_path: Path
) -> None:
    package_id = "c" * 64
    package = tmp_path / "goi.asice"
    package.write_bytes(b"PK signed package")
    with db.transaction(factory) as session:
        docs = []
        for _ in range(2):
            doc = make_doc(session, originals)
            review(session, doc.id)
            sign_like(session, doc, package_id)
            docs.append(doc.id)
        item_id = outbox.enqueue(session, path=package, package_id=package_id, dossier_code=CODE).id
        assert delivery.receipt(session, package_id="d" * 64, accepted=True) == []  # not ours

    with db.transaction(factory) as session:
        with pytest.raises(OutboxError):  # only a refused package is sent again
            delivery.resend(session, actor=ANH, item_id=item_id)
        moved = delivery.receipt(session, package_id=package_id, accepted=False, reason="thiếu trích yếu")
        assert sorted(moved) == sorted(docs)
        outbox.get_item(session, item_id=item_id).state = outbox.PackageState.REJECTED  # as the sender does
    with db.transaction(factory) as session:
        assert delivery.receipt(session, package_id=package_id, accepted=False, reason="again") == []  # idempotent
        for doc_id in docs:
            loaded = documents.load(session, doc_id)
            assert loaded.doc.state == S.REJECTED and loaded.info.rejected_reason == "thiếu trích yếu"  # type: ignore[union-attr]
            last = trail(session, doc_id)[-1]
            assert (last.actor, last.action) == ("warehouse", "rejected")
            assert last.detail["reason"] == "thiếu trích yếu" and last.detail["package_id"] == package_id

    with db.transaction(factory) as session:
        item = delivery.resend(session, actor=ANH, item_id=item_id)
        assert item.state == outbox.PackageState.QUEUED and item.attempts == 0
    with db.transaction(factory) as session:
        for doc_id in docs:
            assert documents.load(session, doc_id).doc.state == S.QUEUED
            last = trail(session, doc_id)[-1]
            assert (last.actor, last.action, last.detail["to"]) == ("anh.nt", "resend", "queued")

    with db.transaction(factory) as session:
        moved = delivery.receipt(session, package_id=package_id, accepted=True, warehouse_id="KHO-1")
        assert sorted(moved) == sorted(docs)
    with db.transaction(factory) as session:
        assert delivery.receipt(session, package_id=package_id, accepted=True) == []  # idempotent
        assert delivery.receipt(session, package_id=package_id, accepted=False) == []  # delivered is final
        for doc_id in docs:
            loaded = documents.load(session, doc_id)
            assert loaded.doc.state == S.DELIVERED and loaded.info is not None
            assert loaded.info.delivered_at is not None and loaded.info.rejected_reason is None
            assert trail(session, doc_id)[-1].detail["warehouse_id"] == "KHO-1"
        (tracked,) = delivery.tracking(session)
        assert tracked.item.id == item_id
        assert sorted(m.document_id for m in tracked.documents) == sorted(docs)
        assert {m.state for m in tracked.documents} == {"delivered"}


# --- 7. the audit trail -------------------------------------------------------------------------------------
def test_the_audit_trail_is_append_only(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    with db.transaction(factory) as session:
        dossiers.open_dossier(session, actor=ANH, form={"code": CODE, "owner_name": "Lê Văn Cường"})
        doc_id = make_doc(session, originals).id
        review(session, doc_id, fields={"trich_yeu": "Tờ khai, có dấu phẩy"})
        n = events(session)
    with factory() as session:
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(update(AuditEvent).values(actor="mallory"))
        session.rollback()
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(delete(AuditEvent).where(AuditEvent.document_id == doc_id))
        session.rollback()
        first = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
        assert first is not None
        first.detail = {"rewritten": True}
        with pytest.raises(DBAPIError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.scalars(select(AuditEvent)).first())
        with pytest.raises(DBAPIError, match="append-only"):
            session.flush()
        session.rollback()
    with db.transaction(factory) as session:
        assert events(session) == n
        entries = audit.for_dossier(session, dossier_code=CODE)
        assert len(entries) == n  # the dossier's own events and its documents'
        assert entries[0].action == "open_dossier" and entries[0].document_id is None
        text = audit.to_csv(entries)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == audit.CSV_HEADER
    assert len(rows) == n + 1 and all(len(r) == len(audit.CSV_HEADER) for r in rows)
    assert rows[1][2] == audit.ACTION_LABELS["open_dossier"] and "Lê Văn Cường" in rows[1][5]
    assert any("Tờ khai, có dấu phẩy" in r[5] for r in rows)  # quoted, not split
    datetime.strptime(rows[1][0], "%d/%m/%Y %H:%M:%S")  # local time, as printed


# --- 8. indicators ------------------------------------------------------------------------------------------
def _local(y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    """A local (Asia/Ho_Chi_Minh) moment, stored in UTC as the appliance stores every time."""
    return datetime(y, m, d, hh, mm, tzinfo=indicators.LOCAL).astimezone(UTC)


def test_a_month_is_the_sum_of_its_days(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    def dossier(session: Session, day: int, seq: int, when: datetime, *, backlog: bool = False) -> str:
        c = f"000.00.19.H12-2603{day:02d}-{seq:04d}"
        d = dossiers.open_dossier(session, actor=ANH, form={"code": c})
        d.created_at, d.backlog = when, backlog
        return c

    def doc(session: Session, dossier_code: str | None, state: DocState = S.DIGITIZED, **kw: object) -> Document:
        made = make_doc(session, originals, state=state, dossier_code=dossier_code, **kw)  # type: ignore[arg-type]
        return made

    def result(session: Session, dossier_code: str, package: str) -> Document:
        made = doc(session, dossier_code)
        review(session, made.id, kind=Kind.RESULT, auto_code=True)
        sign_like(session, made, package)
        return made

    with db.transaction(factory) as session:
        # 1 March, 00:30 local (still 28 February in UTC): a component, and a result corrected once
        d1 = dossier(session, 1, 1, _local(2026, 3, 1, 0, 30))
        doc(session, d1)
        first = result(session, d1, "1" * 64)
        first.state = S.DELIVERED
        # 1 March, afternoon: a refused result and a component still being digitized
        d2 = dossier(session, 1, 2, _local(2026, 3, 1, 15, 0))
        result(session, d2, "2" * 64).state = S.REJECTED
        doc(session, d2, state=S.CAPTURED)
        # 17 March, late evening: a reused paper and a delivered result
        d3 = dossier(session, 17, 3, _local(2026, 3, 17, 23, 45))
        source = doc(session, d1)
        result(session, d3, "3" * 64).state = S.DELIVERED
        # 31 March, 23:30 local (16:30 UTC): a digitized page nobody classified yet
        d5 = dossier(session, 31, 5, _local(2026, 3, 31, 23, 30))
        doc(session, d5)
        # 28 February, 23:59 local: last month
        d4 = dossier(session, 28, 4, _local(2026, 2, 28, 23, 59))
        result(session, d4, "4" * 64)
        # backlog work: a dossier of old papers (not received) and an old result digitized on 10 March
        dossier(session, 10, 6, _local(2026, 3, 10, 9, 0), backlog=True)
        old = doc(session, None, backlog=True)
        old.created_at = _local(2026, 3, 10, 9, 5)
    with db.transaction(factory) as session:
        documents.reuse(session, actor=ANH, source_id=source.id, dossier_code=d3)
        new = documents.correct(session, actor=ANH, doc_id=first.id)  # the correction keeps the code
        review(session, new, kind=Kind.RESULT, result_code=code(1))
        sign_like(session, documents.load(session, new).doc, "5" * 64)
        backlog_fix = documents.correct(session, actor=ANH, doc_id=_backlog_signed(session, old.id))
        session.get(Document, backlog_fix).created_at = _local(2026, 3, 12, 8, 0)  # type: ignore[union-attr]

    with db.transaction(factory) as session:
        march_days = [date(2026, 3, 1) + timedelta(days=i) for i in range(31)]
        days = [indicators.for_day(session, d) for d in march_days]
        summed = indicators.Indicators(*(sum(col) for col in zip(*(astuple(d) for d in days), strict=True)))
        months = dict(indicators.months(session, now=datetime(2026, 4, 15, tzinfo=UTC)))
        assert list(months) == ["2026-04", "2026-03", "2026-02"]
        assert (
            months["2026-03"]
            == summed
            == indicators.Indicators(
                received=4, components_digitized=3, results_electronic=2, reused=1, backlog_digitized=1
            )
        )
        assert days[0] == indicators.Indicators(2, 1, 1, 0, 0)  # d1's result and its correction: once
        assert days[16] == indicators.Indicators(1, 1, 1, 1, 0)
        assert days[9].backlog_digitized == 1 and days[11].backlog_digitized == 0  # corrections excluded
        assert months["2026-02"] == indicators.Indicators(1, 0, 1, 0, 0)
        assert months["2026-04"] == indicators.Indicators(0, 0, 0, 0, 0)
        assert months["2026-03"].digitized_rate == 75.0 and months["2026-03"].results_rate == 50.0
        assert months["2026-04"].digitized_rate is None


def _backlog_signed(session: Session, doc_id: str) -> str:
    review(session, doc_id, kind=Kind.RESULT, auto_code=True, backlog=True)
    sign_like(session, documents.load(session, doc_id).doc, "6" * 64)
    return doc_id


# --- dossiers -------------------------------------------------------------------------------------------------
def test_open_dossier_checks_the_form_and_opens_once(factory: sessionmaker[Session], originals: OriginalStore) -> None:
    clean, errors = dossiers.check_form(
        {"code": "000.00.19.H12-231399-0007", "tthc_code": "9.99", "owner_id": "12", "appointment": "30/02/2024"}
    )
    assert set(errors) == {"code", "tthc_code", "owner_id", "appointment"}
    assert set(dossiers.check_form({})[1]) == {"code"}
    with factory() as session, pytest.raises(FormInvalid) as info:
        dossiers.open_dossier(session, actor=ANH, form={"code": "x"})
    assert set(info.value.errors) == {"code"}

    form = {"code": f" {CODE} ", "tthc_code": "1.001234", "owner_name": "Lê Văn Cường", "appointment": "05/07/2026"}
    with db.transaction(factory) as session:
        first = dossiers.open_dossier(session, actor=ANH, form=form)
        again = dossiers.open_dossier(session, actor=BINH, form=form)
        assert again is first and first.code == CODE and first.created_by == "anh.nt"
        assert [e.action for e in audit.for_dossier(session, dossier_code=CODE)] == ["open_dossier"]
        assert dossiers.get(session, CODE).tthc_code == "1.001234"
        with pytest.raises(NotFound):
            dossiers.get(session, OTHER_CODE)
        older = make_doc(session, originals)
        older.created_at = datetime.now(UTC) - timedelta(hours=1)
        newer = make_doc(session, originals, pages=2)
        review(session, newer.id, kind=Kind.PROCESSING)
        backlog = make_doc(session, originals, dossier_code=None, backlog=True)
        assert [r.code for r in dossiers.recent(session)] == [CODE]
    with db.transaction(factory) as session:
        listed = dossiers.documents(session, dossier_code=CODE)
        assert [(d.id, d.state, d.kind, len(d.pages)) for d in listed] == [
            (newer.id, "reviewed", "processing", 2),
            (older.id, "digitized", None, 1),
        ]
        assert [d.id for d in dossiers.documents(session, dossier_code=None, backlog=True)] == [backlog.id]
        year = datetime.now(UTC).year
        assert dossiers.backlog_progress(session, year=year) == (None, 1)
        plan = dossiers.set_plan(session, actor=ANH, year=year, target=500, note=" kế hoạch ")
        assert (plan.target, plan.note) == (500, "kế hoạch")
    with db.transaction(factory) as session:
        plan = dossiers.set_plan(session, actor=BINH, year=year, target=600, note="")
        campaign, done = dossiers.backlog_progress(session, year=year)
        assert campaign is not None and (campaign.target, campaign.updated_by, done) == (600, "binh.tv", 1)


# --- 9. the recorded capture path and its resume (real tesseract) --------------------------------------------
DPI = 100
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def words_page(text: str, dpi: int = DPI) -> np.ndarray:
    """A small grey A4 page with a few printed words (tesseract is quick on it)."""
    image = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 22) if FONT.exists() else ImageFont.load_default()
    for i, line in enumerate((text, "Ủy ban nhân dân xã", "Giấy xác nhận")):
        draw.text((80, 120 + 50 * i), line, fill=0, font=font)
    return np.asarray(image)


def separator_sheet(text: str = "TACH", dpi: int = DPI) -> np.ndarray:
    """A white A4 sheet with one large QR code in the middle."""
    import zxingcpp

    symbol = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=8))
    symbol = symbol if symbol.ndim == 2 else symbol[..., 0]
    page = np.full((round(11.69 * dpi), round(8.27 * dpi)), 255, np.uint8)
    h, w = symbol.shape
    y, x = (page.shape[0] - h) // 2, (page.shape[1] - w) // 2
    page[y : y + h, x : x + w] = symbol
    return page


def raw(image: np.ndarray, label: str) -> RawPage:
    return RawPage(image=image, dpi=DPI, source=Source.SCANNER, label=label)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", ocr={"workers": 2})


@pytest.fixture
def storage(settings: Settings) -> pipeline.Storage:
    return pipeline.storage(settings)


def _states(store: pipeline.Storage, ids: list[str]) -> list[str]:
    with db.transaction(store.factory) as session:
        return [documents.load(session, d).doc.state for d in ids]


def test_capture_splits_at_separator_sheets(storage: pipeline.Storage) -> None:
    sheets = [
        raw(words_page("Trang một"), "ADF 1"),
        raw(separator_sheet("TÁCH hồ sơ"), "ADF 2"),
        raw(words_page("Trang hai"), "ADF 3"),
        raw(words_page("Trang ba"), "ADF 4"),
        raw(separator_sheet("PATCH T"), "ADF 5"),
        raw(separator_sheet("TACH"), "ADF 6"),  # two in a row, then a trailing one: no empty documents
    ]
    done = pipeline.capture(
        sheets,
        storage,
        source="scanner",
        actor=ANH,
        dossier_code=CODE,
        split_prefixes=pipeline.SEPARATOR_PREFIXES,
        batch="lo-1",
    )
    assert [p.positions for p in done.parts] == [(0,), (2, 3)] and done.separators == (1, 4, 5)
    with db.transaction(storage.factory) as session:
        for part in done.parts:
            loaded = documents.load(session, part.document_id)
            assert loaded.doc.state == S.CAPTURED and loaded.doc.dossier_code == CODE
            assert loaded.doc.digitizer == ANH.full_name
            assert [p.label for p in loaded.doc.pages] == [sheets[i].label for i in part.positions]
            assert [(e.actor, e.action, e.detail["batch"]) for e in trail(session, part.document_id)] == [
                ("anh.nt", "capture", "lo-1")
            ]
        seps = session.scalars(select(Separator).order_by(Separator.position)).all()
        assert [(s.position, s.text, s.before_document_id) for s in seps] == [
            (1, "TÁCH hồ sơ", done.parts[1].document_id),
            (4, "PATCH T", None),
            (5, "TACH", None),
        ]
        assert all(s.original_sha256 in storage.originals for s in seps)  # kept, though in no document


@pytest.mark.tesseract
@pytest.mark.slow
def test_resume_finishes_what_was_captured_and_marks_what_cannot_be(
    tesseract: str, settings: Settings, storage: pipeline.Storage
) -> None:
    ids = [
        pipeline.capture([raw(words_page(f"Tài liệu {i}"), f"p{i}")], storage, source="scanner", actor=ANH).parts[0]
        for i in range(3)
    ]
    doc_ids = [p.document_id for p in ids]
    with db.transaction(storage.factory) as session:
        shas = [documents.load(session, d).doc.pages[0].original_sha256 for d in doc_ids]
    storage.originals.path(shas[1]).unlink()  # lost
    storage.originals.path(shas[2]).write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt

    opts = pipeline.options_from(settings)
    resumed = pipeline.resume(settings, opts)
    assert resumed.finished == (doc_ids[0],)
    assert resumed.failed == ((doc_ids[1], "storage_failed"), (doc_ids[2], "storage_failed"))
    assert _states(storage, doc_ids) == ["digitized", "failed", "failed"]
    with db.transaction(storage.factory) as session:
        good = documents.load(session, doc_ids[0])
        assert good.doc.pdf_path and Path(good.doc.pdf_path).read_bytes().startswith(b"%PDF")
        assert good.info is not None and "xác nhận" in good.info.text.lower()
        last = trail(session, doc_ids[0])[-1]
        assert (last.actor, last.action, last.detail["from"]) == ("system", "digitized", "captured")
        for doc_id in doc_ids[1:]:
            bad = documents.load(session, doc_id).doc
            assert bad.error_code == "storage_failed" and bad.error_detail
            assert [(e.action, e.detail.get("error")) for e in trail(session, doc_id)][-1] == (
                "failed",
                "storage_failed",
            )
        # the officer scans the lost page again: the document is redone at the next resume
        page_id = documents.load(session, doc_ids[1]).doc.pages[0].id
        documents.replace_page(
            session,
            storage.originals,
            actor=ANH,
            doc_id=doc_ids[1],
            page_id=page_id,
            raw=raw(words_page("Tài liệu 1"), "lại"),
        )
    assert pipeline.resume(settings, opts).finished == (doc_ids[1],)  # the other failed one stays failed
    assert _states(storage, doc_ids) == ["digitized", "digitized", "failed"]
    with db.transaction(storage.factory) as session:
        assert documents.load(session, doc_ids[1]).doc.error_code is None


def _png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path, dpi=(DPI, DPI))
    return path


@pytest.mark.tesseract
@pytest.mark.slow
def test_pending_intakes_are_resumed_and_their_folders_removed(
    tesseract: str, settings: Settings, storage: pipeline.Storage, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    files = [
        ("Đơn đề nghị.png", _png(words_page("Đơn đề nghị"), upload / "a.png")),
        ("phân cách.png", _png(separator_sheet("TACH"), upload / "b.png")),
        ("CCCD.png", _png(words_page("Căn cước"), upload / "c.png")),
    ]
    good = pipeline.receive_files(storage, files, actor=BINH, dossier_code=CODE)
    junk = upload / "hong.png"
    junk.write_bytes(b"this is no image")
    bad = pipeline.receive_files(storage, [("hỏng.png", junk)], actor=BINH, dossier_code=CODE)
    with db.transaction(storage.factory) as session:
        intakes = {i.id: i for i in session.scalars(select(Intake))}
        assert {i.state for i in intakes.values()} == {"pending"}
        folder = Path(intakes[good].folder)
        assert sorted(p.name for p in folder.iterdir()) == ["000.png", "001.png", "002.png"]
    assert not any(path.exists() for _name, path in files)  # moved, not copied

    resumed = pipeline.resume(settings, pipeline.options_from(settings))  # the service restarted

    assert [i for i, _code in resumed.failed] == [bad]
    assert len(resumed.finished) == 2
    with db.transaction(storage.factory) as session:
        intakes = {i.id: i for i in session.scalars(select(Intake))}
        assert intakes[good].state == "done" and intakes[bad].state == "failed" and intakes[bad].error_code
        assert not Path(intakes[good].folder).exists() and not Path(intakes[bad].folder).exists()
        made = [documents.load(session, d).doc for d in resumed.finished]
        assert sorted([p.label for p in d.pages] for d in made) == [["CCCD.png"], ["Đơn đề nghị.png"]]
        assert all(d.state == S.DIGITIZED and d.dossier_code == CODE and d.digitizer == BINH.full_name for d in made)
        assert trail(session, made[0].id)[0].actor == "binh.tv"
        assert session.scalar(select(func.count()).select_from(Separator).where(Separator.batch == good)) == 1
    assert pipeline.resume(settings, pipeline.options_from(settings)) == pipeline.Resumed((), ())  # nothing left


@pytest.mark.tesseract
@pytest.mark.slow
def test_resume_finishes_the_documents_of_a_partly_bad_intake(
    tesseract: str, settings: Settings, storage: pipeline.Storage, tmp_path: Path
) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    junk = upload / "b.png"
    junk.write_bytes(b"this is no image")
    files = [("tốt.png", _png(words_page("Tờ khai"), upload / "a.png")), ("hỏng.png", junk)]
    intake = pipeline.receive_files(storage, files, actor=BINH, dossier_code=CODE)
    resumed = pipeline.resume(settings, pipeline.options_from(settings))
    assert [i for i, _code in resumed.failed] == [intake]
    with db.transaction(storage.factory) as session:
        (doc,) = session.scalars(select(Document)).all()  # the good file was recorded
        assert Path(session.get(Intake, intake).folder).exists() is False  # type: ignore[union-attr]
        assert doc.state == S.DIGITIZED  # fails: still captured, and edits on it are refused as busy
