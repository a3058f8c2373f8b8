"""Capture from the counter: scanner presets read from the device, scan / upload / camera into a dossier
or the backlog, and the progress of each job. Recording and digitizing are the pipeline's; these routes
only parse the request, start a job and show it."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import delete
from starlette.concurrency import run_in_threadpool

from appliance import diskspace, dossiers, pipeline
from appliance.capture import OptionInfo, ScanRequest, option_choices, resolve_source, source_choices
from appliance.errors import ApplianceError, BadScannerOption, DiskFull
from appliance.messages_vi import MESSAGES_VI, message_for
from appliance.model import RawPage
from appliance.web.auth import SignedIn
from appliance.web.context import Ctx
from appliance.web.models import FormNonce
from appliance.web.routes.common import Officer, RowId, ctx_of, render, see_other

router = APIRouter()

ALLOWED_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


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


def scanner_presets(ctx: Ctx) -> list[Ready]:
    """The presets already read from the device (never reads the device: that takes the scanner lock)."""
    if ctx.scanner is None:
        return []
    info: ScannerInfo | None = getattr(ctx, SCANNER_INFO_KEY, None)
    return list(info.presets or []) if info is not None else []


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


# --- uploaded files -------------------------------------------------------------------------------
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


def _upload_root(ctx: Ctx) -> Path:
    root = ctx.settings.data_dir / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    return root


def room_refused(ctx: Ctx) -> str | None:
    """The sentence refusing a new capture when the disk is below its free-space floor, else None."""
    try:
        diskspace.check_room(ctx.settings)
    except ApplianceError as err:
        return message_for(err)
    return None


def _probe(target: Path) -> int:
    from appliance.capture import files

    return files.probe(target)


async def save_uploads(
    ctx: Ctx, uploads: Sequence[UploadFile], *, max_pages: int | None = None, capture: bool = True
) -> tuple[Path, list[tuple[str, Path]], str | None]:
    """Uploads streamed into a private temp folder, each checked cheaply (type, declared size, page count)
    without decoding, off the event loop; returns (folder, [(display name, path)], error). The caller
    removes the folder. For a ``capture``, nothing is written below the free-space floor; a write that fails
    for a full disk gives its sentence (the caller's removal of the folder leaves no partial file)."""
    refused = room_refused(ctx) if capture else None
    try:
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_upload_root(ctx)))
    except OSError as err:
        if not diskspace.is_disk_full(err):
            raise
        folder, refused = ctx.settings.data_dir / "uploads" / "upload-none", MESSAGES_VI["disk_full"]
    if refused is not None:
        return folder, [], refused
    limit = ctx.settings.capture.max_pages if max_pages is None else max_pages
    saved: list[tuple[str, Path]] = []
    pages = 0
    for i, up in enumerate(uploads):
        name = safe_name(up.filename)
        if not up.filename:
            continue
        suffix = Path(name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            return folder, saved, (f"Tệp “{name}” không phải ảnh hoặc PDF. Chỉ nhận PDF, JPG, PNG, TIFF, BMP, WEBP.")
        target = folder / f"{i:03d}{suffix}"
        try:
            with target.open("wb") as out:
                while chunk := await up.read(1 << 20):
                    out.write(chunk)
        except OSError as err:
            if not diskspace.is_disk_full(err):
                raise
            return folder, saved, MESSAGES_VI["disk_full"]
        try:
            pages += await run_in_threadpool(_probe, target)
        except ApplianceError as err:
            err.params["file"] = name
            return folder, saved, file_error(err)
        saved.append((name, target))
        if pages > limit:
            return (
                folder,
                saved,
                (
                    f"Mỗi lần tải lên nhận tối đa {limit} trang, các tệp đã chọn có từ {pages} trang trở lên; "
                    "hãy tách thành nhiều lần tải lên."
                ),
            )
    if not saved:
        return folder, saved, "Hãy chọn ít nhất một tệp."
    return folder, saved, None


def file_error(err: ApplianceError) -> str:
    name = err.params.get("file")
    text = message_for(err)
    return f"Tệp “{name}”: {text}" if name else text


def load_first(ctx: Ctx, saved: Sequence[tuple[str, Path]], limit: int) -> list[RawPage]:
    """At most the first ``limit`` pages of small uploads (a receipt, one replacement page), each within
    the pixel budget; the rest is never decoded. Blocking: call it through run_in_threadpool."""
    pages = pipeline.file_pages(saved, max_pixels=ctx.settings.capture.max_page_pixels)
    with closing(pages):
        return list(islice(pages, limit))


# --- the capture pages (dossier or backlog) ---------------------------------------------------------
def capture_page(
    request: Request, ctx: Ctx, code: str | None, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The dossier's page (or, without a code, the backlog's), with an optional error above the capture form."""
    presets, scanner_problem = scanner_info(request).get(ctx)
    jobs = sorted(ctx.jobs.for_dossier(code), key=lambda j: j.started, reverse=True)
    common = {
        "jobs": [j for j in jobs if j.what != "resume"],
        "presets": presets,
        "scanner_problem": scanner_problem,
        "camera": ctx.camera is not None,
        "error": error,
    }
    if code is None:
        year = datetime.now(UTC).year
        with ctx.tx() as session:
            campaign, done = dossiers.backlog_progress(session, year=year)
            listed = dossiers.documents(session, dossier_code=None, backlog=True, limit=50)
        target = campaign.target if campaign else 0
        return render(
            request,
            "backlog.html",
            status_code=status_code,
            year=year,
            campaign=campaign,
            done=done,
            percent=round(100.0 * done / target, 1) if target else None,
            documents=listed,
            capture_url="/backlog",
            **common,
        )
    with ctx.tx() as session:
        try:
            dossier = dossiers.get(session, code)
        except ApplianceError:
            raise HTTPException(404) from None
        listed = dossiers.documents(session, dossier_code=dossier.code)
    return render(
        request,
        "dossier.html",
        status_code=status_code,
        dossier=dossier,
        documents=listed,
        capture_url=f"/dossiers/{dossier.code}",
        **common,
    )


def _back(code: str | None) -> str:
    return f"/dossiers/{code}" if code else "/backlog"


def _start(ctx: Ctx, nonce: str, code: str | None, start: Callable[[], str]) -> Response:
    """One job per submitted form: a second submit of the same form goes where the first led."""
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    target = f"{_back(code)}#job-{start()}"
    remember_nonce(ctx, nonce, target)
    return see_other(target)


def start_scan(
    request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, preset: str, nonce: str, backlog: bool
) -> Response:
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    refused = room_refused(ctx)
    if refused is not None:
        return capture_page(request, ctx, code, error=refused, status_code=507)
    presets, problem = scanner_info(request).get(ctx)
    ready = next((r for r in presets if r.preset.key == preset), None)
    scanner = ctx.scanner
    if ready is None or scanner is None:
        error = problem or "Chế độ quét này không có trên máy quét."
        return capture_page(request, ctx, code, error=error, status_code=400)
    scan = ScanRequest(
        device=ready.device,
        resolution=ctx.settings.scanner.resolution,
        mode=ready.mode,
        source=ready.source,
        batch=ready.preset.batch,
    )

    def start() -> str:
        job = ctx.jobs.capture(
            lambda: scanner.scan(scan),
            dossier_code=code,
            source="scanner",
            actor=who.actor,
            what="scan",
            backlog=backlog,
        )
        return job.id

    return _start(ctx, nonce, code, start)


def start_camera(request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, nonce: str, backlog: bool) -> Response:
    """One photo from the document camera becomes a one-page document (cleaned on the photo path)."""
    camera = ctx.camera
    if camera is None:
        return capture_page(request, ctx, code, error="Chưa có máy chụp tài liệu nối với thiết bị.", status_code=400)
    refused = room_refused(ctx)
    if refused is not None:
        return capture_page(request, ctx, code, error=refused, status_code=507)

    def start() -> str:
        job = ctx.jobs.capture(
            lambda: [camera.capture()],
            dossier_code=code,
            source="camera",
            actor=who.actor,
            what="camera",
            backlog=backlog,
            split=False,
        )
        return job.id

    return _start(ctx, nonce, code, start)


async def start_upload(
    request: Request, ctx: Ctx, who: SignedIn, *, code: str | None, files: list[UploadFile], nonce: str, backlog: bool
) -> Response:
    """The files are stored and recorded as an intake first; decoding happens in the job, not here."""
    earlier = seen_nonce(ctx, nonce)
    if earlier:
        return see_other(earlier)
    folder, saved, error = await save_uploads(ctx, files)
    try:
        if error is not None:
            status = 507 if error == MESSAGES_VI["disk_full"] else 400
            return capture_page(request, ctx, code, error=error, status_code=status)
        try:
            intake_id = await run_in_threadpool(
                pipeline.receive_files, ctx.store, saved, actor=who.actor, dossier_code=code, backlog=backlog
            )
        except DiskFull as err:
            return capture_page(request, ctx, code, error=message_for(err), status_code=507)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def start() -> str:
        return ctx.jobs.intake(intake_id, dossier_code=code, actor=who.actor, backlog=backlog).id

    return _start(ctx, nonce, code, start)


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
    response = render(
        request, "job.html", job=job, job_states=JOB_STATES, eta=ctx.jobs.eta_s(job), per_page=ctx.jobs.per_page_s(job)
    )
    if not job.running:  # the dossier's document list refreshes itself when the job ends
        response.headers["HX-Trigger"] = "documents-changed"
    return response


@router.get("/jobs/{job_id}/thumb/{n}.jpg")
def job_thumb(request: Request, who: Officer, job_id: str, n: RowId) -> Response:
    job = ctx_of(request).jobs.get(job_id)
    if job is None or not 0 <= n < len(job.thumbs):
        raise HTTPException(404)
    return Response(job.thumbs[n], media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
