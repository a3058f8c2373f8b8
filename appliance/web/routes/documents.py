"""One document: its pages and images, the review form, page edits, reuse, corrections and its audit trail.

Every change is a call to :mod:`appliance.documents`; a refusal from the core (frozen, busy, invalid) is
shown on the document page as the officer's sentence."""

from __future__ import annotations

import io
import logging
import re
import shutil
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image
from sqlalchemy import bindparam, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as FormFile

from appliance import audit, db, diskspace, documents, dossiers, pipeline, signing, units, workflow
from appliance.capture import ScanRequest
from appliance.errors import ApplianceError, DiskFull, FormInvalid, NotFound
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.model import RawPage
from appliance.originals import OriginalStore
from appliance.records import Kind
from appliance.web.context import Ctx
from appliance.web.routes.capture import (
    file_error,
    load_first,
    remember_nonce,
    room_refused,
    save_uploads,
    scanner_info,
    scanner_presets,
    seen_nonce,
)
from appliance.web.routes.common import Checked, Officer, RowId, ctx_of, message_page, refused_text, render, see_other

log = logging.getLogger(__name__)
router = APIRouter()
_DOC_ID = re.compile(r"[0-9a-f-]{36}")


def _checked_id(doc_id: str) -> str:
    if not _DOC_ID.fullmatch(doc_id):
        raise HTTPException(404)
    return doc_id


def _loaded(ctx: Ctx, doc_id: str) -> documents.Loaded:
    with ctx.tx() as session:
        try:
            return documents.load(session, _checked_id(doc_id))
        except NotFound:
            raise HTTPException(404) from None


def _context(ctx: Ctx, doc_id: str, page: int) -> dict[str, Any]:
    with ctx.tx() as session:
        try:
            loaded = documents.load(session, _checked_id(doc_id))
        except NotFound:
            raise HTTPException(404) from None
        doc = loaded.doc
        chain = documents.versions(session, doc)
        trail = audit.for_documents(session, document_ids=[d.id for d in chain])
        reused_from = documents.reused_from(session, doc.id)
        current = (loaded.info.current_unit or "") if loaded.info else ""
        unit_names = units.names(session, current.split(","))
        units_now = [(c, unit_names.get(c, c)) for c in current.split(",") if c]
    page = min(max(page, 0), max(0, doc.page_count - 1))
    running = ctx.jobs.running_for(doc.id)
    unsure = documents.review_words(doc)
    values = dict(loaded.info.fields) if loaded.info else {}
    frozen = workflow.frozen(doc.state) or bool(doc.superseded_by)
    return {
        "doc": doc,
        "info": loaded.info,
        "dossier": loaded.dossier,
        "page_index": page,
        "review_fields": documents.REVIEW_FIELDS,
        "values": values,
        "unsure_page": [w for w in unsure if w.page == page],
        "unsure_pages": sorted({w.page for w in unsure}),
        "doubtful": documents.doubtful_fields(values, unsure),
        "kinds": [(k.value, k) for k in Kind],
        "running": running,
        "editable": doc.state in workflow.PAGES_EDITABLE and not frozen and running is None,
        "reviewable": doc.state in {db.DocState.DIGITIZED, db.DocState.REVIEWED} and not frozen,
        "frozen": frozen,
        "correctable": doc.state in workflow.CORRECTABLE and not doc.superseded_by,
        "versions": chain,
        "trail": trail,
        "pattern": ctx.settings.sign.result_code_pattern,
        "presets": [r for r in scanner_presets(ctx) if not r.preset.batch],
        "camera": ctx.camera is not None,
        "reused_from": reused_from,
        "units_now": units_now,
        "signing": next((e for e in reversed(trail) if e.action == "signed" and e.document_id == doc.id), None),
    }


def _document_page(request: Request, ctx: Ctx, doc_id: str, *, status_code: int = 200, **more: Any) -> HTMLResponse:
    context = _context(ctx, doc_id, 0) | more
    context.setdefault("errors", {})
    return render(request, "document.html", status_code=status_code, **context)


