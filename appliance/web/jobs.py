"""Background work started from the web page: capture a batch, then digitize it.

A job runs in a small thread pool so the page answers at once; the page polls the job's progress
(htmx). Captured pages get an in-memory thumbnail as they arrive, so the officer sees them while the
scanner keeps feeding. The document itself is recorded and digitized by :mod:`appliance.pipeline`
(the same functions the CLI uses); nothing here talks to a device except through the Scanner
protocol handed in by the caller.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from appliance import pipeline
from appliance.errors import ApplianceError
from appliance.messages_vi import message_for
from appliance.model import RawPage
from appliance.settings import Settings

log = logging.getLogger(__name__)

THUMB_WIDTH = 160


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
    what: str  # "scan" | "upload" | "redo"
    user: str
    backlog: bool = False  # an old result digitized under the backlog plan
    state: str = "waiting"  # waiting -> capturing -> processing -> done | failed
    thumbs: list[bytes] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    doc_id: str | None = None
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
    ) -> None:
        self.settings = settings
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

    def eta_s(self, job: Job) -> float | None:
        """Seconds until the job should be done (rough: pages x recent seconds per page)."""
        if not job.running:
            return None
        pages = max(1, len(job.thumbs))
        spent = time.monotonic() - (job.processing_since or time.monotonic())
        return max(1.0, pages * self.seconds_per_page / max(1, self.options.workers) - spent)

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
    ) -> Job:
        """Capture pages (lazily, e.g. from the scanner), record the document, then digitize it."""
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what=what, user=user, backlog=backlog))

        def watched() -> Iterator[RawPage]:
            job.state = "capturing"
            for raw in pages():
                job.thumbs.append(thumbnail(raw.image))
                job.labels.append(raw.label)
                yield raw

        def run() -> None:
            try:
                doc_id = pipeline.capture_document(
                    watched(), self.settings, source=source, digitizer=digitizer, dossier_code=dossier_code
                )
                job.doc_id = doc_id
                self._digitize(job, doc_id)
            except Exception as err:  # noqa: BLE001 - shown to the officer, never crashes the page
                self._fail(job, err)

        self._pool.submit(run)
        return job

    def redo(self, doc_id: str, *, dossier_code: str | None, user: str) -> Job:
        """Digitize a recorded document again (after pages were rotated, moved or deleted)."""
        job = self._add(Job(id=uuid.uuid4().hex, dossier_code=dossier_code, what="redo", user=user))
        job.doc_id = doc_id

        def run() -> None:
            try:
                self._digitize(job, doc_id)
            except Exception as err:  # noqa: BLE001
                self._fail(job, err)

        self._pool.submit(run)
        return job

    def _digitize(self, job: Job, doc_id: str) -> None:
        job.state = "processing"
        job.processing_since = time.monotonic()
        result, _pdf = pipeline.run_document(doc_id, self.settings, self.options)
        if self.after is not None:
            self.after(doc_id, result, job)
        spent = time.monotonic() - job.processing_since
        if result.pages:
            per_page = spent * max(1, self.options.workers) / len(result.pages)
            self.seconds_per_page = 0.7 * self.seconds_per_page + 0.3 * per_page
        job.finished = time.monotonic()
        job.state = "done"
        log.info("web job done pages=%d", len(result.pages), extra={"doc_id": doc_id})

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
