"""Wires the pure steps together: RawPage -> CleanPage -> (EncodedPage, OcrPage) -> PDF/A.

Pages are processed in parallel by a small pool (tesseract runs one thread per page), but
never more than a few pages are in memory at once: the input iterable is consumed lazily and
only small results (encoded layers, text layer, words) are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from appliance import assemble, diskspace, encode, fields, imaging, logs, memory, ocr, qr
from appliance.domain import VN_TZ
from appliance.errors import ApplianceError, DiskFull, DocumentBusy, NoPages, StorageError, TooManyPages
from appliance.model import (
    CleanOptions,
    CleanPage,
    DocumentMeta,
    EncodedPage,
    EncodeOptions,
    Field,
    PageFlag,
    PageImage,
    PageResult,
    QrCode,
    RawPage,
    Source,
)
from appliance.originals import OriginalStore, write_atomic
from appliance.settings import Settings
from appliance.textindex import fold

# The database side (SQLAlchemy, the ORM tables, the workflow) is imported by the recorded path's
# functions only: `appliance digitize FILE` runs `digitize` alone, and a one-page run paid ~0.15 s of
# start-up importing it (measured with `python -X importtime`).
if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from appliance import records
    from appliance.workflow import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    clean: CleanOptions = CleanOptions()
    encode: EncodeOptions = EncodeOptions()
    ocr: ocr.OcrOptions = ocr.OcrOptions()
    workers: int = 2
    read_qr: bool = True


def options_from(settings: Settings, *, photo: bool | None = None, workers: int | None = None) -> PipelineOptions:
    """The pipeline options every front end builds from the settings (the CLI may force photo mode)."""
    return PipelineOptions(
        clean=CleanOptions(photo=photo),
        encode=EncodeOptions(background_dpi=settings.encode.background_dpi, jpeg_quality=settings.encode.jpeg_quality),
        ocr=ocr.OcrOptions(
            lang=settings.ocr.lang, timeout_s=settings.ocr.timeout_s, low_conf=settings.ocr.low_confidence
        ),
        workers=workers or settings.ocr.workers,
    )


@dataclass(frozen=True, slots=True)
class Digitized:
    pages: tuple[PageResult, ...]
    fields: tuple[Field, ...]
    meta: DocumentMeta
    pdf: bytes
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(p.ocr.text for p in self.pages)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A page after the image work: what OCR still needs (a grey copy) and the small results."""

    index: int
    label: str
    clean: CleanPage  # its image is the grey copy: a third of an RGB page's memory
    encoded: EncodedPage
    qr: tuple[QrCode, ...]
    timings: dict[str, float]


def _prepare(index: int, raw: RawPage, opts: PipelineOptions) -> _Prepared:
    """Clean, encode and look for QR codes: the memory-hungry part of a page.

    The caller's reference keeps ``raw`` alive throughout; :func:`process_pages` calls the two halves
    itself so that the capture is freed as soon as the page is clean."""
    return _encode_clean(index, *_clean(raw, opts), opts)


def _clean(raw: RawPage, opts: PipelineOptions) -> tuple[CleanPage, str, dict[str, float]]:
    t = time.perf_counter()
    clean_opts = replace(opts.clean, fix_orientation=False) if raw.upright else opts.clean
    clean = imaging.clean(raw, clean_opts, orient=ocr.detect_orientation if clean_opts.fix_orientation else None)
    return clean, raw.label, {"clean": time.perf_counter() - t}


def _encode_clean(
    index: int, clean: CleanPage, label: str, timings: dict[str, float], opts: PipelineOptions
) -> _Prepared:
    t = time.perf_counter()
    encoded = encode.encode(clean, opts.encode)
    timings["encode"] = time.perf_counter() - t

    codes: tuple[QrCode, ...] = ()
    if opts.read_qr:
        t = time.perf_counter()
        codes = qr.find_qr(clean.image)
        timings["qr"] = time.perf_counter() - t
    return _Prepared(index, label, replace(clean, image=_ocr_copy(clean), ocr_image=None), encoded, codes, timings)


