"""Wires the pure steps together: RawPage -> CleanPage -> (EncodedPage, OcrPage) -> PDF/A.

Pages are processed in parallel by a small pool (tesseract runs one thread per page), but
never more than a few pages are in memory at once: the input iterable is consumed lazily and
only small results (encoded layers, text layer, words) are kept.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from appliance import assemble, db, encode, fields, imaging, logs, ocr, qr
from appliance.errors import ApplianceError, NoPages, StorageError
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

log = logging.getLogger(__name__)
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    clean: CleanOptions = CleanOptions()
    encode: EncodeOptions = EncodeOptions()
    ocr: ocr.OcrOptions = ocr.OcrOptions()
    workers: int = 2
    read_qr: bool = True


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
    """Clean, encode and look for QR codes: the memory-hungry part of a page."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    clean_opts = replace(opts.clean, fix_orientation=False) if raw.upright else opts.clean
    clean = imaging.clean(raw, clean_opts, orient=ocr.detect_orientation if clean_opts.fix_orientation else None)
    label = raw.label
    del raw  # the full-resolution capture is no longer needed (its lossless original is stored)
    timings["clean"] = time.perf_counter() - t

    t = time.perf_counter()
    encoded = encode.encode(clean, opts.encode)
    timings["encode"] = time.perf_counter() - t

    codes: tuple[QrCode, ...] = ()
    if opts.read_qr:
        t = time.perf_counter()
        codes = qr.find_qr(clean.image)
        timings["qr"] = time.perf_counter() - t
    image = clean.image
    grey: PageImage = image if image.ndim == 2 else np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    return _Prepared(index, label, replace(clean, image=grey), encoded, codes, timings)


def _finish(prepared: _Prepared, opts: PipelineOptions) -> PageResult:
    """OCR (a tesseract process) on the grey copy, then the page's small result."""
    clean, timings = prepared.clean, prepared.timings
    t = time.perf_counter()
    text = ocr.recognize(clean, opts.ocr)
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
    source = enumerate(raws)
    image_work = threading.Lock()
    done: dict[int, PageResult] = {}
    failure: list[BaseException] = []
    ready = threading.Condition()
    stop = threading.Event()  # the caller stopped reading: take no more pages

    def work() -> None:
        try:
            while not failure and not stop.is_set():
                with image_work:
                    try:
                        # no name keeps the raw page alive: _prepare drops it after cleaning
                        prepared = _prepare(*next(source), opts)
                    except StopIteration:
                        return
                result = _finish(prepared, opts)
                del prepared
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


# --- the recorded path: capture -> database -> digitize -> archive -----------------------------
def _store(settings: Settings) -> tuple[OriginalStore, sessionmaker[Session]]:
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    return OriginalStore(settings.originals_dir), db.session_factory(engine)


def capture_document(
    raws: Iterable[RawPage],
    settings: Settings,
    *,
    source: str,
    digitizer: str | None = None,
    dossier_code: str | None = None,
) -> str:
    """Keep every captured page's lossless original, then record the document. Returns its id.

    The originals are written (atomically) before the row that names them is committed, so a
    power cut leaves either nothing or a complete record to resume from.
    """
    store, factory = _store(settings)
    kept: list[tuple[str, str, float]] = []
    for raw in raws:
        digest = store.put_image(raw.image, dpi=raw.dpi)
        kept.append((digest, raw.label, raw.dpi))
    if not kept:
        raise NoPages("the scanner returned no pages")
    with db.transaction(factory) as session:
        doc = db.create_document(session, source=source, pages=kept, digitizer=digitizer, dossier_code=dossier_code)
        doc_id = doc.id
    log.info("captured document with %d pages", len(kept), extra={"doc_id": doc_id})
    return doc_id


def run_document(
    doc_id: str,
    settings: Settings,
    opts: PipelineOptions,
    on_page: Callable[[PageResult], None] | None = None,
) -> tuple[Digitized, Path]:
    """Digitize a recorded document from its originals and archive the PDF (idempotent).

    ``on_page`` is called with each page's result as soon as it is ready (progress for the UI).
    """
    store, factory = _store(settings)
    with db.transaction(factory) as session:
        doc = session.get(db.Document, doc_id)
        if doc is None:
            raise StorageError(f"document {doc_id} not found")
        pages = [(p.original_sha256, p.label, float(p.dpi), p.upright) for p in doc.pages]
        source, digitizer = doc.source, doc.digitizer

    def originals() -> Iterator[RawPage]:
        for digest, label, dpi, upright in pages:
            image, stored_dpi = store.get_image(digest)
            yield RawPage(
                image=image, dpi=stored_dpi or dpi, source=Source(source), original=digest, label=label, upright=upright
            )

    with logs.context(doc_id=doc_id, stage="digitize"):
        try:
            result = digitize(originals(), opts, DocumentMeta(digitizer=digitizer), on_page=on_page)
        except ApplianceError as err:
            with db.transaction(factory) as session:
                failed = session.get(db.Document, doc_id)
                assert failed is not None
                failed.state, failed.error_code = db.DocState.FAILED, err.code
            raise
        settings.documents_dir.mkdir(parents=True, exist_ok=True)
        pdf_path = settings.documents_dir / f"{doc_id}.pdf"
        write_atomic(pdf_path, result.pdf)
        with db.transaction(factory) as session:
            doc = session.get(db.Document, doc_id)
            assert doc is not None
            for row, page in zip(doc.pages, result.pages, strict=True):
                row.rotation, row.skew, row.flags = page.rotation, page.skew, sorted(page.flags)
                row.encoding, row.mean_conf, row.encoded_bytes = (
                    page.encoded.encoding,
                    page.ocr.mean_conf,
                    page.encoded.size,
                )
            doc.fields = db.fields_json(result.fields)
            doc.pdf_path, doc.pdf_bytes = str(pdf_path), len(result.pdf)
            doc.pdf_sha256 = hashlib.sha256(result.pdf).hexdigest()
            doc.state, doc.error_code = db.DocState.ASSEMBLED, None
    return result, pdf_path


def resume(settings: Settings, opts: PipelineOptions) -> list[str]:
    """Finish every document a power cut left between capture and archive."""
    _, factory = _store(settings)
    with db.transaction(factory) as session:
        todo = [d.id for d in db.documents_in_state(session, states=[db.DocState.CAPTURED, db.DocState.OCR_DONE])]
    for doc_id in todo:
        run_document(doc_id, settings, opts)
    return todo
