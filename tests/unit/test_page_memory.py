"""One full-resolution page in memory at a time (issue 11, the capture memory budget): nothing keeps a page's
capture alive once it is clean -- not the file reader's suspended generator, not the pipeline's loop.

A page image that is still referenced cannot be freed, whatever `del` the code says; these tests follow the
capture with a weak reference. Peak memory itself is measured by bench/capture_memory.py (docs/performance.md).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance import encode, pipeline
from appliance.capture import files
from appliance.model import RawPage, Source
from bench.capture_memory import make_pdf
from bench.corpus import degrade_scan, render_page

pytestmark = pytest.mark.slow


def test_the_file_reader_keeps_no_page_it_has_handed_out(tmp_path: Path) -> None:
    pages = files.iter_file(make_pdf(tmp_path / "two.pdf", 2))
    page = next(pages)
    alive = weakref.ref(page.image)
    del page
    assert alive() is None  # the suspended generator holds no reference to it
    assert next(pages).image.shape[0] == 3508  # the next page, A4 at 300 dpi
    pages.close()


def test_the_pipeline_frees_each_capture_once_the_page_is_clean(
    tesseract: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slightly skewed scan: cleaning makes a new (deskewed) image, so the capture is no longer needed
    grey = cv2.cvtColor(render_page(seed=5, dpi=150)[0], cv2.COLOR_RGB2GRAY)
    scans = [degrade_scan(grey, skew_deg=1.5, noise=4.0, border=False, seed=s) for s in (1, 2, 3)]
    captures: list[weakref.ref[np.ndarray]] = []

    def capture(i: int) -> RawPage:
        image = np.array(scans[i])  # this page's own array, referenced only by the RawPage
        captures.append(weakref.ref(image))
        return RawPage(image=image, dpi=150.0, source=Source.FILE, label=f"p{i}", upright=True)

    def raws() -> Iterator[RawPage]:
        for i in range(len(scans)):
            yield capture(i)

    alive_while_encoding: list[bool] = []
    real_encode = encode.encode

    def watched(page, opts):  # type: ignore[no-untyped-def]
        assert page.image is not None
        alive_while_encoding.append(captures[-1]() is not None)
        return real_encode(page, opts)

    monkeypatch.setattr(encode, "encode", watched)
    opts = pipeline.PipelineOptions(workers=2, read_qr=False)
    results = list(pipeline.process_pages(raws(), opts))
    assert [r.label for r in results] == ["p0", "p1", "p2"]
    assert all(abs(r.skew) > 0.5 for r in results)  # deskewed: the clean page is a new image
    assert alive_while_encoding == [False, False, False]