def _ocr_copy(clean: CleanPage) -> PageImage:
    """The one grey page OCR reads: OCR's own grey copy (seals and tint lifted), else the page in grey."""
    image, ocr_copy = clean.image, clean.ocr_image
    if ocr_copy is not None and ocr_copy.shape[:2] == image.shape[:2]:
        return ocr_copy
    return image if image.ndim == 2 else np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def _finish(
    prepared: _Prepared, opts: PipelineOptions, started: tuple[ocr.Recognition, float] | None = None
) -> PageResult:
    """OCR (a tesseract process) on the grey copy, then the page's small result.

    ``started``: the page's tesseract run, already started on the same grey copy (see :func:`process_pages`),
    and when it started."""
    clean, timings = prepared.clean, prepared.timings
    if started is None:
        t = time.perf_counter()
        text = ocr.recognize(clean, opts.ocr)
    else:
        running, t = started
        text = running.result()
    timings["ocr"] = time.perf_counter() - t
    flags = set(clean.flags)
    if PageFlag.BLANK not in flags and text.mean_conf < opts.ocr.low_conf:
        flags.add(PageFlag.LOW_CONFIDENCE)
    height, width = clean.image.shape[:2]
    return PageResult(
        index=prepared.index,
        label=prepared.label,
        dpi=clean.dpi,
        width=width,
        height=height,
        rotation=clean.rotation,
        skew=clean.skew,
        flags=frozenset(flags),
        colour=clean.colour,
        perspective=clean.perspective,
        encoded=prepared.encoded,
        ocr=text,
        qr=prepared.qr,
        timings=timings,
    )


def process_page(raw: RawPage, index: int, opts: PipelineOptions) -> PageResult:
    """One physical page through clean -> encode (-> QR) -> OCR. Never drops a page."""
    return _finish(_prepare(index, raw, opts), opts)


def process_pages(
    raws: Iterable[RawPage],
    opts: PipelineOptions,
    on_page: Callable[[PageResult], None] | None = None,
) -> Iterator[PageResult]:
    """Process pages with ``workers`` threads, yielding results in input order.

    Memory stays flat however long the batch: a worker takes the next page from ``raws`` (so it
    is loaded or scanned only then) and does the image work while holding a lock, so only one
    full-resolution page is in memory at a time; OCR, the slow part, then runs outside the lock on
    a grey copy, in parallel with the other workers' pages.
    """
    source = iter(raws)
    taken = 0  # pages taken from `source` (under image_work): the next page's index
    image_work = threading.Lock()
    done: dict[int, PageResult] = {}
    failure: list[BaseException] = []
    ready = threading.Condition()
    stop = threading.Event()  # the caller stopped reading: take no more pages

    ocr_runs = 0  # this call's tesseract runs, started or about to start after their image work (under `ready`)

    def start_ocr(clean: CleanPage) -> tuple[ocr.Recognition, float] | None:
        """Start the page's OCR before its encoding when no other page's OCR is running: tesseract (one
        core) and the encoding (the other) then overlap, which a one-page run gains ~0.2 s from. With
        another tesseract running it waits as before, so a batch never holds a page's image work and two
        tesseract processes at once (the memory budget)."""
        nonlocal ocr_runs
        with ready:
            if ocr_runs:
                return None
            ocr_runs += 1
        try:
            return ocr.start(replace(clean, image=_ocr_copy(clean), ocr_image=None), opts.ocr), time.perf_counter()
        except BaseException:
            with ready:
                ocr_runs -= 1
            raise

    def reserve() -> None:
        nonlocal ocr_runs
        with ready:
            ocr_runs += 1

    def finish(prepared: _Prepared, started: tuple[ocr.Recognition, float] | None) -> PageResult:
        nonlocal ocr_runs
        try:
            return _finish(prepared, opts, started)
        finally:
            with ready:
                ocr_runs -= 1

    def drop(started: tuple[ocr.Recognition, float] | None) -> None:
        nonlocal ocr_runs
        if started is not None:
            started[0].cancel()
            with ready:
                ocr_runs -= 1

    def work() -> None:
        nonlocal taken
        try:
            while not failure and not stop.is_set():
                with image_work:
                    # The full-resolution capture is dropped as soon as the page is clean (its lossless
                    # original is stored): nothing else may hold it -- enumerate() keeps its last item,
                    # and the arguments of a call live until the call returns.
                    raw = next(source, None)
                    if raw is None:
                        return
                    index, taken = taken, taken + 1
                    cleaned = _clean(raw, opts)
                    del raw
                    started = start_ocr(cleaned[0])
                    try:
                        prepared = _encode_clean(index, *cleaned, opts)
                    except BaseException:
                        drop(started)
                        raise
                    del cleaned
                    memory.trim()  # what the image work freed goes back before the next page's
                    if started is None:
                        reserve()  # counted before the next page's image work may look
                result = finish(prepared, started)
                del prepared, started
                with ready:
                    done[result.index] = result
                    ready.notify_all()
        except BaseException as err:  # handed to the caller below, in order
            with ready:
                failure.append(err)
                ready.notify_all()
        finally:
            with ready:
                ready.notify_all()

    workers = [threading.Thread(target=work, name=f"page-{i}", daemon=True) for i in range(max(1, opts.workers))]
    for thread in workers:
        thread.start()
    try:
        next_index = 0
        while True:
            with ready:
                while next_index not in done and not failure and any(t.is_alive() for t in workers):
                    ready.wait(0.5)
                if next_index in done:
                    result = done.pop(next_index)
                elif failure:
                    raise failure[0]
                else:
                    return
            if on_page:
                on_page(result)
            yield result
            next_index += 1
    finally:
        stop.set()
        for thread in workers:
            thread.join()


