"""Words OCR was unsure of reach the officer: boxed on the page image and named under the fields that
contain them, so a wrong digit in a number, date or ID is seen before signing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageFont

from appliance import db, documents, pipeline
from appliance.model import RawPage, ReviewWord, Source
from appliance.settings import Settings
from appliance.workflow import Actor
from tests.integration.test_web import login

FONT = "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"


def test_fields_holding_unsure_words_are_named() -> None:
    words = [ReviewWord(0, "12/QĐ-UBND", 41.0, (0.1, 0.1, 0.2, 0.12)), ReviewWord(0, "ngày", 55.0, (0, 0, 0.1, 0.1))]
    values = {"so_ky_hieu": "12/QĐ-UBND", "trich_yeu": "Về việc cấp giấy", "ngay_ban_hanh": "05/07/2023"}
    assert documents.doubtful_fields(values, words) == {"so_ky_hieu": ["12/QĐ-UBND"]}
    assert documents.doubtful_fields(values, []) == {}


def _page_with_a_smudged_line(path: Path) -> None:
    """An A4 page at 200 dpi: clear Vietnamese lines, and one line blurred as by a wet thumb."""
    page = Image.new("L", (1654, 2339), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 40)
    lines = ["ỦY BAN NHÂN DÂN XÃ QUẢNG PHÚ", "Số: 12/QĐ-UBND", "QUYẾT ĐỊNH về việc cấp giấy chứng nhận"]
    for i, line in enumerate(lines):
        draw.text((150, 200 + 90 * i), line, font=font, fill=0)
    draw.text((150, 600), "Người nhận: Nguyễn Văn Bình 038095001234", font=font, fill=0)
    pixels = np.asarray(page).copy()
    band = pixels[590:660, 140:1500]
    pixels[590:660, 140:1500] = cv2.GaussianBlur(band, (0, 0), 4.5)
    Image.fromarray(pixels).save(path, dpi=(200, 200))


def test_the_review_page_boxes_and_names_unsure_words(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    sample = tmp_path / "page.png"
    _page_with_a_smudged_line(sample)
    image = np.asarray(Image.open(sample))
    store = pipeline.storage(settings)
    captured = pipeline.capture(
        [RawPage(image=image, dpi=200, source=Source.FILE, label="page.png")],
        store,
        source="file",
        actor=Actor("canbo"),
    )
    doc_id = captured.document_ids[0]
    pipeline.run_document(doc_id, settings, pipeline.options_from(settings, workers=1))
    with db.transaction(store.factory) as session:
        doc = documents.load(session, doc_id).doc
        words = documents.review_words(doc)
    assert words, "the smudged line gave no unsure word"
    assert all(w.page == 0 and 0 <= w.box[0] < w.box[2] <= 1 and 0 <= w.box[1] < w.box[3] <= 1 for w in words)
    login(client)
    page = client.get(f"/documents/{doc_id}").text
    assert 'id="unsure-words"' in page and '<svg class="unsure"' in page
    assert page.count("<rect ") == len(words)
