"""OriginalStore: exact round-trips, idempotency, atomic writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from appliance.errors import StorageError
from appliance.originals import OriginalStore, write_atomic


def page(seed: int, colour: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (97, 61, 3) if colour else (97, 61)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.mark.parametrize("colour", [True, False])
def test_round_trip_exact_pixels_and_dpi(tmp_path: Path, colour: bool) -> None:
    store = OriginalStore(tmp_path / "originals")
    img = page(1, colour)
    digest = store.put_image(img, dpi=300)
    back, dpi = store.get_image(digest)
    assert back.dtype == np.uint8 and back.shape == img.shape
    assert np.array_equal(back, img)
    assert dpi == 300.0
    p = store.path(digest)
    assert p.parent.name == digest[:2] and p.name == digest[2:] + ".png"
    assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    assert store.verify(digest)


def test_same_content_same_digest_second_put_noop(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    img = page(2)
    d1 = store.put_image(img, dpi=200)
    mtime = store.path(d1).stat().st_mtime_ns
    d2 = store.put_image(img.copy(), dpi=200)
    assert d1 == d2
    assert store.path(d1).stat().st_mtime_ns == mtime
    assert store.put_image(page(3), dpi=200) != d1
    assert store.put_image(img, dpi=300) != d1  # dpi is part of the original
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(files) == 3


def test_put_file_byte_for_byte(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path / "o")
    data = b"%PDF-1.7\n...signed bytes that must never change...\n%%EOF\n"
    src = tmp_path / "in.pdf"
    src.write_bytes(data)
    d1 = store.put_file(src, ".pdf")
    d2 = store.put_file(data, "pdf")
    assert d1 == d2 == hashlib.sha256(data).hexdigest()
    assert store.path(d1).read_bytes() == data
    assert store.path(d1).suffix == ".pdf"
    assert d1 in store
    assert "0" * 64 not in store


def test_missing_digest(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    with pytest.raises(StorageError):
        store.path("ab" * 32)
    with pytest.raises(ValueError):
        store.path("../etc/passwd")


def test_no_temp_file_left_after_failure_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OriginalStore(tmp_path)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageError):
        store.put_image(page(4), dpi=300)
    monkeypatch.undo()
    leftovers = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert leftovers == []
    # and the store works again afterwards, with nothing half-written in the way
    digest = store.put_image(page(4), dpi=300)
    assert np.array_equal(store.get_image(digest)[0], page(4))


def test_half_written_target_is_never_visible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure at rename leaves no object under its final name."""
    store = OriginalStore(tmp_path)

    def broken_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError):
        store.put_file(b"abc", ".bin")
    monkeypatch.undo()
    digest = hashlib.sha256(b"abc").hexdigest()
    assert digest not in store
    assert [f for f in tmp_path.rglob("*") if f.is_file()] == []


def test_rejects_wrong_image_shapes(tmp_path: Path) -> None:
    store = OriginalStore(tmp_path)
    with pytest.raises(ValueError):
        store.put_image(np.zeros((4, 4, 4), np.uint8), dpi=300)
    with pytest.raises(ValueError):
        store.put_image(np.zeros((4, 4), np.uint16), dpi=300)  # type: ignore[arg-type]


def test_write_atomic_replaces_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.pdf"
    write_atomic(target, b"first")
    write_atomic(target, b"second version")
    assert target.read_bytes() == b"second version"

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        write_atomic(target, b"third")
    monkeypatch.undo()
    assert target.read_bytes() == b"second version"  # old content intact
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.pdf"]