def describe(found: Iterable[Field], base: DocumentMeta) -> DocumentMeta:
    """Fill the XMP metadata from extracted fields (first, most confident value of each)."""
    best: dict[str, Field] = {}
    for f in found:
        if f.name not in best or f.confidence > best[f.name].confidence:
            best[f.name] = f

    def pick(name: str, current: str | None) -> str | None:
        return current if current is not None else (best[name].value if name in best else None)

    return replace(
        base,
        title=pick("trich_yeu", base.title),
        doc_type=pick("loai_van_ban", base.doc_type),
        number=pick("so_ky_hieu", base.number),
        issued=pick("ngay_ban_hanh", base.issued),
        issuer=pick("co_quan_ban_hanh", base.issuer),
        digitized_at=base.digitized_at or datetime.now(VN_TZ).isoformat(timespec="seconds"),
    )


def digitize(
    raws: Iterable[RawPage],
    opts: PipelineOptions = PipelineOptions(),
    meta: DocumentMeta = DocumentMeta(),
    on_page: Callable[[PageResult], None] | None = None,
) -> Digitized:
    """The whole path: pages in physical order -> one searchable PDF/A-2b with fields."""
    started = time.perf_counter()
    pages = tuple(process_pages(raws, opts, on_page))
    if not pages:
        raise NoPages("no pages to digitize")
    t = time.perf_counter()
    codes = tuple(code for page in pages for code in page.qr)
    words = tuple(w for page in pages for w in page.ocr.words)
    found = fields.extract_fields("\n\n".join(p.ocr.text for p in pages), words, codes)
    described = describe(found, meta)
    t_fields = time.perf_counter() - t

    t = time.perf_counter()
    pdf = assemble.assemble([(p.encoded, p.ocr) for p in pages], described)
    t_assemble = time.perf_counter() - t

    timings: dict[str, float] = {}
    for page in pages:
        for key, value in page.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    timings["fields"] = t_fields
    timings["assemble"] = t_assemble
    timings["total"] = time.perf_counter() - started
    log.info("digitized %d pages in %.2f s", len(pages), timings["total"])
    return Digitized(pages=pages, fields=found, meta=described, pdf=pdf, timings=timings)