def _refused(request: Request, ctx: Ctx, doc_id: str, err: ApplianceError) -> HTMLResponse:
    status = 400 if isinstance(err, FormInvalid) else 409
    return _document_page(request, ctx, doc_id, status_code=status, errors={"pages": refused_text(err)})


@router.get("/documents/{doc_id}", response_class=HTMLResponse)
def document_page(
    request: Request, who: Officer, doc_id: str, page: Annotated[int, Query(ge=0, le=10_000)] = 0
) -> HTMLResponse:
    ctx = ctx_of(request)
    return render(request, "document.html", errors={}, **_context(ctx, doc_id, page))


@router.get("/documents/{doc_id}/audit.csv")
def document_audit(request: Request, who: Officer, doc_id: str) -> Response:
    ctx = ctx_of(request)
    with ctx.tx() as session:
        try:
            loaded = documents.load(session, _checked_id(doc_id))
        except NotFound:
            raise HTTPException(404) from None
        chain = documents.versions(session, loaded.doc)
        entries = audit.for_documents(session, document_ids=[d.id for d in chain])
    return Response(
        audit.to_csv(entries),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="nhat-ky-tai-lieu-{doc_id[:8]}.csv"'},
    )


# --- page images -------------------------------------------------------------------------------------
def _cache_key(doc_id: str, pdf_sha256: str | None, original_sha256: str, index: int, width: int) -> str:
    """The cached image's name: a new PDF or a changed original (rotated, replaced) is a new name."""
    return f"{pdf_sha256 or 'raw'}-{doc_id}-{index}-{original_sha256[:16]}-{width}"


def _render_page_image(ctx: Ctx, doc: db.Document, index: int, width: int) -> bytes:
    """A JPEG of one page: from the archived PDF when there is one, else from the original."""
    key = _cache_key(doc.id, doc.pdf_sha256, doc.pages[index].original_sha256, index, width)
    cached = ctx.cache_dir / f"{key}.jpg"
    if cached.exists():
        return cached.read_bytes()
    pil: Image.Image | None = None
    if doc.pdf_path and Path(doc.pdf_path).exists() and index < doc.page_count and doc.state != db.DocState.CAPTURED:
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(doc.pdf_path)
        try:
            if index < len(pdf):
                pg = pdf[index]
                pil = pg.render(scale=width / pg.get_width()).to_pil()
                pg.close()
        finally:
            pdf.close()
    if pil is None:
        row = doc.pages[index]
        image, _dpi = OriginalStore(ctx.settings.originals_dir).get_image(row.original_sha256)
        pil = Image.fromarray(np.ascontiguousarray(image))
        pil.thumbnail((width, width * 2))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=80)
    data = buf.getvalue()
    tmp = cached.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


_PAGE_KEY = (
    select(db.Document.pdf_sha256, db.Page.original_sha256, db.Page.id)
    .join(db.Page, db.Page.document_id == db.Document.id)
    .where(db.Document.id == bindparam("doc_id"), db.Page.index == bindparam("index"))
)


def _image_tag(pdf_sha256: str | None, original_sha256: str, page_id: int, width: int) -> str:
    """The ETag of a page image: changes whenever the archived PDF or the page's original does."""
    return f'"{(pdf_sha256 or "raw")[:16]}-{original_sha256[:16]}-{page_id}-{width}"'


@router.get("/documents/{doc_id}/pages/{index}.jpg")
def page_image(
    request: Request, who: Officer, doc_id: str, index: RowId, w: Annotated[int, Query(ge=1, le=10_000)] = 900
) -> Response:
    """A page image, rendered once and then served from the disk cache; the browser keeps it for
    10 minutes and afterwards asks again with If-None-Match (answered 304 without reading the file)."""
    ctx = ctx_of(request)
    _checked_id(doc_id)
    with ctx.tx() as session:  # one small indexed read decides the cache key
        key = session.execute(_PAGE_KEY, {"doc_id": doc_id, "index": index}).first()
    if key is None:
        raise HTTPException(404)
    width = 180 if w <= 200 else 900
    tag = _image_tag(key.pdf_sha256, key.original_sha256, key.id, width)
    headers = {"Cache-Control": "private, max-age=600", "ETag": tag}
    if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    cached = ctx.cache_dir / f"{_cache_key(doc_id, key.pdf_sha256, key.original_sha256, index, width)}.jpg"
    try:
        data = cached.read_bytes()
    except FileNotFoundError:
        doc = _loaded(ctx, doc_id).doc
        if not 0 <= index < len(doc.pages):
            raise HTTPException(404) from None
        data = _render_page_image(ctx, doc, index, width)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get("/documents/{doc_id}/pdf")
