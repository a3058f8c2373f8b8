"""The memory budget of capture: pages decode one at a time from the file on disk, each within a pixel
budget, and a request holds at most a budget of pages (issue 11, item 3). Nothing here is timed."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from appliance import pipeline
from appliance.capture import files
from appliance.errors import TooManyPages
from appliance.messages_vi import MESSAGES_VI, message_for
from tests.faults import text_pdf


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts PDFium page renders (one per page decoded from a PDF with vector text)."""
    done: list[int] = []
    real = pdfium.PdfPage.render

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        done.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pdfium.PdfPage, "render", counted)
    yield done


@pytest.fixture(scope="module")
def pdf80(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_pdf(tmp_path_factory.mktemp("pdf") / "tám-mươi.pdf", pages=80)


def test_an_80_page_pdf_yields_its_first_page_without_rendering_the_rest(pdf80: Path, renders: list[int]) -> None:
    assert files.count_pages(pdf80) == 80 and renders == []  # counted, nothing decoded
    pages = files.iter_file(pdf80)
    first = next(pages)
    assert len(renders) == 1
    assert first.label.endswith("[1]") and first.dpi == files.RENDER_DPI
    second = next(pages)
    assert len(renders) == 2 and second.label.endswith("[2]")
    pages.close()  # the officer's receipt needs only the first pages: the file is closed, nothing more decoded
    assert len(renders) == 2


def test_file_pages_decode_lazily_with_the_officers_labels(pdf80: Path, renders: list[int]) -> None:
    pages = pipeline.file_pages([("ho-so.pdf", pdf80)], max_pages=80)
    first = next(pages)
    assert first.label == "ho-so.pdf [1]" and len(renders) == 1
    pages.close()


def test_memory_stays_one_page_deep_over_the_whole_file(pdf80: Path) -> None:
    budget = 1_000_000  # small pages keep the test quick; the bound is what matters
    page_bytes = budget * 3  # RGB
    tracemalloc.start()
    try:
        count = 0
        for page in files.iter_file(pdf80, max_pixels=budget):
            assert page.image.shape[0] * page.image.shape[1] <= budget
            count += 1
            del page
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 80
    assert peak < 4 * page_bytes, f"peak {peak / 1e6:.1f} MB: pages are not decoded one at a time"


def test_the_page_budget_is_enforced_before_any_page_is_decoded(pdf80: Path, renders: list[int]) -> None:
    pages = pipeline.file_pages([("a.pdf", pdf80), ("b.pdf", pdf80)], max_pages=100)
    with pytest.raises(TooManyPages) as info:
        next(pages)
    assert renders == []
    assert info.value.params["pages"] == "160" and info.value.params["max_pages"] == "100"
    assert message_for(info.value) == MESSAGES_VI["too_many_pages"]


def test_a_huge_image_is_scaled_down_to_the_pixel_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    big = rng.integers(0, 256, size=(2000, 3000), dtype=np.uint8)
    png = tmp_path / "lon.png"
    Image.fromarray(big).save(png, dpi=(600, 600))
    (page,) = files.iter_file(png, max_pixels=1_500_000)
    h, w = page.image.shape[:2]
    assert h * w <= 1_500_000 and abs(w / h - 1.5) < 0.01
    assert page.dpi == pytest.approx(600 * w / 3000, abs=0.2)  # same physical size, fewer dots
    (full,) = files.iter_file(png)  # under the default budget (35 MP): untouched
    assert full.image.shape == (2000, 3000) and full.dpi == 600


def test_a_huge_jpeg_is_decoded_at_a_reduced_size(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:2400, 0:3200]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=2).astype(np.uint8)
    jpg = tmp_path / "anh.jpg"
    Image.fromarray(rgb).save(jpg, dpi=(400, 400), quality=85)
    (page,) = files.iter_file(jpg, max_pixels=1_000_000)
    h, w = page.image.shape[:2]
    assert h * w <= 1_000_000 and page.image.ndim == 3
    assert page.dpi == pytest.approx(400 * w / 3200, abs=0.2)


def test_a_pdf_page_renders_within_the_pixel_budget(tmp_path: Path) -> None:
    pdf = text_pdf(tmp_path / "mot.pdf", pages=1)
    (page,) = files.iter_file(pdf, max_pixels=2_000_000)
    h, w = page.image.shape[:2]
    assert h * w <= 2_000_000 * 1.01
    assert page.dpi < files.RENDER_DPI and abs(w - 8.27 * page.dpi) < 3