# --- the recorded path: capture -> database -> digitize -> archive -> index -----------------------
# One path for every front end (web, `appliance scan`, `appliance resume`): capture keeps each page's
# lossless original, splits the batch at QR separator sheets and records the documents; run_document
# digitizes one recorded document, archives its PDF/A, prefills its fields and indexes it for search;
# resume finishes whatever a crash or power cut interrupted.
SEPARATOR_PREFIXES = ("TACH", "SEPARATOR", "PATCH")
SEPARATOR_SIDE = 1200  # separator sheets carry a large QR: a small copy is enough (and fast)


def separator_text(image: PageImage, prefixes: Sequence[str]) -> str | None:
    """The QR text if this page is a separator sheet, else None (prefixes compared folded, no diacritics)."""
    wanted = tuple(fold(p) for p in prefixes if p.strip())
    if not wanted:
        return None
    h, w = image.shape[:2]
    scale = min(1.0, SEPARATOR_SIDE / max(h, w, 1))
    small = image
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    for code in qr.find_qr(small):
        if fold(code.text).startswith(wanted):
            return code.text
    return None


@dataclass(frozen=True, slots=True)
class Part:
    """One recorded document of a captured batch, with the batch positions of its pages."""

    document_id: str
    positions: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Captured:
    parts: tuple[Part, ...]
    separators: tuple[int, ...]  # batch positions of the separator sheets

    @property
    def document_ids(self) -> list[str]:
        return [p.document_id for p in self.parts]


@dataclass(frozen=True, slots=True)
class Storage:
    """Where a recorded document lives: the originals store and the database (one engine per process)."""

    settings: Settings
    factory: sessionmaker[Session]

    @property
    def originals(self) -> OriginalStore:
        return OriginalStore(self.settings.originals_dir)


_storages: dict[str, Storage] = {}
_storages_lock = threading.Lock()


def storage(settings: Settings) -> Storage:
    """The storage for these settings, made once per database per process (schema brought up to date)."""
    from appliance import db

    with _storages_lock:
        found = _storages.get(settings.db_url)
        if found is None or found.settings is not settings:
            factory = found.factory if found is not None else None
            if factory is None:
                engine = db.make_engine(settings.db_url)
                db.upgrade(engine)
                factory = db.session_factory(engine)
            found = _storages[settings.db_url] = Storage(settings, factory)
        return found


def capture(
    raws: Iterable[RawPage],
    store: Storage,
    *,
    source: str,
    actor: Actor,
    dossier_code: str | None = None,
    backlog: bool = False,
    split_prefixes: Sequence[str] = (),
    batch: str | None = None,
    intake_id: str | None = None,
) -> Captured:
    """Keep every page's lossless original, then record one document per part of the batch.

    Pages whose QR code starts with one of ``split_prefixes`` are separator sheets: kept as originals and
    recorded (records.Separator), but in no document. The originals are written (atomically) before the
    rows that name them are committed, so a power cut leaves either nothing or a complete record to
    resume from; an intake (uploaded files) is marked done in that same transaction.

    Disk space: below the floor (settings.storage.min_free_mb) nothing is taken (DiskFull before the first
    page); a batch that crosses the floor stops there and keeps its pages, as after a jam; a write that
    fails (ENOSPC) or a transaction that cannot commit takes back the originals this call wrote, so no
    original stays without a row and no page is said to be kept.
    """
    diskspace.check_room(store.settings)
    originals = store.originals  # a fresh store: .created is what this call writes
    parts: list[list[tuple[str, str, float, int]]] = [[]]
    separators: list[tuple[int, str, str, int]] = []  # (position, text, sha, index of the next part)
    interrupted: ApplianceError | None = None
    write_failed: StorageError | None = None
    try:
        for position, raw in enumerate(raws):
            if position:
                diskspace.check_room(store.settings)  # crossing the floor mid-batch: keep what was captured
            text = separator_text(raw.image, split_prefixes) if split_prefixes else None
            try:
                digest = originals.put_image(raw.image, dpi=raw.dpi)
            except StorageError as err:
                write_failed = err
                break
            if text is not None:
                if parts[-1]:
                    parts.append([])
                separators.append((position, text, digest, len(parts) - 1))
                continue
            parts[-1].append((digest, raw.label, raw.dpi, position))
    except ApplianceError as err:  # a jam or a pulled cable mid-batch: keep what was captured, then say so
        interrupted = err
    if write_failed is not None:
        discard_originals(store, originals.created)
        raise write_failed
    parts = [p for p in parts if p]
    if not parts:
        discard_originals(store, originals.created)  # separator sheets alone
        if interrupted is not None:
            raise interrupted
        raise NoPages("the batch holds no pages (only separator sheets, or nothing)")
    batch = batch or uuid.uuid4().hex
    try:
        out = _record_parts(store, parts, separators, source, actor, dossier_code, backlog, batch, intake_id)
    except Exception as err:
        discard_originals(store, originals.created)
        if diskspace.is_disk_full(err):
            raise DiskFull(f"recording the capture failed: {err}") from err
        raise
    log.info("captured %d document(s), %d separator sheet(s)", len(out), len(separators))
    done = Captured(tuple(out), tuple(position for position, *_r in separators))
    if interrupted is not None:
        interrupted.params["kept_pages"] = str(sum(len(p) for p in parts))
        interrupted.params["documents"] = ",".join(done.document_ids)
        raise interrupted
    return done