def document_pdf(request: Request, who: Officer, doc_id: str) -> Response:
    ctx = ctx_of(request)
    loaded = _loaded(ctx, doc_id)
    doc, info = loaded.doc, loaded.info
    path = info.signed_path if info and info.signed_path else doc.pdf_path
    if not path or not Path(path).exists():
        raise HTTPException(404)
    name = f"{doc.dossier_code or 'tai-lieu'}-{doc.id[:8]}" + (f"-ban-{doc.version}" if doc.version > 1 else "")
    return FileResponse(path, media_type="application/pdf", filename=f"{name}.pdf")


# --- changes -------------------------------------------------------------------------------------------
def _redo(ctx: Ctx, doc_ids: list[str], who: Checked) -> str:
    with ctx.tx() as session:
        first = documents.load(session, doc_ids[0])
    backlog = bool(first.info and first.info.backlog)
    job = ctx.jobs.redo(*doc_ids, dossier_code=first.doc.dossier_code, user=who.username, backlog=backlog)
    return job.id


@router.post("/documents/{doc_id}/pages/{page_id}/{action}", response_model=None)
def edit_page(request: Request, who: Checked, doc_id: str, page_id: RowId, action: str) -> Response:
    """Rotate, move or delete one page, then digitize the document again."""
    ctx = ctx_of(request)
    if action not in documents.PAGE_ACTIONS:
        raise HTTPException(404)
    _checked_id(doc_id)
    if ctx.jobs.running_for(doc_id):
        return _document_page(request, ctx, doc_id, status_code=409, errors={"pages": MESSAGES_VI["document_busy"]})
    try:
        with ctx.tx() as session:
            documents.edit_page(
                session, ctx.store.originals, actor=who.actor, doc_id=doc_id, page_id=page_id, action=action
            )
    except NotFound:
        raise HTTPException(404) from None
    except ApplianceError as err:
        return _refused(request, ctx, doc_id, err)
    _redo(ctx, [doc_id], who)
    return see_other(f"/documents/{doc_id}?ok=redo")


def _review_form(form: Any) -> documents.ReviewForm:
    return documents.ReviewForm(
        kind=str(form.get("kind", "") or ""),
        fields={name: str(form.get(name, "") or "").strip()[:1000] for name in documents.FIELD_NAMES},
        result_code=str(form.get("result_code", "") or "").strip()[:100],
        auto_code=form.get("auto_code") == "1",
        valid_until=str(form.get("valid_until", "") or "").strip()[:40],
        backlog=form.get("backlog") == "1",
        printed_unit=str(form.get("printed_unit", "") or "").strip()[:300],
    )


@router.post("/documents/{doc_id}/review", response_model=None)
async def review(request: Request, who: Checked, doc_id: str) -> Response:
    ctx = ctx_of(request)
    _checked_id(doc_id)
    wanted = _review_form(await request.form())
    try:
        with ctx.tx() as session:
            documents.review(session, actor=who.actor, doc_id=doc_id, form=wanted, sign=ctx.settings.sign)
    except NotFound:
        raise HTTPException(404) from None
    except FormInvalid as err:
        return _document_page(
            request,
            ctx,
            doc_id,
            status_code=400,
            errors=err.errors,
            values=dict(wanted.fields),
            form_kind=wanted.kind,
            form_code=wanted.result_code,
            form_valid=wanted.valid_until,
            form_printed=wanted.printed_unit,
        )
    except ApplianceError as err:
        return _refused(request, ctx, doc_id, err)
    return see_other(f"/documents/{doc_id}?ok=saved")


