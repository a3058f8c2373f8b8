"""The `appliance digitize` / `scan` / `resume` contract, end to end, through the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image

from bench.corpus import cer_unordered, degrade_scan, render_page
from tests.conftest import need
from tests.faults import bomb_png, empty_pdf, signed_pdf

pytestmark = [pytest.mark.tesseract, pytest.mark.slow]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=full_env, timeout=600
    )


@pytest.fixture(scope="module")
def two_pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str]]:
    d = tmp_path_factory.mktemp("pages")
    paths, truths = [], []
    for i, (skew, flip) in enumerate([(1.8, False), (-2.5, True)]):
        page, truth = render_page(seed=20 + i, dpi=300)
        img = degrade_scan(page, skew_deg=skew, upside_down=flip, seed=i)
        path = d / f"page{i + 1}.png"
        Image.fromarray(img).save(path, dpi=(300, 300))
        paths.append(path)
        truths.append(truth)
    return paths, truths


def test_digitize_two_scanned_pages_to_searchable_pdfa(
    tesseract: str, two_pages: tuple[list[Path], list[str]], tmp_path: Path
) -> None:
    need("pdftotext", "qpdf")
    paths, truths = two_pages
    out = tmp_path / "doc.pdf"
    proc = run_cli("digitize", *map(str, paths), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    assert report["page_count"] == 2 and [p["index"] for p in report["pages"]] == [0, 1]
    assert report["pages"][0]["rotation"] == 0
    assert report["pages"][1]["rotation"] == 180  # the upside-down sheet was turned
    assert abs(report["pages"][0]["skew"]) > 1.0  # and the skew was measured
    assert all(p["encoding"] in {"mrc", "jpeg"} for p in report["pages"])
    assert set(report["timings"]) >= {"clean", "ocr", "encode", "assemble", "total"}
    names = {f["name"] for f in report["fields"]}
    assert {"so_ky_hieu", "ngay_ban_hanh", "loai_van_ban"} <= names

    with pikepdf.open(out) as pdf:
        assert len(pdf.pages) == 2
        meta = pdf.open_metadata()
        assert meta.get("pdfaid:part") == "2"
    subprocess.run(["qpdf", "--check", str(out)], check=True, capture_output=True)
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True, check=True).stdout
    pages_text = text.split("\f")
    for truth, got in zip(truths, pages_text, strict=False):
        assert cer_unordered(truth, got) < 0.02


def test_digitize_bad_inputs_give_one_clear_line(tmp_path: Path) -> None:
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not an image")
    cases = {
        "unreadable_file": [str(tmp_path / "missing.png")],
        "not_an_image": [str(not_image)],
        "image_too_large": [str(bomb_png(tmp_path / "bomb.png"))],
        "no_pages": [str(empty_pdf(tmp_path / "empty.pdf"))],
    }
    for code, inputs in cases.items():
        proc = run_cli("digitize", *inputs, "-o", str(tmp_path / "x.pdf"))
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert code in lines[0] and lines[0].startswith("lỗi: ")
        assert not (tmp_path / "x.pdf").exists()


def test_digitize_a_blank_page_is_kept_and_flagged(tesseract: str, tmp_path: Path) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((2339, 1654), 250, np.uint8)).save(blank, dpi=(200, 200))
    proc = run_cli("digitize", str(blank), "-o", str(tmp_path / "b.pdf"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["page_count"] == 1
    assert "blank" in report["pages"][0]["flags"]


@pytest.mark.sane
def test_scan_records_archives_and_resume_is_idempotent(tesseract: str, sane_env: Path, tmp_path: Path) -> None:
    env = {"SANE_CONFIG_DIR": str(sane_env), "APPLIANCE_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli("scan", "--device", "test:0", "--resolution", "100", "--mode", "Gray", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    archived = Path(report["archived"])
    assert archived.exists() and report["page_count"] == 1

    import sqlite3

    con = sqlite3.connect(tmp_path / "data" / "appliance.db")
    state, pdf_path = con.execute(
        "select state, pdf_path from documents where id=?", (report["document_id"],)
    ).fetchone()
    con.close()
    assert state == "digitized" and Path(pdf_path) == archived
    originals = list((tmp_path / "data" / "originals").rglob("*.png"))
    assert len(originals) == 1

    again = run_cli("resume", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] == []  # nothing left half-done


def test_resume_finishes_a_document_interrupted_after_capture(
    tesseract: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import pipeline
    from appliance.model import RawPage, Source
    from appliance.settings import load_settings

    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    page, _ = render_page(seed=3, dpi=200)
    doc_id = pipeline.capture_document(
        [RawPage(image=page, dpi=200, source=Source.SCANNER, label="ADF 1")], settings, source="scanner"
    )
    # power cut here: the document is recorded, nothing else happened
    proc = run_cli("resume", "--json", env={"APPLIANCE_DATA_DIR": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["resumed"] == [doc_id]
    assert (tmp_path / "data" / "documents" / f"{doc_id}.pdf").exists()


def test_signed_pdf_is_kept_byte_for_byte_and_its_signature_reported(tmp_path: Path) -> None:
    signed, _cert = signed_pdf(tmp_path)
    out = tmp_path / "kept.pdf"
    proc = run_cli("digitize", str(signed), "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kept_byte_for_byte"] is True
    assert out.read_bytes() == signed.read_bytes()
    [sig] = report["signatures"]
    assert sig["intact"] is True and sig["trusted"] == "unknown"

    # a signed PDF cannot be merged with other pages: that would break its signature
    page = tmp_path / "page.png"
    Image.fromarray(np.full((200, 200), 255, np.uint8)).save(page)
    mixed = run_cli("digitize", str(signed), str(page), "-o", str(tmp_path / "mixed.pdf"))
    assert mixed.returncode == 1 and "bad_input" in mixed.stderr
    assert not (tmp_path / "mixed.pdf").exists()


def test_an_officers_orientation_is_never_undone(
    tesseract: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance import db, pipeline
    from appliance.model import RawPage, Source
    from appliance.settings import load_settings

    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings()
    page, _ = render_page(seed=4, dpi=200)
    upside_down = np.ascontiguousarray(page[::-1, ::-1])
    opts = pipeline.PipelineOptions(workers=1)
    doc_id = pipeline.capture_document(
        [RawPage(image=upside_down, dpi=200, source=Source.SCANNER)], settings, source="scanner"
    )
    result, _ = pipeline.run_document(doc_id, settings, opts)
    assert result.pages[0].rotation == 180  # automatic: turned upright

    factory = db.session_factory(db.make_engine(settings.db_url))
    with db.transaction(factory) as session:
        row = session.get(db.Document, doc_id)
        assert row is not None
        row.pages[0].upright = True  # the officer says: keep it exactly as stored
        row.state = db.DocState.CAPTURED  # as a page edit does: the document is digitized again
    result, _ = pipeline.run_document(doc_id, settings, opts)
    assert result.pages[0].rotation == 0