def _record_parts(
    store: Storage,
    parts: list[list[tuple[str, str, float, int]]],
    separators: list[tuple[int, str, str, int]],
    source: str,
    actor: Actor,
    dossier_code: str | None,
    backlog: bool,
    batch: str,
    intake_id: str | None,
) -> list[Part]:
    from appliance import db, documents, records

    out: list[Part] = []
    with db.transaction(store.factory) as session:
        for part in parts:
            doc = db.create_document(
                session,
                source=source,
                pages=[(sha, label, dpi) for sha, label, dpi, _pos in part],
                digitizer=actor.full_name or None,
                dossier_code=dossier_code,
            )
            documents.captured(
                session,
                doc,
                actor=actor,
                backlog=backlog,
                detail={"source": source, "pages": len(part), "batch": batch},
            )
            out.append(Part(doc.id, tuple(pos for *_rest, pos in part)))
        for position, text, digest, next_part in separators:
            before = out[next_part].document_id if next_part < len(out) else None
            session.add(
                records.Separator(
                    batch=batch[:32],
                    position=position,
                    text=text[:500],
                    original_sha256=digest,
                    before_document_id=before,
                )
            )
        if intake_id is not None:
            intake = session.get(records.Intake, intake_id)
            if intake is not None:
                intake.state = "done"
    return out


def discard_originals(store: Storage, digests: Sequence[str]) -> list[str]:
    """Remove originals a failed capture wrote, unless some row names them (the same content may have
    been captured by someone else meanwhile). Returns the removed digests."""
    from sqlalchemy import select

    from appliance import db, records

    if not digests:
        return []
    wanted = set(digests)
    try:
        with db.transaction(store.factory) as session:
            named = set(session.scalars(select(db.Page.original_sha256).where(db.Page.original_sha256.in_(wanted))))
            named |= set(
                session.scalars(
                    select(records.Separator.original_sha256).where(records.Separator.original_sha256.in_(wanted))
                )
            )
    except Exception as err:  # noqa: BLE001 - reading failed too: keep them (a kept orphan beats a lost page)
        log.warning("could not check %d original(s) of a failed capture: %s", len(wanted), err)
        return []
    originals = store.originals
    removed = [d for d in sorted(wanted - named) if originals.remove(d)]
    if removed:
        log.info("removed %d original(s) of a capture that was not recorded", len(removed))
    return removed


def capture_document(
    raws: Iterable[RawPage],
    settings: Settings,
    *,
    source: str,
    digitizer: str | None = None,
    dossier_code: str | None = None,
) -> str:
    """Record a one-document capture (no separator sheets). Returns its id."""
    from appliance.workflow import Actor

    actor = Actor("cli", digitizer or "")
    done = capture(raws, storage(settings), source=source, actor=actor, dossier_code=dossier_code)
    return done.parts[0].document_id


