"""A page's OCR overlaps its encoding when no other page's OCR runs (issue 14, time of a one-page run), never
so that a page's image work meets two tesseract runs (issue 11, the memory budget), and reads the same grey
page as the sequential path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from appliance import encode, ocr, pipeline
from appliance.model import CleanPage, RawPage, Source
from bench.corpus import degrade_scan, render_page

pytestmark = pytest.mark.slow


def _scans(n: int) -> list[np.ndarray]:
    grey = cv2.cvtColor(render_page(seed=7, dpi=150)[0], cv2.COLOR_RGB2GRAY)
    return [degrade_scan(grey, skew_deg=1.0, noise=3.0, border=False, seed=s) for s in range(n)]


def _raws(scans: list[np.ndarray]) -> Iterator[RawPage]:
    for i, image in enumerate(scans):
        yield RawPage(image=image, dpi=150.0, source=Source.FILE, label=f"p{i}", upright=True)


class _Runs:
    """Counts this process's tesseract runs in flight, and how many ran while each page was encoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.at_encode: list[int] = []
        real_start, real_cancel, real_encode = ocr.start, ocr.Recognition.cancel, encode.encode

        def start(page: CleanPage, opts: ocr.OcrOptions = ocr.OcrOptions()) -> ocr.Recognition:
            run = real_start(page, opts)
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            return run

        def cancel(run: ocr.Recognition) -> None:
            real_cancel(run)
            with self.lock:
                self.running -= 1

        def watched(page: CleanPage, opts: Any) -> Any:
            with self.lock:
                self.at_encode.append(self.running)
            return real_encode(page, opts)

        monkeypatch.setattr(ocr, "start", start)
        monkeypatch.setattr(ocr.Recognition, "cancel", cancel)
        monkeypatch.setattr(encode, "encode", watched)


def test_a_single_page_is_read_while_it_is_encoded(tesseract: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _Runs(monkeypatch)
    results = list(pipeline.process_pages(_raws(_scans(1)), pipeline.PipelineOptions(workers=2, read_qr=False)))
    assert len(results) == 1 and results[0].ocr.words
    assert runs.at_encode == [1]  # its tesseract was already running
    assert runs.running == 0  # and was waited for


def test_a_batch_never_encodes_a_page_beside_two_tesseract_runs(
    tesseract: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = _scans(4)
    runs = _Runs(monkeypatch)
    results = list(pipeline.process_pages(_raws(scans), pipeline.PipelineOptions(workers=2, read_qr=False)))
    assert [r.label for r in results] == ["p0", "p1", "p2", "p3"]
    assert len(runs.at_encode) == 4 and max(runs.at_encode) <= 1
    assert runs.at_encode[0] == 1  # the first page still overlapped its encoding
    assert runs.running == 0
    # the overlapped path reads exactly what the sequential one reads
    opts = pipeline.PipelineOptions(workers=1, read_qr=False)
    for raw, result in zip(_raws(scans), results, strict=True):
        alone = pipeline.process_page(raw, result.index, opts)
        assert alone.ocr.text == result.ocr.text
        assert alone.ocr.words == result.ocr.words
        assert alone.encoded == result.encoded


def test_a_cancelled_run_stops_tesseract_and_leaves_no_files(tesseract: str) -> None:
    page = CleanPage(image=_scans(1)[0], dpi=150.0, rotation=0, skew=0.0)
    run = ocr.start(page)
    folder = Path(run._tmp.name)
    assert (folder / "page.pgm").is_file()
    run.cancel()
    assert run._proc.returncode is not None  # reaped: not left running
    assert not folder.exists()
