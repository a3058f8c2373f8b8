"""Background work started from the web page: capture a batch (or an uploaded intake), then digitize it.

A job runs in a small thread pool so the page answers at once; the page polls the job's progress
(htmx). Captured pages get an in-memory thumbnail as they arrive, so the officer sees them while the
scanner keeps feeding. Recording, splitting at separator sheets, digitizing, prefilling and indexing
are the pipeline's (:func:`appliance.pipeline.capture`, :func:`~appliance.pipeline.run_document`: the
same functions `appliance scan` and `appliance resume` use); this module only runs them and counts
progress page by page (pipeline ``on_page``), which gives a per-page ETA. At start-up
:meth:`Jobs.resume` finishes what a crash or power cut interrupted, as a job of its own.
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
from datetime import datetime

import numpy as np
from PIL import Image

from appliance import db, pipeline
from appliance.errors import ApplianceError
from appliance.messages_vi import message_for
from appliance.model import PageResult, RawPage
from appliance.workflow import Actor

log = logging.getLogger(__name__)

THUMB_WIDTH = 160
UPLOADS_DIR = "uploads"  # under data_dir: where requests store uploaded files before they become an intake


def thumbnail(image: np.ndarray, width: int = THUMB_WIDTH) -> bytes:
    pil = Image.fromarray(image)
    pil.thumbnail((width, width * 2))
    buf = io.BytesIO()
    pil.convert("RGB").save(buf, format="JPEG", quality=70)
    return buf.getvalue()


@dataclass
class Job:
    """Progress of one capture + digitize run (mutable; read by the page, written by the worker)."""

    id: str
    dossier_code: str | None
    what: str  # "scan" | "upload" | "camera" | "redo" | "resume"
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
    kept_pages: int = 0  # pages recorded although the capture failed part-way
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
        store: pipeline.Storage,
        options: pipeline.PipelineOptions,
        *,
        workers: int = 2,
        separator_prefixes: Sequence[str] = pipeline.SEPARATOR_PREFIXES,
    ) -> None:
        self.store = store
        self.settings = store.settings
        self.factory = store.factory
        self.separator_prefixes = tuple(separator_prefixes)
        self.options = options
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

    def running_for(self, doc_id: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.running and doc_id in j.doc_ids), None)

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

    def _watched(self, job: Job, pages: Iterable[RawPage]) -> Iterator[RawPage]:
        job.state = "capturing"
        for raw in pages:
            job.thumbs.append(thumbnail(raw.image))
            job.labels.append(raw.label)
            job.marks.append("")
            yield raw

    def _run(self, job: Job, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
                job.finished = time.monotonic()
                job.state = "done"
            except Exception as err:  # noqa: BLE001 - shown to the officer, never crashes the page
                self._fail(job, err)

        self._pool.submit(run)

    def _digitize_parts(self, job: Job, captured: pipeline.Captured) -> None:
        for position in captured.separators:
            if position < len(job.marks):
                job.marks[position] = "separator"
        job.doc_ids = captured.document_ids
        job.doc_id = job.doc_ids[0]
        job.pages_total = sum(len(p.positions) for p in captured.parts)
        for part in captured.parts:
            self._digitize(job, part.document_id, part.positions)

    def capture(
        self,
        pages: Callable[[], Iterable[RawPage]],
        *,
        dossier_code: str | None,
        source: str,
        actor: Actor,
        what: str,
        backlog: bool = False,
        split: bool = True,
    ) -> Job:
        """Capture pages (lazily, e.g. from the scanner), record the document(s), then digitize them.

        With ``split``, QR separator sheets cut the batch into several documents."""
        job = self._add(
            Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what=what, user=actor.username, backlog=backlog)
        )

        def work() -> None:
            captured = pipeline.capture(
                self._watched(job, pages()),
                self.store,
                source=source,
                actor=actor,
                dossier_code=dossier_code,
                backlog=backlog,
                split_prefixes=self.separator_prefixes if split else (),
                batch=job.id,
            )
            self._digitize_parts(job, captured)

        self._run(job, work)
        return job

    def intake(self, intake_id: str, *, dossier_code: str | None, actor: Actor, backlog: bool = False) -> Job:
        """Uploaded files, already recorded as an intake: decode them here (not in the request), then digitize."""
        job = self._add(
            Job(id=intake_id, dossier_code=dossier_code, what="upload", user=actor.username, backlog=backlog)
        )

        def work() -> None:
            captured = pipeline.capture_intake(
                self.store,
                intake_id,
                split_prefixes=self.separator_prefixes,
                watch=lambda pages: self._watched(job, pages),
            )
            self._digitize_parts(job, captured)

        self._run(job, work)
        return job

    def redo(self, *doc_ids: str, dossier_code: str | None, user: str, backlog: bool = False) -> Job:
        """Digitize recorded documents again (after pages were rotated, moved, replaced, deleted or split)."""
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what="redo", user=user, backlog=backlog))
        job.doc_ids = list(doc_ids)
        job.doc_id = doc_ids[0]
        with db.transaction(self.factory) as session:
            for doc_id in doc_ids:
                doc = session.get(db.Document, doc_id)
                job.pages_total += doc.page_count if doc else 0

        def work() -> None:
            for doc_id in doc_ids:
                self._digitize(job, doc_id, [])

        self._run(job, work)
        return job

    def resume(self) -> Job:
        """Finish interrupted intakes and documents (at start-up); one that fails never blocks the others."""
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=None, what="resume", user="system"))
        before = db.utcnow()

        def work() -> None:
            job.state = "processing"
            self.sweep_uploads(before)
            done = pipeline.resume(self.settings, self.options, split_prefixes=self.separator_prefixes, before=before)
            job.doc_ids = list(done.finished)
            if done.finished or done.failed:
                log.info("resumed %d document(s); %d could not be finished", len(done.finished), len(done.failed))

        self._run(job, work)
        return job

    def sweep_uploads(self, before: datetime) -> list[str]:
        """Remove upload folders (routes.capture.save_uploads) that a kill left while a request was storing
        its files; folders made from ``before`` on belong to requests being answered now."""
        root = self.settings.data_dir / UPLOADS_DIR
        if not root.is_dir():
            return []
        removed = pipeline.remove_stale_folders(root.glob("upload-*"), before)
        if removed:
            log.info("removed %d upload folder(s) left by an interrupted request", len(removed))
        return removed

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
        if result.pages:
            per_page = (time.monotonic() - started) * max(1, self.options.workers) / len(result.pages)
            self.seconds_per_page = 0.7 * self.seconds_per_page + 0.3 * per_page
        log.info("web job digitized pages=%d", len(result.pages), extra={"doc_id": doc_id})

    def _fail(self, job: Job, err: BaseException) -> None:
        job.error_code = err.code if isinstance(err, ApplianceError) else "unknown"
        job.error = message_for(err)
        kept = err.params.get("documents", "") if isinstance(err, ApplianceError) else ""
        if kept and not job.doc_ids:  # pages captured before the fault were recorded: digitize them
            job.doc_ids = kept.split(",")
            job.doc_id = job.doc_ids[0]
            job.kept_pages = int(err.params.get("kept_pages", "0") or 0) if isinstance(err, ApplianceError) else 0
            self.redo(*job.doc_ids, dossier_code=job.dossier_code, user=job.user, backlog=job.backlog)
        job.state = "failed"
        job.finished = time.monotonic()
        if isinstance(err, ApplianceError):
            log.warning("web job failed code=%s detail=%s", err.code, err.detail)
        else:
            log.exception("web job crashed")