def run_document(
    doc_id: str,
    settings: Settings,
    opts: PipelineOptions,
    on_page: Callable[[PageResult], None] | None = None,
) -> tuple[Digitized, Path]:
    """Digitize a recorded document from its originals, archive the PDF, prefill and index (idempotent).

    ``on_page`` is called with each page's result as soon as it is ready (progress for the UI). On any
    failure the document is marked failed with the reason, and the error is raised again."""
    from appliance import db, documents

    store = storage(settings)
    with db.transaction(store.factory) as session:
        doc = session.get(db.Document, doc_id)
        if doc is None:
            raise StorageError(f"document {doc_id} not found")
        if doc.state != db.DocState.CAPTURED and doc.state != db.DocState.FAILED:
            raise DocumentBusy(f"document {doc_id} is {doc.state}; only captured documents are digitized")
        pages = [(p.original_sha256, p.label, float(p.dpi), p.upright) for p in doc.pages]
        source, digitizer = doc.source, doc.digitizer
    originals = store.originals

    def raw_page(digest: str, label: str, dpi: float, upright: bool) -> RawPage:
        image, stored_dpi = originals.get_image(digest)
        return RawPage(
            image=image, dpi=stored_dpi or dpi, source=Source(source), original=digest, label=label, upright=upright
        )

    def raw_pages() -> Iterator[RawPage]:
        for page in pages:
            yield raw_page(*page)  # no local name holds the image while the consumer works on it

    with logs.context(doc_id=doc_id, stage="digitize"):
        try:
            result = digitize(raw_pages(), opts, DocumentMeta(digitizer=digitizer), on_page=on_page)
            settings.documents_dir.mkdir(parents=True, exist_ok=True)
            pdf_path = settings.documents_dir / f"{doc_id}.pdf"
            write_atomic(pdf_path, result.pdf)
            with db.transaction(store.factory) as session:
                doc = session.get(db.Document, doc_id)
                assert doc is not None
                for row, page in zip(doc.pages, result.pages, strict=True):
                    row.rotation, row.skew, row.flags = page.rotation, page.skew, sorted(page.flags)
                    row.encoding, row.mean_conf, row.encoded_bytes = (
                        page.encoded.encoding,
                        page.ocr.mean_conf,
                        page.encoded.size,
                    )
                doc.pdf_path, doc.pdf_bytes = str(pdf_path), len(result.pdf)
                doc.pdf_sha256 = hashlib.sha256(result.pdf).hexdigest()
                documents.digitized(session, doc, text=result.text, found=result.fields)
        except Exception as err:
            with db.transaction(store.factory) as session:
                failed = session.get(db.Document, doc_id)
                if failed is not None:
                    documents.failed(session, failed, err)
            raise
    return result, pdf_path


# --- uploaded files: recorded as an intake before anything is decoded ------------------------------
INTAKE_DIR = "intake"  # under data_dir: one folder per intake, removed once its documents are recorded


def _count(name: str, path: Path) -> int:
    from appliance.capture import files as file_capture

    try:
        return file_capture.count_pages(path)
    except ApplianceError as err:
        err.params["file"] = name  # the officer's name, not our stored name
        raise


def count_file_pages(files: Sequence[tuple[str, Path]]) -> int:
    """Pages in these files, decoding none (raises the first bad file's error, with the officer's file name)."""
    return sum(_count(name, path) for name, path in files)


def file_pages(
    files: Sequence[tuple[str, Path]], *, max_pages: int | None = None, max_pixels: int | None = None
) -> Generator[RawPage, None, None]:
    """Pages of every file, in order, labelled with the officer's file names; one page decoded at a time,
    from the file on disk, each within ``max_pixels`` (files.PAGE_PIXELS by default).

    With ``max_pages``, the pages are counted first (no decoding) and more than that raises TooManyPages
    before any page is decoded."""
    from appliance.capture import files as file_capture

    if max_pages is not None:
        total = 0
        for name, path in files:
            with contextlib.suppress(ApplianceError):  # a bad file fails at its turn: the files before it are kept
                total += _count(name, path)
        if total > max_pages:
            raise TooManyPages(f"{total} pages > {max_pages}", pages=str(total), max_pages=str(max_pages))
    for name, path in files:
        several = _count(name, path) > 1
        pages = file_capture.iter_file(path, max_pixels=max_pixels or file_capture.PAGE_PIXELS)
        try:
            for i, page in enumerate(pages, 1):
                yield replace(page, label=f"{name} [{i}]" if several else name)
        except ApplianceError as err:
            err.params["file"] = name
            raise
        finally:
            pages.close()


