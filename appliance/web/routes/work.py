"""The counter workflow: open a dossier, capture (scanner or files), fix pages, review fields."""

from __future__ import annotations

import io
import logging
import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image
from sqlalchemy import Row, bindparam, delete, select
from sqlalchemy.orm import Session, selectinload
from starlette.datastructures import UploadFile as FormFile

from appliance import db, domain
from appliance.capture import (
    OptionInfo,
    ScanRequest,
    option_choices,
    resolve_source,
    source_choices,
)
from appliance.errors import ApplianceError, BadScannerOption, InvalidResultCode
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.model import RawPage
from appliance.originals import OriginalStore
from appliance.web.app import Ctx
from appliance.web.auth import SignedIn
from appliance.web.models import DocumentInfo, Dossier, FormNonce, Kind
from appliance.web.routes.common import (
    Checked,
    Officer,
    ctx_of,
    reindex,
    render,
    see_other,
)

log = logging.getLogger(__name__)
router = APIRouter()

ALLOWED_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
REVIEW_FIELDS = (
    ("so_ky_hieu", "Số, ký hiệu"),
    ("ngay_ban_hanh", "Ngày ban hành"),
    ("loai_van_ban", "Loại văn bản"),
    ("co_quan_ban_hanh", "Cơ quan ban hành"),
    ("trich_yeu", "Trích yếu"),
    ("so_dinh_danh", "Số định danh người yêu cầu"),
    ("ma_tthc", "Mã thủ tục hành chính"),
)


# --- scanner presets, from the device's own options ------------------------------------------
@dataclass(frozen=True, slots=True)
class Preset:
    key: str
    label: str
    modes: tuple[str, ...]  # preferred colour modes, first one the device offers wins
    source: str  # generic word for resolve_source
    batch: bool


PRESETS = (
    Preset("a4-grey", "Giấy tờ A4 đen trắng", ("gray", "grey", "lineart", "binary"), "flatbed", False),
    Preset("seal-colour", "Có dấu đỏ — màu", ("color", "colour", "rgb", "24bit color"), "flatbed", False),
    Preset("adf", "ADF một mặt — cả xấp", ("color", "colour", "gray"), "adf", True),
    Preset("adf-duplex", "ADF hai mặt — cả xấp", ("color", "colour", "gray"), "duplex", True),
)


@dataclass(frozen=True, slots=True)
class Ready:
    """A preset resolved against one device."""

    preset: Preset
    device: str
    mode: str | None
    source: str | None


def resolve_presets(device: str, options: Sequence[OptionInfo]) -> list[Ready]:
    modes = option_choices(options, "mode")
    sources = source_choices(options)
    out = []
    for preset in PRESETS:
        mode = next((m for want in preset.modes for m in modes if m.lower() == want), None)
        if modes and mode is None:
            continue
        source: str | None = None
        if sources:
            try:
                source = resolve_source(sources, preset.source)
            except BadScannerOption:
                continue
        elif preset.source != "flatbed":
            continue
        out.append(Ready(preset, device, mode, source))
    return out


class ScannerInfo:
    """The device and its presets, read once (reading options takes the shared scanner lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.presets: list[Ready] | None = None
        self.error: str | None = None

    def get(self, ctx: Ctx) -> tuple[list[Ready], str | None]:
        if ctx.scanner is None:
            return [], "Chưa có máy quét nối với thiết bị. Có thể tải tệp lên từ máy tính."
        with self._lock:
            if self.presets is not None:
                return self.presets, None
            if ctx.jobs.busy_capturing():
                return [], MESSAGES_VI["scanner_busy"]
            try:
                device = ctx.settings.scanner.device
                if device is None:
                    found = ctx.scanner.devices()
                    if not found:
                        return [], MESSAGES_VI["scanner_not_found"]
                    device = found[0].name
                self.presets = resolve_presets(device, ctx.scanner.options(device))
                return self.presets, None
            except ApplianceError as err:
                return [], message_for(err)


SCANNER_INFO_KEY = "scanner_info"


def scanner_info(request: Request) -> ScannerInfo:
    ctx = ctx_of(request)
    info: ScannerInfo | None = getattr(ctx, SCANNER_INFO_KEY, None)
    if info is None:
        info = ScannerInfo()
        setattr(ctx, SCANNER_INFO_KEY, info)  # kept on the app's context: read the device once
    return info


# --- double submits: one nonce -> one job (kept in the database, so a restart keeps the guard) ---------
NONCE_DAYS = 2


def seen_nonce(ctx: Ctx, nonce: str) -> str | None:
    """Where the first submit of this form led, or None if the form was not submitted yet."""
    if not nonce:
        return None
    with ctx.tx() as session:
        row = session.get(FormNonce, nonce[:64])
        return row.target if row else None


def remember_nonce(ctx: Ctx, nonce: str, target: str) -> None:
    if not nonce:
        return
    with ctx.tx() as session:
        session.execute(delete(FormNonce).where(FormNonce.created_at < datetime.now(UTC) - timedelta(days=NONCE_DAYS)))
        if session.get(FormNonce, nonce[:64]) is None:
            session.add(FormNonce(nonce=nonce[:64], target=target[:300]))


# --- file names ---------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+", re.UNICODE)


def safe_name(name: str | None) -> str:
    """A plain file name for display and storage: no directories, no control characters, short."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFC", base)
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" .") or "tep"
    if len(base) > 80:
        stem, dot, suffix = base.rpartition(".")
        base = (stem[:70] + dot + suffix[:9]) if dot else base[:80]
    return base


