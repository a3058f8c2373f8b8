"""Background work started from the web page: capture a batch, then digitize it.

A job runs in a small thread pool so the page answers at once; the page polls the job's progress
(htmx). Captured pages get an in-memory thumbnail as they arrive, so the officer sees them while the
scanner keeps feeding. The document itself is recorded and digitized by :mod:`appliance.pipeline`
(the same functions the CLI uses); nothing here talks to a device except through the Scanner
protocol handed in by the caller.

A scanned batch may hold several documents separated by QR separator sheets (a page whose QR text
starts with one of ``separator_prefixes``, compared without diacritics): each part is recorded as
its own document and digitized; the separator sheet is kept as an original and recorded in
web_separators, but belongs to no document. Progress is counted page by page (pipeline ``on_page``),
which gives a per-page ETA.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, pipeline, qr
from appliance.errors import ApplianceError, NoPages
from appliance.messages_vi import message_for
from appliance.model import PageImage, PageResult, RawPage
from appliance.originals import OriginalStore
from appliance.settings import Settings
from appliance.web.models import Separator
from appliance.web.search import fold

log = logging.getLogger(__name__)

THUMB_WIDTH = 160
SEPARATOR_PREFIXES = ("TACH", "SEPARATOR", "PATCH")
SEPARATOR_SIDE = 1200  # separator sheets carry a large QR: a small copy is enough (and fast)


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> bytes:
    pil = Image.fromarray(image)
    pil.thumbnail((width, width * 2))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=70)
    return buf.getvalue()


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


@dataclass
class Job:
    """Progress of one capture + digitize run (mutable; read by the page, written by the worker)."""

    id: str
    dossier_code: str | None
    what: str  # "scan" | "upload" | "redo"
    user: str
    backlog: bool = False  # an old result digitized under the backlog plan
    state: str = "waiting"  # waiting -> capturing -> processing -> done | failed
    thumbs: list[bytes] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    doc_id: str | None = None  # the first (or only) document
    doc_ids: list[str] = field(default_factory=list)  # every document the job made or redid
    marks: list[str] = field(default_factory=list)  # per thumbnail: "" | "separator" | "done" | "flagged"
    pages_total: int = 0  # pages to digitize (separators excluded); grows while capturing
    pages_done: int = 0
    page_seconds: list[float] = field(default_factory=list)  # time between finished pages
    last_page_at: float | None = None
    error_code: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    processing_since: float | None = None
    finished: float | None = None

    @property
    def running(self) -> bool:
        return self.state not in {"done", "failed"}


class Jobs:
    """Runs jobs; remembers the recent ones so the page can show their progress."""

    def __init__(
        self,
        settings: Settings,
        options: pipeline.PipelineOptions,
        *,
        after: Callable[[str, pipeline.Digitized, Job], None] | None = None,
        workers: int = 2,
        factory: sessionmaker[Session] | None = None,
        separator_prefixes: Sequence[str] = SEPARATOR_PREFIXES,
    ) -> None:
        self.settings = settings
        self.separator_prefixes = tuple(separator_prefixes)
        if factory is None:
            engine = db.make_engine(settings.db_url)
            db.upgrade(engine)
            factory = db.session_factory(engine)
        self.factory = factory
        self.options = options
        self.after = after
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="web-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.seconds_per_page = 4.0  # updated from finished jobs, for the ETA

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def for_dossier(self, code: str | None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.dossier_code == code]

    def busy_capturing(self) -> bool:
        """Whether some job is using the scanner right now."""
        with self._lock:
            return any(j.state == "capturing" and j.what == "scan" for j in self._jobs.values())

    def per_page_s(self, job: Job) -> float:
        """Seconds per page for this job: measured from its finished pages, else from recent jobs."""
        if job.page_seconds:
            recent = job.page_seconds[-6:]
            return sum(recent) / len(recent)
        return self.seconds_per_page / max(1, self.options.workers)

    def eta_s(self, job: Job) -> float | None:
        """Seconds until the job should be done: pages still to recognise x seconds per page."""
        if not job.running:
            return None
        remaining = max(1, job.pages_total - job.pages_done)
        spent = time.monotonic() - (job.last_page_at or job.processing_since or time.monotonic())
        return max(1.0, remaining * self.per_page_s(job) - spent)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _add(self, job: Job) -> Job:
        with self._lock:
            if len(self._jobs) > 200:
                for old in [j.id for j in self._jobs.values() if not j.running][:100]:
                    del self._jobs[old]
            self._jobs[job.id] = job
        return job

    def capture(
        self,
        pages: Callable[[], Iterable[RawPage]],
        *,
        dossier_code: str | None,
        source: str,
        user: str,
        digitizer: str,
        what: str,
        backlog: bool = False,
        split: bool = True,
    ) -> Job:
        """Capture pages (lazily, e.g. from the scanner), record the document(s), then digitize them.

        With ``split``, QR separator sheets cut the batch into several documents.
        """
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what=what, user=user, backlog=backlog))

        def watched() -> Iterator[RawPage]:
            job.state = "capturing"
            for raw in pages():
                job.thumbs.append(thumbnail(raw.image))
                job.labels.append(raw.label)
                job.marks.append("")
                yield raw

        def run() -> None:
            try:
                parts = self._record(job, watched(), source=source, digitizer=digitizer, split=split)
                job.doc_ids = [doc_id for doc_id, _ in parts]
                job.doc_id = job.doc_ids[0]
                for doc_id, positions in parts:
                    self._digitize(job, doc_id, positions)
                self._done(job)
            except Exception as err:  # noqa: BLE001 - shown to the officer, never crashes the page
                self._fail(job, err)

        self._pool.submit(run)
        return job

    def _record(
        self, job: Job, raws: Iterable[RawPage], *, source: str, digitizer: str, split: bool
    ) -> list[tuple[str, list[int]]]:
        """Keep every page's original; record one document per part. Returns [(doc id, thumb positions)].

        The originals are written before the rows that name them are committed (as capture_document).
        """
        store = OriginalStore(self.settings.originals_dir)
        parts: list[list[tuple[str, str, float, int]]] = [[]]
        separators: list[tuple[int, str, str, int]] = []  # (position, text, sha, index of the next part)
        for position, raw in enumerate(raws):
            text = separator_text(raw.image, self.separator_prefixes) if split else None
            digest = store.put_image(raw.image, dpi=raw.dpi)
            if text is not None:
                job.marks[position] = "separator"
                if parts[-1]:
                    parts.append([])
                separators.append((position, text, digest, len(parts) - 1))
                continue
            parts[-1].append((digest, raw.label, raw.dpi, position))
            job.pages_total += 1
        parts = [p for p in parts if p]
        if not parts:
            raise NoPages("the batch holds no pages (only separator sheets, or nothing)")
        out: list[tuple[str, list[int]]] = []
        with db.transaction(self.factory) as session:
            for part in parts:
                doc = db.create_document(
                    session,
                    source=source,
                    pages=[(sha, label, dpi) for sha, label, dpi, _pos in part],
                    digitizer=digitizer,
                    dossier_code=job.dossier_code,
                )
                out.append((doc.id, [pos for *_rest, pos in part]))
            for position, text, digest, next_part in separators:
                before = out[next_part][0] if next_part < len(out) else None
                session.add(
                    Separator(
                        batch=job.id,
                        position=position,
                        text=text[:500],
                        original_sha256=digest,
                        before_document_id=before,
                    )
                )
        log.info("captured %d document(s), %d separator sheet(s)", len(out), len(separators))
        return out

    def redo(self, *doc_ids: str, dossier_code: str | None, user: str, backlog: bool = False) -> Job:
        """Digitize recorded documents again (after pages were rotated, moved, replaced, deleted or split)."""
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what="redo", user=user, backlog=backlog))
        job.doc_ids = list(doc_ids)
        job.doc_id = doc_ids[0]
        with db.transaction(self.factory) as session:
            for doc_id in doc_ids:
                doc = session.get(db.Document, doc_id)
                job.pages_total += doc.page_count if doc else 0

        def run() -> None:
            try:
                for doc_id in doc_ids:
                    self._digitize(job, doc_id, [])
                self._done(job)
            except Exception as err:  # noqa: BLE001
                self._fail(job, err)

        self._pool.submit(run)
        return job

    def _digitize(self, job: Job, doc_id: str, positions: Sequence[int]) -> None:
        job.state = "processing"
        started = time.monotonic()
        if job.processing_since is None:
            job.processing_since = started
        job.last_page_at = started

        def on_page(page: PageResult) -> None:
            now = time.monotonic()
            job.page_seconds.append(now - (job.last_page_at or now))
            job.last_page_at = now
            job.pages_done += 1
            if page.index < len(positions) and positions[page.index] < len(job.marks):
                job.marks[positions[page.index]] = "flagged" if page.flags else "done"

        result, _pdf = pipeline.run_document(doc_id, self.settings, self.options, on_page=on_page)
        if self.after is not None:
            self.after(doc_id, result, job)
        if result.pages:
            per_page = (time.monotonic() - started) * max(1, self.options.workers) / len(result.pages)
            self.seconds_per_page = 0.7 * self.seconds_per_page + 0.3 * per_page
        log.info("web job digitized pages=%d", len(result.pages), extra={"doc_id": doc_id})

    @staticmethod
    def _done(job: Job) -> None:
        job.finished = time.monotonic()
        job.state = "done"

    @staticmethod
    def _fail(job: Job, err: BaseException) -> None:
        job.error_code = err.code if isinstance(err, ApplianceError) else "unknown"
        job.error = message_for(err)
        job.state = "failed"
        job.finished = time.monotonic()
        if isinstance(err, ApplianceError):
            log.warning("web job failed code=%s detail=%s", err.code, err.detail)
        else:
            log.exception("web job crashed")