def receive_files(
    store: Storage,
    files: Sequence[tuple[str, Path]],
    *,
    actor: Actor,
    dossier_code: str | None,
    backlog: bool = False,
) -> str:
    """Move uploaded files into the intake folder and record them; returns the intake id.

    From here a restart finishes them (:func:`resume`); the files are removed once their documents are
    recorded. Below the free-space floor nothing is moved (DiskFull); when recording fails, the intake
    folder goes (nothing of this request stays on disk)."""
    from appliance import db, records

    diskspace.check_room(store.settings)
    intake_id = uuid.uuid4().hex
    folder = store.settings.data_dir / INTAKE_DIR / intake_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        kept: list[list[str]] = []
        for i, (name, path) in enumerate(files):
            target = folder / f"{i:03d}{path.suffix.lower()}"
            shutil.move(str(path), target)
            kept.append([name, target.name])
        with db.transaction(store.factory) as session:
            session.add(
                records.Intake(
                    id=intake_id,
                    folder=str(folder),
                    files=kept,
                    dossier_code=dossier_code,
                    actor=actor.username,
                    digitizer=actor.full_name or None,
                    backlog=backlog,
                    state="pending",
                )
            )
    except Exception as err:
        shutil.rmtree(folder, ignore_errors=True)
        if diskspace.is_disk_full(err) and not isinstance(err, DiskFull):
            raise DiskFull(f"recording the upload failed: {err}") from err
        raise
    return intake_id


def intake_pages(store: Storage, intake_id: str) -> tuple[records.Intake, Iterator[RawPage]]:
    from appliance import db, records

    with db.transaction(store.factory) as session:
        intake = session.get(records.Intake, intake_id)
        if intake is None:
            raise StorageError(f"intake {intake_id} not found")
    folder = Path(intake.folder)
    budget = store.settings.capture
    pages = file_pages(
        [(name, folder / stored) for name, stored in intake.files],
        max_pages=budget.max_pages,
        max_pixels=budget.max_page_pixels,
    )
    return intake, pages


def close_intake(store: Storage, intake_id: str, err: BaseException | None = None) -> None:
    """Remove the intake's files; after a failure, record why (nothing was recorded from it).

    The files go even when the record cannot be written (a full disk): a pending intake whose folder is
    gone fails at the next resume, with its reason."""
    from appliance import db, records

    with db.transaction(store.factory) as session:
        intake = session.get(records.Intake, intake_id)
        if intake is None:
            return
        folder = Path(intake.folder)
    try:
        with db.transaction(store.factory) as session:
            intake = session.get(records.Intake, intake_id)
            if intake is not None and err is not None and intake.state == "pending":
                intake.state = "failed"
                intake.error_code = err.code if isinstance(err, ApplianceError) else "unknown"
    except Exception as failed:  # noqa: BLE001 - the files still go; the next resume records the failure
        log.warning("intake %s: could not record its failure: %s", intake_id, failed)
    shutil.rmtree(folder, ignore_errors=True)


def capture_intake(
    store: Storage,
    intake_id: str,
    *,
    split_prefixes: Sequence[str] = (),
    watch: Callable[[Iterator[RawPage]], Iterator[RawPage]] | None = None,
) -> Captured:
    """Record the documents of an intake (decoding one file at a time); its files are removed afterwards.

    ``watch`` may wrap the page stream (the web's thumbnails)."""
    from appliance.workflow import Actor

    intake, pages = intake_pages(store, intake_id)
    try:
        done = capture(
            watch(pages) if watch is not None else pages,
            store,
            source="file",
            actor=Actor(intake.actor, intake.digitizer or ""),
            dossier_code=intake.dossier_code,
            backlog=intake.backlog,
            split_prefixes=split_prefixes,
            batch=intake_id,
            intake_id=intake_id,
        )
    except DiskFull as err:
        if err.params.get("floor") and not err.params.get("documents"):
            raise  # refused before anything was taken: the intake waits, complete, for a resume with room
        close_intake(store, intake_id, err)
        raise
    except Exception as err:
        close_intake(store, intake_id, err)
        raise
    close_intake(store, intake_id)
    return done


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Resumed:
    finished: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (document or intake id, error code)


