"""Shared fixtures: real components, started privately per test run.

A missing system tool skips the test locally with the reason and fails it in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(*tools: str) -> None:
    """Skip (locally) or fail (in CI) when a system tool is not on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    reason = f"missing system tool(s): {', '.join(missing)} (run `make test` to install them)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def sigpipe_ignored() -> bool:
    """Whether the kernel has this process ignore SIGPIPE (Python sets it at start; C code could reset it
    behind Python's back, and then writing to a pipe whose reader is gone kills the whole run)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGPIPE - 1) & 1)
    return True


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Name the test after which SIGPIPE stopped being ignored, and ignore it again."""
    if not sigpipe_ignored():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        item.warn(pytest.PytestWarning("SIGPIPE was no longer ignored after this test; ignored again"))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see the developer's APPLIANCE_* variables."""
    for key in list(os.environ):
        if key.startswith("APPLIANCE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    yield


@pytest.fixture(scope="session")
def sane_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private SANE config that enables only the `test` backend, with A4 geometry."""
    need("scanimage")
    src = Path("/etc/sane.d/test.conf")
    if not src.exists():
        (pytest.fail if IN_CI else pytest.skip)("SANE test backend config /etc/sane.d/test.conf missing")
    d = tmp_path_factory.mktemp("sane")
    (d / "dll.conf").write_text("test\n")
    lines = []
    for line in src.read_text().splitlines():
        if line.strip().startswith("geometry_max"):
            line = "geometry_max 300.0"
        lines.append(line)
    (d / "test.conf").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture
def sane_env(sane_config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SANE_CONFIG_DIR", str(sane_config_dir))
    return sane_config_dir


@pytest.fixture
def tesseract() -> str:
    need("tesseract")
    import subprocess

    langs = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split()
    if "vie" not in langs:
        (pytest.fail if IN_CI else pytest.skip)("tesseract has no `vie` language (tesseract-ocr-vie)")
    return "tesseract"
