"""The benchmark corpus generator and the error-rate functions."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from bench.corpus import (
    _levenshtein_np,
    camera_photo_with_corners,
    cer,
    cer_unordered,
    degrade_scan,
    normalise,
    render_layout,
    render_page,
    write_corpus,
)

DPI = 100  # small pages keep these tests fast; layout is resolution independent


def test_render_page_is_deterministic_per_seed() -> None:
    a_img, a_txt = render_page(seed=5, dpi=DPI)
    b_img, b_txt = render_page(seed=5, dpi=DPI)
    c_img, c_txt = render_page(seed=6, dpi=DPI)
    assert a_txt == b_txt
    assert np.array_equal(a_img, b_img)
    assert a_txt != c_txt


def test_render_page_is_a4_rgb() -> None:
    img, _ = render_page(seed=1, dpi=DPI)
    assert img.dtype == np.uint8
    assert img.shape == (round(297 / 25.4 * DPI), round(210 / 25.4 * DPI), 3)
    assert img.min() < 60  # there is ink


@pytest.mark.parametrize("seed", range(6))
def test_ground_truth_is_nfc_with_number_and_date_lines(seed: int) -> None:
    _, text = render_page(seed=seed, dpi=DPI)
    assert unicodedata.normalize("NFC", text) == text
    lines = text.split("\n")
    assert any(re.fullmatch(r"Số: \d+/[A-ZĐ-]+", ln) for ln in lines), lines[:8]
    assert any(re.fullmatch(r".+, ngày \d\d tháng \d\d? năm 20\d\d", ln) for ln in lines), lines[:8]
    assert re.search(r"\b0\d{11}\b", text)  # a 12-digit personal ID number


def test_reading_order_is_left_header_block_first() -> None:
    page = render_layout(seed=2, dpi=DPI)
    texts = [ln.text for ln in page.lines]
    assert texts[0] == "UỶ BAN NHÂN DÂN"
    assert texts.index("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM") > next(
        i for i, t in enumerate(texts) if t.startswith("Số: ")
    )
    # boxes lie inside the page
    h, w = page.image.shape[:2]
    for ln in page.lines:
        x0, y0, x1, y1 = ln.box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, ln


def test_seal_adds_red_ink_and_colour_tints_paper() -> None:
    plain, _ = render_page(seed=3, dpi=DPI)
    sealed, text = render_page(seed=3, dpi=DPI, colour=True, seal=True)
    assert text == render_page(seed=3, dpi=DPI)[1]  # seal and signature are not text
    r, g, b = (sealed[..., i].astype(int) for i in range(3))
    assert ((r - g > 60) & (r - b > 60)).sum() > 200  # red stamp ink
    assert ((b - r > 50) & (b - g > 30)).sum() > 20  # blue signature ink
    assert not ((plain[..., 0].astype(int) - plain[..., 1]) > 60).any()
    assert sealed[0, 0, 2] < sealed[0, 0, 0] < 255  # warm off-white paper


def test_degrade_scan_upside_down_is_rot180() -> None:
    img, _ = render_page(seed=4, dpi=DPI)
    up = degrade_scan(img, noise=0.0, border=False, seed=1)
    down = degrade_scan(img, upside_down=True, noise=0.0, border=False, seed=1)
    diff = np.abs(np.rot90(up, 2).astype(int) - down.astype(int))
    assert diff.max() <= 1
    assert np.abs(up.astype(int) - down.astype(int)).mean() > 5  # and it really is turned


def test_degrade_scan_skew_downsample_and_grey() -> None:
    grey = render_page(seed=4, dpi=DPI)[0][..., 1].copy()
    out = degrade_scan(grey, skew_deg=3.0, dpi_in=DPI, dpi_out=DPI // 2, jpeg_quality=75, seed=2)
    assert out.ndim == 2
    assert abs(out.shape[0] - grey.shape[0] / 2) <= 1
    # corners uncovered by the rotation are paper-white, not black
    assert out[2, 2] > 200 or out[-3, -3] > 200


def test_camera_photo_size_and_page_inside_frame() -> None:
    img, _ = render_page(seed=7, dpi=DPI)
    photo, corners = camera_photo_with_corners(img, seed=7)
    assert photo.shape in {(4000, 3000, 3), (3264, 2448, 3), (2448, 3264, 3)}
    h, w = photo.shape[:2]
    margin = 0.02 * min(w, h)
    assert (corners[:, 0] > margin).all() and (corners[:, 0] < w - margin).all()
    assert (corners[:, 1] > margin).all() and (corners[:, 1] < h - margin).all()
    # perspective: the page is not an axis-aligned rectangle
    assert abs(corners[0, 1] - corners[1, 1]) > 0.005 * h or abs(corners[0, 0] - corners[3, 0]) > 0.005 * w
    # the page (bright) is brighter than the desk around it
    cx, cy = corners.mean(axis=0).astype(int)
    assert photo[cy - 20 : cy + 20, cx - 20 : cx + 20].mean() > photo[:10, :10].mean()


def test_cer_known_cases() -> None:
    assert cer("abc", "abc") == 0.0
    assert cer("abc", "abd") == pytest.approx(1 / 3)
    assert cer("abcd", "") == 1.0
    assert cer("", "") == 0.0
    assert cer("ab  c\nd", " ab c d ") == 0.0  # whitespace collapsed
    assert cer("Hòa", unicodedata.normalize("NFD", "Hòa")) == 0.0  # NFC on both sides
    assert cer("Điều 1", "Điều L") == pytest.approx(1 / 6)
    assert cer("ab", "abxyz") == pytest.approx(3 / 2)  # insertions can push it above 1


@pytest.mark.parametrize(("a", "b"), [("kitten", "sitting"), ("", "abc"), ("Quảng Trị", "Quang Tri"), ("ab", "ba")])
def test_numpy_levenshtein_matches_reference(a: str, b: str) -> None:
    expected = {"kitten": 3, "": 3, "Quảng Trị": 2, "ab": 2}[a]
    assert _levenshtein_np(a, b) == expected


def test_cer_unordered_ignores_block_order_but_not_errors() -> None:
    ref = "UỶ BAN NHÂN DÂN\nXÃ CAM HIẾU\nCỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐiều 1. Nội dung"
    swapped = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nUỶ BAN NHÂN DÂN\nXÃ CAM HIẾU\nĐiều 1. Nội dung"
    merged = "UỶ BAN NHÂN DÂN CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nXÃ CAM HIẾU\nĐiều 1. Nội dung"
    assert cer(ref, swapped) > 0.2
    assert cer_unordered(ref, swapped) == 0.0
    assert cer_unordered(ref, merged) == 0.0
    assert cer_unordered(ref, swapped.replace("Điều 1", "Điều L")) == pytest.approx(1 / len(normalise(ref)))
    assert cer_unordered(ref, ref) == 0.0
    garbled = "UỶ BAN NHÂN DÂN\nXÃ CAM HIẾU\nqwxz zzq qxw zzzq wq zqx qwqw zqz\nĐiều 1. Nội dung"
    assert cer(ref, garbled) > 0.3
    assert cer_unordered(ref, garbled) <= cer(ref, garbled) + 1e-9  # garbled text is not counted twice
    assert cer_unordered(ref, "") == 1.0
    assert cer_unordered(ref, swapped + "\nrác thêm") > 0.0  # extra text counts


def test_write_corpus_files_and_manifest(tmp_path: Path) -> None:
    manifest = write_corpus(tmp_path, n_per_kind=1, kinds=("scan300_grey",))
    assert len(manifest) == 1
    on_disk = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == manifest
    item = on_disk[0]
    assert item["kind"] == "scan300_grey" and item["dpi"] == 300
    assert {"file", "truth", "skew_deg", "upside_down"} <= item.keys()
    assert 0.5 <= abs(item["skew_deg"]) <= 4.0
    assert (tmp_path / item["file"]).stat().st_size > 10_000
    assert "Số: " in (tmp_path / item["truth"]).read_text(encoding="utf-8")


def test_measure_sees_child_memory_and_exit_code() -> None:
    import sys

    from bench.run import measure

    code = "import numpy as np, time; a = np.ones(150 * 2**20, np.uint8); time.sleep(0.3); print('ok')"
    m = measure([sys.executable, "-c", code])
    assert m.returncode == 0 and m.stdout.strip() == "ok"
    assert m.peak_single_rss_mb > 140 and m.peak_tree_rss_mb >= m.peak_single_rss_mb
    assert m.maxrss_child_mb > 140
    assert measure([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3


def test_measure_counts_a_forked_copy_once_in_pss() -> None:
    """A child forked before its exec shares the parent's pages: the summed RSS counts them twice, the PSS once."""
    import sys

    from bench.run import measure

    code = (
        "import numpy as np, os, time; a = np.ones(150 * 2**20, np.uint8); pid = os.fork()\n"
        "if pid == 0: time.sleep(1.0); os._exit(0)\n"
        "os.waitpid(pid, 0)"
    )
    m = measure([sys.executable, "-c", code])
    assert m.returncode == 0
    assert m.peak_tree_rss_mb > 290  # both processes, 150 MB each
    assert 140 < m.peak_tree_pss_mb < 200  # the pages exist once


def test_summary_ratios_and_table() -> None:
    from bench.run import Row, markdown, summarise

    rows = [
        Row("ours", "scan", "a", True, pages=1, wall_s=2.0, kb_per_page=50, cer_unordered=0.01, cer=0.02,
            peak_tree_rss_mb=300, peak_tree_pss_mb=240),
        Row("anchor", "scan", "a", True, pages=1, wall_s=8.0, kb_per_page=500, cer_unordered=0.02, cer=0.04,
            peak_tree_rss_mb=150, peak_tree_pss_mb=120),
        Row("anchor", "scan", "b", False, error="exit 2"),
    ]  # fmt: skip
    (s,) = summarise(rows)
    assert s["anchor"]["failed"] == 1 and s["anchor"]["pages"] == 1
    r = s["ratio_ours_over_anchor"]
    assert r["s_per_page"] == pytest.approx(0.25) and r["kb_per_page"] == pytest.approx(0.1)
    assert r["peak_tree_rss_mb"] == pytest.approx(2.0) and r["cer_unordered"] == pytest.approx(0.5)
    assert r["peak_tree_pss_mb"] == pytest.approx(2.0)
    table = markdown([s])
    assert "| scan | ours | 1 | 0 | 1.00% |" in table and "0.25×" in table