def resume(
    settings: Settings,
    opts: PipelineOptions,
    *,
    split_prefixes: Sequence[str] = SEPARATOR_PREFIXES,
    before: datetime | None = None,
) -> Resumed:
    """Finish what a crash or power cut interrupted: pending intakes, then captured documents.

    Only work left before ``before`` (default: now) is taken, so a service resuming at start-up never
    races the jobs officers start meanwhile. One that cannot be finished is marked failed with its reason
    and never blocks the others."""
    from sqlalchemy import select

    from appliance import db, records

    store = storage(settings)
    before = before or db.utcnow()
    with db.transaction(store.factory) as session:
        intakes = list(
            session.scalars(
                select(records.Intake.id)
                .where(records.Intake.state == "pending", records.Intake.created_at < before)
                .order_by(records.Intake.created_at)
            )
        )
    finished: list[str] = []
    failed: list[tuple[str, str]] = []
    produced: set[str] = set()
    for intake_id in intakes:
        try:
            produced.update(capture_intake(store, intake_id, split_prefixes=split_prefixes).document_ids)
        except Exception as err:  # noqa: BLE001 - recorded on the intake; the others go on
            kept = err.params.get("documents", "") if isinstance(err, ApplianceError) else ""
            produced.update(d for d in kept.split(",") if d)  # pages before a bad file were recorded
            log.warning("intake %s could not be resumed: %s", intake_id, err)
            failed.append((intake_id, err.code if isinstance(err, ApplianceError) else "unknown"))
    with db.transaction(store.factory) as session:
        todo = [
            d.id
            for d in db.documents_in_state(session, states=[db.DocState.CAPTURED])
            if d.updated_at is None or _aware(d.updated_at) < before or d.id in produced
        ]
    for doc_id in todo:
        try:
            run_document(doc_id, settings, opts)
            finished.append(doc_id)
        except Exception as err:  # noqa: BLE001 - run_document marked it failed; the others go on
            log.warning("document could not be resumed: %s", err, extra={"doc_id": doc_id})
            failed.append((doc_id, err.code if isinstance(err, ApplianceError) else "unknown"))
    sweep_intakes(store, before)
    return Resumed(tuple(finished), tuple(failed))


def remove_stale_folders(folders: Iterable[Path], before: datetime) -> list[str]:
    """Remove the folders last changed before ``before`` (names of those removed); newer ones belong to
    work going on now. A folder that vanished meanwhile is skipped."""
    removed: list[str] = []
    for folder in folders:
        try:
            if not folder.is_dir() or folder.stat().st_mtime >= before.timestamp():
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def sweep_intakes(store: Storage, before: datetime) -> list[str]:
    """Remove intake folders a crash left behind (names of the removed folders).

    A kill between recording an intake's documents and removing its files leaves the folder of a done
    intake; one between moving uploaded files in and recording the intake leaves a folder without a row
    (that upload never got an answer). Folders of pending intakes stay, and so do folders made from
    ``before`` on (an upload being received right now)."""
    from sqlalchemy import select

    from appliance import db, records

    root = store.settings.data_dir / INTAKE_DIR
    if not root.is_dir():
        return []
    with db.transaction(store.factory) as session:
        pending = set(session.scalars(select(records.Intake.id).where(records.Intake.state == "pending")))
    removed = remove_stale_folders((f for f in root.iterdir() if f.name not in pending), before)
    if removed:
        log.info("removed %d intake folder(s) left by an interrupted upload", len(removed))
    return removed