# --- home and dossiers ------------------------------------------------------------------------------
_TODAY = (
    select(Dossier.code, Dossier.owner_name, Dossier.tthc_code, Dossier.appointment)
    .where(Dossier.created_at >= bindparam("since"), Dossier.backlog.is_(False))
    .order_by(Dossier.created_at.desc())
    .limit(100)
)


def _today_dossiers(ctx: Ctx) -> list[Row[str, str | None, str | None, str | None]]:
    """The last 24 hours' dossiers: only the shown columns (rows with .code, .owner_name, ...)."""
    with ctx.tx() as session:
        return list(session.execute(_TODAY, {"since": datetime.now(UTC) - timedelta(hours=24)}).all())


@router.get("/", response_class=HTMLResponse)
def home(request: Request, who: Officer) -> HTMLResponse:
    ctx = ctx_of(request)
    return render(request, "home.html", dossiers=_today_dossiers(ctx), form={}, errors={})


def _validate_dossier(form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    errors: dict[str, str] = {}
    clean = {k: v.strip() for k, v in form.items()}
    check = domain.check_dossier_code(clean.get("code", ""))
    if not clean.get("code"):
        errors["code"] = "Hãy nhập mã hồ sơ (ví dụ 000.00.19.H12-230412-0007)."
    elif not check.ok:
        errors["code"] = MESSAGES_VI[check.problem or "invalid_dossier_code"]
    clean["code"] = check.value if check.ok else clean.get("code", "")
    if clean.get("tthc_code"):
        tthc = domain.check_tthc_code(clean["tthc_code"])
        if tthc.ok:
            clean["tthc_code"] = tthc.value
        else:
            errors["tthc_code"] = MESSAGES_VI[tthc.problem or "invalid_tthc_code"]
    if clean.get("owner_id"):
        pid = domain.check_personal_id(clean["owner_id"])
        ent = domain.check_enterprise_code(clean["owner_id"])
        if pid.ok:
            clean["owner_id"] = pid.value
        elif ent.ok:
            clean["owner_id"] = ent.value
        else:
            errors["owner_id"] = MESSAGES_VI[pid.problem or "invalid_personal_id"]
    if clean.get("appointment"):
        date = domain.check_date(clean["appointment"])
        if not date.ok:
            errors["appointment"] = MESSAGES_VI[date.problem or "invalid_date"]
    return clean, errors


@router.post("/dossiers", response_model=None)
def open_dossier(
    request: Request,
    who: Checked,
    code: str = Form(default="", max_length=100),
    tthc_code: str = Form(default="", max_length=100),
    owner_id: str = Form(default="", max_length=40),
    owner_name: str = Form(default="", max_length=200),
    title: str = Form(default="", max_length=500),
    appointment: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    form = {
        "code": code,
        "tthc_code": tthc_code,
        "owner_id": owner_id,
        "owner_name": owner_name,
        "title": title,
        "appointment": appointment,
    }
    clean, errors = _validate_dossier(form)
    if errors:
        return render(request, "home.html", status_code=400, dossiers=_today_dossiers(ctx), form=form, errors=errors)
    with ctx.tx() as session:
        if session.get(Dossier, clean["code"]) is None:  # opening twice just opens it
            session.add(
                Dossier(
                    code=clean["code"],
                    tthc_code=clean["tthc_code"] or None,
                    owner_id=clean["owner_id"] or None,
                    owner_name=clean["owner_name"] or None,
                    title=clean["title"] or None,
                    appointment=clean["appointment"] or None,
                    backlog=False,
                    created_by=who.username,
                )
            )
    return see_other(f"/dossiers/{clean['code']}")


async def _save_uploads(ctx: Ctx, uploads: Sequence[UploadFile]) -> tuple[Path, list[tuple[str, Path]], str | None]:
    """Uploads into a private temp folder; returns (folder, [(display name, path)], error)."""
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_upload_root(ctx)))
    saved: list[tuple[str, Path]] = []
    for i, up in enumerate(uploads):
        name = safe_name(up.filename)
        if not up.filename:
            continue
        suffix = Path(name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            return folder, saved, (f"Tệp “{name}” không phải ảnh hoặc PDF. Chỉ nhận PDF, JPG, PNG, TIFF, BMP, WEBP.")
        target = folder / f"{i:03d}{suffix}"
        with target.open("wb") as out:
            while chunk := await up.read(1 << 20):
                out.write(chunk)
        saved.append((name, target))
    if not saved:
        return folder, saved, "Hãy chọn ít nhất một tệp."
    return folder, saved, None


def _upload_root(ctx: Ctx) -> Path:
    root = ctx.settings.data_dir / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _load_pages(saved: Sequence[tuple[str, Path]]) -> list[RawPage]:
    """Pages of every uploaded file, labelled with the officer's file names."""
    from dataclasses import replace

    from appliance.capture import files

    pages: list[RawPage] = []
    for name, path in saved:
        try:
            loaded = files.load_file(path)
        except ApplianceError as err:
            err.params["file"] = name  # the officer's name, not our temp name
            raise
        pages.extend(replace(p, label=name if len(loaded) == 1 else f"{name} [{i}]") for i, p in enumerate(loaded, 1))
    return pages


@router.post("/dossiers/receipt", response_model=None)
async def read_receipt(
    request: Request,
    who: Checked,
    receipt: Annotated[UploadFile, File()],
) -> Response:
    """A photo or scan of the one-stop receipt: its QR code fills the open-dossier form."""
    from appliance import qr

    ctx = ctx_of(request)
    folder, saved, error = await _save_uploads(ctx, [receipt])
    form: dict[str, str] = {}
    try:
        if error is None:
            try:
                pages = _load_pages(saved)
            except ApplianceError as err:
                error = _file_error(err)
            else:
                found: dict[str, str] = {}
                for page in pages[:3]:
                    for code in qr.find_qr(page.image):
                        for key, value in qr.parse_receipt(code.text).items():
                            found.setdefault(key, value)
                if not found:
                    error = "Không đọc được mã QR trên giấy tiếp nhận. Hãy chụp rõ hơn hoặc nhập mã hồ sơ."
                form = {
                    "code": found.get("ma_ho_so", ""),
                    "tthc_code": found.get("ma_tthc", ""),
                    "owner_id": found.get("so_dinh_danh", ""),
                    "owner_name": found.get("chu_ho_so", found.get("ho_ten", "")),
                    "title": found.get("ten_giay_to", ""),
                    "appointment": _date_text(found.get("ngay_hen_tra", "")),
                }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _clean, errors = _validate_dossier(form) if form.get("code") else ({}, {})
    if error:
        errors["receipt"] = error
    return render(
        request,
        "home.html",
        status_code=400 if error else 200,
        dossiers=_today_dossiers(ctx),
        form=form,
        errors=errors,
        from_receipt=not error,
    )


def _date_text(value: str) -> str:
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", value)
    return f"{m.group(3)}/{m.group(2)}/{m.group(1)}" if m else value


def _file_error(err: ApplianceError) -> str:
    name = err.params.get("file")
    text = message_for(err)
    return f"Tệp “{name}”: {text}" if name else text


def _dossier_or_404(ctx: Ctx, code: str) -> Dossier:
    check = domain.check_dossier_code(code)
    with ctx.tx() as session:
        dossier = session.get(Dossier, check.value) if check.ok else None
    if dossier is None:
        raise HTTPException(404)
    return dossier


@dataclass(frozen=True, slots=True)
class ListedPage:
    index: int
    flags: list[str]


@dataclass(frozen=True, slots=True)
class ListedDocument:
    """What a dossier's (or the backlog's) document list shows of one document."""

    id: str
    created_at: datetime
    page_count: int
    state: str
    pages: list[ListedPage]


@dataclass(frozen=True, slots=True)
class ListedInfo:
    kind: str | None
    fields: dict[str, Any]


def _documents(ctx: Ctx, code: str | None, *, backlog: bool = False) -> list[tuple[ListedDocument, ListedInfo | None]]:
    """Newest first, at most 200: two queries (documents, then all their pages), only the shown columns."""
    stmt = select(
        db.Document.id,
        db.Document.created_at,
        db.Document.page_count,
        db.Document.state,
        DocumentInfo.document_id,
        DocumentInfo.kind,
        DocumentInfo.fields,
    ).outerjoin(DocumentInfo, DocumentInfo.document_id == db.Document.id)
    wanted = DocumentInfo.backlog.is_(True) if code is None else db.Document.dossier_code == code
    stmt = stmt.where(wanted)
    with ctx.tx() as session:
        rows = session.execute(stmt.order_by(db.Document.created_at.desc()).limit(200)).all()
        pages: dict[str, list[ListedPage]] = {row[0]: [] for row in rows}
        if pages:
            for doc_id, index, flags in session.execute(
                select(db.Page.document_id, db.Page.index, db.Page.flags)
                .where(db.Page.document_id.in_(list(pages)))
                .order_by(db.Page.document_id, db.Page.index)
            ):
                pages[doc_id].append(ListedPage(index, list(flags or [])))
    return [
        (
            ListedDocument(doc_id, created_at, page_count, state, pages[doc_id]),
            ListedInfo(kind, dict(fields or {})) if info_id is not None else None,
        )
        for doc_id, created_at, page_count, state, info_id, kind, fields in rows
    ]


@router.get("/dossiers/{code}", response_class=HTMLResponse)
def dossier_page(request: Request, who: Officer, code: str) -> HTMLResponse:
    ctx = ctx_of(request)
    dossier = _dossier_or_404(ctx, code)
    presets, scanner_problem = scanner_info(request).get(ctx)
    return render(
        request,
        "dossier.html",
        dossier=dossier,
        documents=_documents(ctx, dossier.code),
        jobs=sorted(ctx.jobs.for_dossier(dossier.code), key=lambda j: j.started, reverse=True),
        presets=presets,
        scanner_problem=scanner_problem,
        camera=ctx.camera is not None,
        capture_url=f"/dossiers/{dossier.code}",
        error=None,
    )


def _scan_pages(ctx: Ctx, ready: Ready) -> Any:
    scanner = ctx.scanner
    assert scanner is not None
    request = ScanRequest(
        device=ready.device,
        resolution=ctx.settings.scanner.resolution,
        mode=ready.mode,
        source=ready.source,
        batch=ready.preset.batch,
    )
    return lambda: scanner.scan(request)


def start_scan(
    request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, preset: str, nonce: str, backlog: bool
) -> Response:
    back = f"/dossiers/{code}" if code else "/backlog"
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    presets, problem = scanner_info(request).get(ctx)
    ready = next((r for r in presets if r.preset.key == preset), None)
    if ready is None:
        return _capture_error(request, ctx, code, problem or "Chế độ quét này không có trên máy quét.")
    job = ctx.jobs.capture(
        _scan_pages(ctx, ready),
        dossier_code=code,
        source="scanner",
        user=who.username,
        digitizer=who.full_name,
        what="scan",
        backlog=backlog,
    )
    remember_nonce(ctx, nonce, f"{back}#job-{job.id}")
    return see_other(f"{back}#job-{job.id}")


def start_camera(request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, nonce: str, backlog: bool) -> Response:
    """One photo from the document camera becomes a one-page document (cleaned on the photo path)."""
    back = f"/dossiers/{code}" if code else "/backlog"
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    camera = ctx.camera
    if camera is None:
        return _capture_error(request, ctx, code, "Chưa có máy chụp tài liệu nối với thiết bị.")
    job = ctx.jobs.capture(
        lambda: [camera.capture()],
        dossier_code=code,
        source="camera",
        user=who.username,
        digitizer=who.full_name,
        what="camera",
        backlog=backlog,
        split=False,
    )
    remember_nonce(ctx, nonce, f"{back}#job-{job.id}")
    return see_other(f"{back}#job-{job.id}")


def _capture_error(request: Request, ctx: Ctx, code: str | None, error: str) -> Response:
    if code is None:
        from appliance.web.routes.archive import backlog_page

        return backlog_page(request, ctx, error=error, status_code=400)
    dossier = _dossier_or_404(ctx, code)
    presets, scanner_problem = scanner_info(request).get(ctx)
    return render(
        request,
        "dossier.html",
        status_code=400,
        dossier=dossier,
        documents=_documents(ctx, dossier.code),
        jobs=sorted(ctx.jobs.for_dossier(dossier.code), key=lambda j: j.started, reverse=True),
        presets=presets,
        scanner_problem=scanner_problem,
        camera=ctx.camera is not None,
        capture_url=f"/dossiers/{dossier.code}",
        error=error,
    )


async def start_upload(
    request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, files: list[UploadFile], nonce: str, backlog: bool
) -> Response:
    back = f"/dossiers/{code}" if code else "/backlog"
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    folder, saved, error = await _save_uploads(ctx, files)
    try:
        if error is None:
            try:
                pages = _load_pages(saved)
            except ApplianceError as err:
                error = _file_error(err)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if error is not None:
        return _capture_error(request, ctx, code, error)
    job = ctx.jobs.capture(
        lambda: pages,
        dossier_code=code,
        source="file",
        user=who.username,
        digitizer=who.full_name,
        what="upload",
        backlog=backlog,
    )
    remember_nonce(ctx, nonce, f"{back}#job-{job.id}")
    return see_other(f"{back}#job-{job.id}")


@router.post("/dossiers/{code}/scan", response_model=None)
def scan(
    request: Request,
    who: Checked,
    code: str,
    preset: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    dossier = _dossier_or_404(ctx, code)
    return start_scan(request, ctx, who, code=dossier.code, preset=preset, nonce=nonce, backlog=False)


@router.post("/dossiers/{code}/upload", response_model=None)
async def upload(
    request: Request,
    who: Checked,
    files: Annotated[list[UploadFile], File()],
    code: str,
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    dossier = _dossier_or_404(ctx, code)
    return await start_upload(request, ctx, who, code=dossier.code, files=files, nonce=nonce, backlog=False)


@router.post("/dossiers/{code}/camera", response_model=None)
def camera_photo(
    request: Request,
    who: Checked,
    code: str,
    nonce: str = Form(default="", max_length=40),
) -> Response:
    ctx = ctx_of(request)
    dossier = _dossier_or_404(ctx, code)
    return start_camera(request, ctx, who, code=dossier.code, nonce=nonce, backlog=False)


# --- jobs ------------------------------------------------------------------------------------------
JOB_STATES = {
    "waiting": "Đang chờ lượt dùng máy quét…",
    "capturing": "Đang quét / nhận trang…",
    "processing": "Đang làm sạch ảnh và nhận dạng chữ…",
    "done": "Xong",
    "failed": "Không thành công",
}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_fragment(request: Request, who: Officer, job_id: str) -> HTMLResponse:
    ctx = ctx_of(request)
    job = ctx.jobs.get(job_id)
    if job is None:
        raise HTTPException(404)
    return render(
        request, "job.html", job=job, job_states=JOB_STATES, eta=ctx.jobs.eta_s(job), per_page=ctx.jobs.per_page_s(job)
    )


@router.get("/jobs/{job_id}/thumb/{n}.jpg")
def job_thumb(request: Request, who: Officer, job_id: str, n: int) -> Response:
    job = ctx_of(request).jobs.get(job_id)
    if job is None or not 0 <= n < len(job.thumbs):
        raise HTTPException(404)
    return Response(job.thumbs[n], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# --- documents: pages and review ---------------------------------------------------------------------
def _document(ctx: Ctx, doc_id: str) -> tuple[db.Document, DocumentInfo | None, Dossier | None]:
    if not re.fullmatch(r"[0-9a-f-]{36}", doc_id):
        raise HTTPException(404)
    with ctx.tx() as session:
        return _document_in(session, doc_id)


def _document_in(session: Session, doc_id: str) -> tuple[db.Document, DocumentInfo | None, Dossier | None]:
    """The document with its pages, its review and its dossier: one query (pages: a second)."""
    row = session.execute(
        select(db.Document, DocumentInfo, Dossier)
        .outerjoin(DocumentInfo, DocumentInfo.document_id == db.Document.id)
        .outerjoin(Dossier, Dossier.code == db.Document.dossier_code)
        .where(db.Document.id == doc_id)
        .options(selectinload(db.Document.pages))
    ).first()
    if row is None:
        raise HTTPException(404)
    doc, info, dossier = row
    return doc, info, dossier


def _review_context(ctx: Ctx, doc_id: str, page: int) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9a-f-]{36}", doc_id):
        raise HTTPException(404)
    with ctx.tx() as session:
        doc, info, dossier = _document_in(session, doc_id)
        reused_from = _reused_from_in(session, doc.id)
    page = min(max(page, 0), max(0, doc.page_count - 1))
    jobs = [j for j in ctx.jobs.for_dossier(doc.dossier_code) if j.doc_id == doc.id and j.running]
    return {
        "doc": doc,
        "info": info,
        "dossier": dossier,
        "page_index": page,
        "review_fields": REVIEW_FIELDS,
        "values": dict(info.fields) if info else {},
        "kinds": [(k.value, k) for k in Kind],
        "running": jobs[0] if jobs else None,
        "editable": doc.state in {db.DocState.CAPTURED, db.DocState.ASSEMBLED, db.DocState.FAILED},
        "pattern": ctx.settings.sign.result_code_pattern,
        "presets": [r for r in scanner_presets(ctx) if not r.preset.batch],
        "camera": ctx.camera is not None,
        "reused_from": reused_from,
    }


def scanner_presets(ctx: Ctx) -> list[Ready]:
    """The presets already read from the device (never reads the device: that takes the scanner lock)."""
    if ctx.scanner is None:
        return []
    info: ScannerInfo | None = getattr(ctx, SCANNER_INFO_KEY, None)
    return list(info.presets or []) if info is not None else []


def _reused_from_in(session: Session, doc_id: str) -> tuple[str, str | None] | None:
    from appliance.web.models import Reuse

    row = session.execute(
        select(Reuse.source_document_id, db.Document.dossier_code)
        .outerjoin(db.Document, db.Document.id == Reuse.source_document_id)
        .where(Reuse.document_id == doc_id)
        .limit(1)
    ).first()
    if row is None:
        return None
    source_id, code = row
    return source_id, code


@router.get("/documents/{doc_id}", response_class=HTMLResponse)
def document_page(request: Request, who: Officer, doc_id: str, page: int = 0) -> HTMLResponse:
    ctx = ctx_of(request)
    return render(request, "document.html", errors={}, **_review_context(ctx, doc_id, page))


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
    if doc.pdf_path and Path(doc.pdf_path).exists() and index < doc.page_count:
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(doc.pdf_path)
        try:
            pg = pdf[index]
            scale = width / pg.get_width()
            pil = pg.render(scale=scale).to_pil()
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
def page_image(request: Request, who: Officer, doc_id: str, index: int, w: int = 900) -> Response:
    """A page image, rendered once and then served from the disk cache; the browser keeps it for
    10 minutes and afterwards asks again with If-None-Match (answered 304 without reading the file)."""
    ctx = ctx_of(request)
    if not re.fullmatch(r"[0-9a-f-]{36}", doc_id):
        raise HTTPException(404)
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
        doc, _info, _d = _document(ctx, doc_id)
        if not 0 <= index < len(doc.pages):
            raise HTTPException(404) from None
        data = _render_page_image(ctx, doc, index, width)
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get("/documents/{doc_id}/pdf")
def document_pdf(request: Request, who: Officer, doc_id: str) -> Response:
    ctx = ctx_of(request)
    doc, info, _d = _document(ctx, doc_id)
    path = info.signed_path if info and info.signed_path else doc.pdf_path
    if not path or not Path(path).exists():
        raise HTTPException(404)
    return FileResponse(
        path, media_type="application/pdf", filename=f"{doc.dossier_code or 'tai-lieu'}-{doc.id[:8]}.pdf"
    )


@router.post("/documents/{doc_id}/pages/{page_id}/{action}", response_model=None)
def edit_page(request: Request, who: Checked, doc_id: str, page_id: int, action: str) -> Response:
    """Rotate, move or delete one page, then digitize the document again."""
    ctx = ctx_of(request)
    if action not in {"rotate", "up", "down", "delete"}:
        raise HTTPException(404)
    doc, _info, _dossier = _document(ctx, doc_id)
    if doc.state not in {db.DocState.ASSEMBLED, db.DocState.FAILED}:
        context = _review_context(ctx, doc_id, 0)
        return render(
            request,
            "document.html",
            status_code=409,
            errors={"pages": "Tài liệu đang được xử lý hoặc đã ký; không sửa trang được lúc này."},
            **context,
        )
    store = OriginalStore(ctx.settings.originals_dir)
    with ctx.tx() as session:
        row = session.get(db.Document, doc_id)
        assert row is not None
        pages = list(row.pages)
        at = next((i for i, p in enumerate(pages) if p.id == page_id), None)
        if at is None:
            raise HTTPException(404)
        if action == "delete" and len(pages) == 1:
            context = _review_context(ctx, doc_id, 0)
            return render(
                request,
                "document.html",
                status_code=400,
                errors={"pages": "Không xóa được trang duy nhất của tài liệu."},
                **context,
            )
        if action == "rotate":
            image, dpi = store.get_image(pages[at].original_sha256)
            pages[at].original_sha256 = store.put_image(
                np.ascontiguousarray(np.rot90(image, k=-1)), dpi=dpi or pages[at].dpi
            )
            pages[at].upright = True  # the officer decided: automatic orientation must not undo it
        else:
            order = list(pages)
            if action == "delete":
                gone = order.pop(at)
                row.pages.remove(gone)
            elif action == "up" and at > 0:
                order[at - 1], order[at] = order[at], order[at - 1]
            elif action == "down" and at < len(order) - 1:
                order[at + 1], order[at] = order[at], order[at + 1]
            for i, p in enumerate(order):  # two steps: the (document, index) pair is unique
                p.index = -1 - i
            session.flush()
            for i, p in enumerate(order):
                p.index = i
            row.page_count = len(order)
        row.state = db.DocState.CAPTURED
    ctx.jobs.redo(doc_id, dossier_code=doc.dossier_code, user=who.username, backlog=bool(_info and _info.backlog))
    return see_other(f"/documents/{doc_id}?ok=redo")


@router.post("/documents/{doc_id}/review", response_model=None)
async def review(request: Request, who: Checked, doc_id: str) -> Response:
    ctx = ctx_of(request)
    form = await request.form()
    values = {name: str(form.get(name, "") or "").strip()[:1000] for name, _label in REVIEW_FIELDS}
    kind = str(form.get("kind", "") or "")
    result_code = str(form.get("result_code", "") or "").strip()[:100]
    valid_until = str(form.get("valid_until", "") or "").strip()[:40]
    backlog = form.get("backlog") == "1"
    auto_code = form.get("auto_code") == "1"
    errors: dict[str, str] = {}
    if kind not in {k.value for k in Kind}:
        errors["kind"] = "Hãy chọn loại tài liệu (một trong ba nhóm theo Quyết định 468)."
    if values.get("ngay_ban_hanh") and not domain.check_date(values["ngay_ban_hanh"]).ok:
        errors["ngay_ban_hanh"] = MESSAGES_VI["invalid_date"]
    if valid_until and not domain.check_date(valid_until).ok:
        errors["valid_until"] = MESSAGES_VI["invalid_date"]
    if values.get("ma_tthc") and not domain.check_tthc_code(values["ma_tthc"]).ok:
        errors["ma_tthc"] = MESSAGES_VI["invalid_tthc_code"]
    from appliance.sign.resultcode import check_result_code, make_result_code

    doc, _info, _dossier = _document(ctx, doc_id)
    with ctx.tx() as session:
        if kind == Kind.RESULT and not errors:
            try:
                if auto_code and not result_code:
                    taken = session.scalars(
                        select(DocumentInfo.result_code).where(DocumentInfo.result_code.is_not(None))
                    )
                    result_code = make_result_code(
                        ctx.settings.sign.result_code_template,
                        ctx.settings.sign.result_code_pattern,
                        agency=ctx.settings.sign.agency_code,
                        seq=len(list(taken)) + 1,
                    )
                elif result_code:
                    result_code = check_result_code(result_code, ctx.settings.sign.result_code_pattern)
                else:
                    errors["result_code"] = "Kết quả giải quyết cần có mã kết quả. Hãy nhập hoặc bấm “Cấp mã”."
            except InvalidResultCode as err:
                errors["result_code"] = message_for(err)
        if errors:
            context = _review_context(ctx, doc_id, 0)
            context["values"] = values
            return render(
                request,
                "document.html",
                status_code=400,
                errors=errors,
                form_kind=kind,
                form_code=result_code,
                form_valid=valid_until,
                **context,
            )
        info = session.get(DocumentInfo, doc_id)
        if info is None:
            info = DocumentInfo(document_id=doc_id, text="", text_folded="", fields={}, backlog=False)
            session.add(info)
        info.kind = kind
        info.result_code = result_code if kind == Kind.RESULT else None
        info.valid_until = valid_until or None
        info.backlog = backlog or info.backlog
        info.fields = values
        info.reviewed_by = who.username
        info.reviewed_at = datetime.now(UTC)
        row = session.get(db.Document, doc_id)
        assert row is not None
        reindex(session, info, row)
    return see_other(f"/documents/{doc.id}?ok=saved")


# --- rescan one page, split a document ---------------------------------------------------------------
def _not_editable(request: Request, ctx: Ctx, doc_id: str, status_code: int, text: str) -> Response:
    context = _review_context(ctx, doc_id, 0)
    return render(request, "document.html", status_code=status_code, errors={"pages": text}, **context)


BUSY_TEXT = "Tài liệu đang được xử lý hoặc đã ký; không sửa trang được lúc này."


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


class _Refused(Exception):
    """A request the officer can fix; the text says how."""


@router.post("/documents/{doc_id}/replace/{page_id}", response_model=None)
async def replace_page(request: Request, who: Checked, doc_id: str, page_id: int) -> Response:
    """Rescan one page (scanner or camera) or replace it by an uploaded image; it keeps its place."""
    ctx = ctx_of(request)
    form = await request.form()
    how = str(form.get("how", "scan") or "scan")
    doc, info, _dossier = _document(ctx, doc_id)
    if doc.state not in {db.DocState.ASSEMBLED, db.DocState.FAILED}:
        return _not_editable(request, ctx, doc_id, 409, BUSY_TEXT)
    if not any(p.id == page_id for p in doc.pages):
        raise HTTPException(404)
    try:
        if how == "file":
            upload = form.get("file")
            if not isinstance(upload, FormFile) or not upload.filename:
                raise _Refused("Hãy chọn tệp ảnh của trang thay thế.")
            folder, saved, error = await _save_uploads(ctx, [upload])  # type: ignore[list-item]
            try:
                if error is not None:
                    raise _Refused(error)
                try:
                    loaded = _load_pages(saved)
                except ApplianceError as err:
                    raise _Refused(_file_error(err)) from err
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            if len(loaded) != 1:
                raise _Refused("Tệp thay thế phải có đúng một trang.")
            raw = loaded[0]
        else:
            from starlette.concurrency import run_in_threadpool

            try:
                raw = await run_in_threadpool(_one_page, request, ctx, how, str(form.get("preset", "") or ""))
            except ApplianceError as err:
                raise _Refused(message_for(err)) from err
    except _Refused as refused:
        return _not_editable(request, ctx, doc_id, 400, str(refused))
    digest = OriginalStore(ctx.settings.originals_dir).put_image(raw.image, dpi=raw.dpi)
    with ctx.tx() as session:
        row = session.get(db.Document, doc_id)
        assert row is not None
        if row.state not in {db.DocState.ASSEMBLED, db.DocState.FAILED}:
            return _not_editable(request, ctx, doc_id, 409, BUSY_TEXT)
        page = next(p for p in row.pages if p.id == page_id)
        page.original_sha256, page.dpi, page.upright, page.flags = digest, round(raw.dpi), False, []
        page.label = f"{raw.label} (thay)"[:200]
        row.state = db.DocState.CAPTURED
    log.info("page replaced how=%s", how, extra={"doc_id": doc_id})
    ctx.jobs.redo(doc_id, dossier_code=doc.dossier_code, user=who.username, backlog=bool(info and info.backlog))
    return see_other(f"/documents/{doc_id}?ok=redo")


@router.post("/documents/{doc_id}/split", response_model=None)
async def split_document(request: Request, who: Checked, doc_id: str) -> Response:
    """Cut the document before each chosen page: every part becomes its own document (same originals)."""
    ctx = ctx_of(request)
    form = await request.form()
    chosen = {int(v) for v in form.getlist("at") if isinstance(v, str) and v.isdigit()}
    doc, info, _dossier = _document(ctx, doc_id)
    if doc.state not in {db.DocState.ASSEMBLED, db.DocState.FAILED}:
        return _not_editable(request, ctx, doc_id, 409, BUSY_TEXT)
    with ctx.tx() as session:
        row = session.get(db.Document, doc_id)
        assert row is not None
        pages = list(row.pages)
        cuts = [i for i, p in enumerate(pages) if p.id in chosen and i > 0]
        if not cuts:
            return _not_editable(request, ctx, doc_id, 400, "Hãy chọn ít nhất một trang bắt đầu tài liệu mới.")
        bounds = [0, *cuts, len(pages)]
        parts = [pages[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        new_ids = []
        for part in parts[1:]:
            new = db.create_document(
                session,
                source=row.source,
                pages=[(p.original_sha256, p.label, float(p.dpi)) for p in part],
                digitizer=row.digitizer,
                dossier_code=row.dossier_code,
            )
            for old, fresh in zip(part, new.pages, strict=True):
                fresh.upright = old.upright
            new_ids.append(new.id)
            for p in part:
                row.pages.remove(p)
        row.page_count = len(parts[0])
        row.state = db.DocState.CAPTURED
    log.info("document split into %d parts", len(parts), extra={"doc_id": doc_id})
    job = ctx.jobs.redo(
        doc_id, *new_ids, dossier_code=doc.dossier_code, user=who.username, backlog=bool(info and info.backlog)
    )
    back = f"/dossiers/{doc.dossier_code}" if doc.dossier_code else "/backlog"
    return see_other(f"{back}?ok=split#job-{job.id}")


# --- reuse of already digitized documents (Decision 766) ----------------------------------------------
REUSABLE = (db.DocState.ASSEMBLED, db.DocState.SIGNED, db.DocState.QUEUED, db.DocState.SENT, db.DocState.ACKED)


def _same_paper(a: DocumentInfo | None, b: DocumentInfo | None) -> bool:
    """Same number and issuer (when both are known)."""
    if a is None or b is None:
        return False
    number = (a.fields.get("so_ky_hieu") or "").strip().lower()
    issuer = (a.fields.get("co_quan_ban_hanh") or "").strip().lower()
    return bool(number and issuer) and (
        number == (b.fields.get("so_ky_hieu") or "").strip().lower()
        and issuer == (b.fields.get("co_quan_ban_hanh") or "").strip().lower()
    )


@router.post("/dossiers/{code}/reuse", response_model=None)
def reuse_document(
    request: Request,
    who: Checked,
    code: str,
    doc: str = Form(max_length=40),
    nonce: str = Form(default="", max_length=40),
) -> Response:
    """Attach an already digitized document to this dossier instead of scanning the paper again."""
    from appliance.web.models import Reuse

    ctx = ctx_of(request)
    dossier = _dossier_or_404(ctx, code)
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    source, source_info, _d = _document(ctx, doc)
    if source.state not in REUSABLE or not source.pdf_path:
        return message_page_400(request, "Tài liệu này chưa số hóa xong nên chưa dùng lại được.")
    with ctx.tx() as session:
        mine = session.execute(
            select(db.Document, DocumentInfo)
            .outerjoin(DocumentInfo, DocumentInfo.document_id == db.Document.id)
            .where(db.Document.dossier_code == dossier.code)
        ).all()
        for other, other_info in mine:
            if other.id == source.id or (other.pdf_sha256 and other.pdf_sha256 == source.pdf_sha256):
                return see_other(f"/documents/{other.id}?ok=have")
            if _same_paper(other_info, source_info):
                return see_other(f"/documents/{other.id}?ok=have")
        copy = db.create_document(
            session,
            source=source.source,
            pages=[(p.original_sha256, p.label, float(p.dpi)) for p in source.pages],
            digitizer=source.digitizer,
            dossier_code=dossier.code,
        )
        for old, fresh in zip(source.pages, copy.pages, strict=True):
            fresh.rotation, fresh.skew, fresh.flags = old.rotation, old.skew, list(old.flags or [])
            fresh.encoding, fresh.mean_conf, fresh.encoded_bytes = old.encoding, old.mean_conf, old.encoded_bytes
            fresh.upright = old.upright
        copy.fields = dict(source.fields or {})
        copy.pdf_path, copy.pdf_sha256, copy.pdf_bytes = source.pdf_path, source.pdf_sha256, source.pdf_bytes
        copy.state = db.DocState.ASSEMBLED
        info = DocumentInfo(
            document_id=copy.id,
            kind=Kind.COMPONENT,  # a paper already issued, now a component of this dossier
            fields=dict(source_info.fields) if source_info else {},
            valid_until=source_info.valid_until if source_info else None,
            backlog=False,
            text=source_info.text if source_info else "",
            text_folded="",
        )
        session.add(info)
        session.flush()
        reindex(session, info, copy)
        session.add(
            Reuse(document_id=copy.id, source_document_id=source.id, dossier_code=dossier.code, reused_by=who.username)
        )
        new_id = copy.id
    log.info("document reused", extra={"doc_id": new_id})
    target = f"/documents/{new_id}?ok=reused"
    remember_nonce(ctx, nonce, target)
    return see_other(target)


def message_page_400(request: Request, text: str) -> Response:
    from appliance.web.routes.common import message_page

    return message_page(request, "Không dùng lại được", text, 400)
