"""`kill -9` of `appliance digitize` leaves no tesseract running and no OCR temporary folder for good."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from appliance import ocr
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _is_tesseract(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"tesseract")
    except OSError:
        return False


def test_kill_9_of_digitize_takes_its_tesseract_along(tmp_path: Path) -> None:
    need("tesseract")
    page = np.full((3508, 2480), 255, np.uint8)  # A4 at 300 dpi: tesseract takes a while on it
    rng = np.random.default_rng(0)
    page[rng.random(page.shape) < 0.02] = 0
    image = tmp_path / "trang.png"
    Image.fromarray(page).save(image, dpi=(300, 300))
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"), "APPLIANCE_CONFIG": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "digitize", str(image), "-o", str(tmp_path / "out.pdf")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tesseracts: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not tesseracts and proc.poll() is None:
        tesseracts = [c for c in _children(proc.pid) if _is_tesseract(c)]
        time.sleep(0.05)
    assert tesseracts, "tesseract never started"
    folders = list(Path(tempfile.gettempdir()).glob(f"{ocr.TMP_PREFIX}{proc.pid}-*"))
    assert folders, "no OCR folder named after its process"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    for _ in range(20):  # with the death signal it goes at once; an orphan would run on for many seconds
        alive = [t for t in tesseracts if _is_tesseract(t)]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"tesseract still running after its parent was killed: {alive}"
    assert all(f.exists() for f in folders)  # nobody was there to remove it ...
    removed = ocr.sweep_temp()  # ... until the next OCR run of any appliance process sweeps
    assert {f.name for f in folders} <= set(removed)
    assert not any(f.exists() for f in folders)