@router.post("/documents/{doc_id}/correct", response_model=None)
def correct(request: Request, who: Checked, doc_id: str) -> Response:
    """A correction of a signed document: a new version to review and sign; the old one stays, superseded."""
    ctx = ctx_of(request)
    _checked_id(doc_id)
    try:
        with ctx.tx() as session:
            new_id = documents.correct(session, actor=who.actor, doc_id=doc_id)
    except NotFound:
        raise HTTPException(404) from None
    except ApplianceError as err:
        return _refused(request, ctx, doc_id, err)
    return see_other(f"/documents/{new_id}?ok=corrected")


# --- rescan one page, split a document ---------------------------------------------------------------
class _Refused(Exception):
    """A request the officer can fix; the text says how."""


def _one_page(request: Request, ctx: Ctx, how: str, preset: str) -> RawPage:
    """A single fresh page from the scanner (flatbed, first page only) or the document camera."""
    if how == "camera":
        if ctx.camera is None:
            raise HTTPException(404)
        return ctx.camera.capture()
    presets, problem = scanner_info(request).get(ctx)
    ready = next((r for r in presets if r.preset.key == preset), None) or next(
        (r for r in presets if not r.preset.batch), None
    )
    if ready is None or ctx.scanner is None:
        raise _Refused(problem or "Chế độ quét này không có trên máy quét.")
    one = ScanRequest(
        device=ready.device, resolution=ctx.settings.scanner.resolution, mode=ready.mode, source=ready.source
    )
    with closing(iter(ctx.scanner.scan(one))) as pages:  # type: ignore[type-var]
        for raw in pages:
            return raw
    raise _Refused(MESSAGES_VI["feeder_empty"])


async def _replacement(request: Request, ctx: Ctx, form: Any, how: str) -> RawPage:
    if how == "file":
        upload = form.get("file")
        if not isinstance(upload, FormFile) or not upload.filename:
            raise _Refused("Hãy chọn tệp ảnh của trang thay thế.")
        folder, saved, error = await save_uploads(ctx, [upload])  # type: ignore[list-item]
        try:
            if error is not None:
                raise _Refused(error)
            try:
                loaded = await run_in_threadpool(load_first, ctx, saved, 2)  # a second page is refused below
            except ApplianceError as err:
                raise _Refused(file_error(err)) from err
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if len(loaded) != 1:
            raise _Refused("Tệp thay thế phải có đúng một trang.")
        return loaded[0]
    try:
        return await run_in_threadpool(_one_page, request, ctx, how, str(form.get("preset", "") or ""))
    except ApplianceError as err:
        raise _Refused(message_for(err)) from err


def _replace(ctx: Ctx, who: Checked, doc_id: str, page_id: int, raw: RawPage) -> None:
    """Store the new page's original and record it (blocking: PNG encoding and a write transaction); when
    recording fails, the original this call stored goes again (no original without a row)."""
    originals = ctx.store.originals
    try:
        with ctx.tx() as session:
            documents.replace_page(session, originals, actor=who.actor, doc_id=doc_id, page_id=page_id, raw=raw)
    except Exception as err:
        pipeline.discard_originals(ctx.store, originals.created)
        if diskspace.is_disk_full(err) and not isinstance(err, DiskFull):
            raise DiskFull(f"recording the replaced page failed: {err}") from err
        raise


@router.post("/documents/{doc_id}/replace/{page_id}", response_model=None)
async def replace_page(request: Request, who: Checked, doc_id: str, page_id: RowId) -> Response:
    """Rescan one page (scanner or camera) or replace it by an uploaded image; it keeps its place."""
    ctx = ctx_of(request)
    form = await request.form()
    how = str(form.get("how", "scan") or "scan")
    doc = _loaded(ctx, doc_id).doc
    if not any(p.id == page_id for p in doc.pages):
        raise HTTPException(404)
    if workflow.frozen(doc.state) or doc.state not in workflow.PAGES_EDITABLE or ctx.jobs.running_for(doc_id):
        code = "document_frozen" if workflow.frozen(doc.state) else "document_busy"
        return _document_page(request, ctx, doc_id, status_code=409, errors={"pages": MESSAGES_VI[code]})
    full = room_refused(ctx)  # before a page is scanned or a file stored
    if full is not None:
        return _document_page(request, ctx, doc_id, status_code=507, errors={"pages": full})
    try:
        raw = await _replacement(request, ctx, form, how)
    except _Refused as refused:
        return _document_page(request, ctx, doc_id, status_code=400, errors={"pages": str(refused)})
    try:
        await run_in_threadpool(_replace, ctx, who, doc_id, page_id, raw)
    except ApplianceError as err:
        return _refused(request, ctx, doc_id, err)
    log.info("page replaced how=%s", how, extra={"doc_id": doc_id})
    _redo(ctx, [doc_id], who)
    return see_other(f"/documents/{doc_id}?ok=redo")


@router.post("/documents/{doc_id}/split", response_model=None)
async def split_document(request: Request, who: Checked, doc_id: str) -> Response:
    """Cut the document before each chosen page: every part becomes its own document (same originals)."""
    ctx = ctx_of(request)
    _checked_id(doc_id)
    form = await request.form()
    chosen = [int(v) for v in form.getlist("at") if isinstance(v, str) and v.isdigit()]
    if ctx.jobs.running_for(doc_id):
        return _document_page(request, ctx, doc_id, status_code=409, errors={"pages": MESSAGES_VI["document_busy"]})
    try:
        with ctx.tx() as session:
            ids = documents.split(session, actor=who.actor, doc_id=doc_id, page_ids=chosen)
            code = documents.load(session, doc_id).doc.dossier_code
    except NotFound:
        raise HTTPException(404) from None
    except ApplianceError as err:
        return _refused(request, ctx, doc_id, err)
    log.info("document split into %d parts", len(ids), extra={"doc_id": doc_id})
    job_id = _redo(ctx, ids, who)
    back = f"/dossiers/{code}" if code else "/backlog"
    return see_other(f"{back}?ok=split#job-{job_id}")


# --- reuse of already digitized documents (Decision 766) ----------------------------------------------
@router.post("/dossiers/{code}/reuse", response_model=None)
def reuse_document(
    request: Request,
    who: Checked,
    code: str,
    doc: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    """Attach an already digitized document to this dossier instead of scanning the paper again."""
    ctx = ctx_of(request)
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    try:
        with ctx.tx() as session:
            found = dossiers.get(session, code).code
            new_id, created = documents.reuse(session, actor=who.actor, source_id=_checked_id(doc), dossier_code=found)
    except NotFound:
        raise HTTPException(404) from None
    except ApplianceError:
        return message_page(
            request, "Không dùng lại được", "Tài liệu này chưa số hóa xong nên chưa dùng lại được.", 400
        )
    target = f"/documents/{new_id}?ok={'reused' if created else 'have'}"
    if created:
        log.info("document reused", extra={"doc_id": new_id})
        remember_nonce(ctx, nonce, target)
    return see_other(target)


# --- verification (Circular 15/2025: shown in Vietnamese, printable for the citizen) --------------------
def _signed_path(ctx: Ctx, doc_id: str) -> Path:
    info = _loaded(ctx, doc_id).info
    if info is None or not info.signed_path or not Path(info.signed_path).exists():
        raise HTTPException(404)
    return Path(info.signed_path)


@router.get("/documents/{doc_id}/verify", response_class=HTMLResponse)
async def verify_document(request: Request, who: Officer, doc_id: str) -> HTMLResponse:
    from appliance.sign.report import verification_lines

    ctx = ctx_of(request)
    path = _signed_path(ctx, doc_id)
    report = await run_in_threadpool(signing.verify_signed, ctx.settings, path)
    return render(request, "verify.html", doc_id=doc_id, ok=report.ok, lines=verification_lines(report, "vi"))


@router.get("/documents/{doc_id}/verify.pdf")
async def verify_report(request: Request, who: Officer, doc_id: str) -> Response:
    from appliance.sign.report import report_pdf

    ctx = ctx_of(request)
    path = _signed_path(ctx, doc_id)
    report = await run_in_threadpool(signing.verify_signed, ctx.settings, path)
    data = await run_in_threadpool(report_pdf, report, "vi")
    name = f"ket-qua-kiem-tra-chu-ky-{doc_id[:8]}.pdf"
    return Response(data, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'})
