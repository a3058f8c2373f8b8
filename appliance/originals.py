"""Content-addressed, lossless storage of originals (what the device or file gave us).

Images are kept as PNG (dpi in the pHYs chunk), imported files byte for byte. Each object is
named by the sha256 of its stored bytes: ``root/ab/cdef....png``. Writes are atomic (temp file in
the same directory, fsync, rename, fsync of the directory), so a power cut leaves either the
whole object or nothing, and putting the same content twice is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from appliance.errors import DiskFull, StorageError, UnreadableFile
from appliance.model import PageImage

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


def encode_png(image: PageImage, *, dpi: float) -> bytes:
    """Lossless PNG bytes of a grey or RGB uint8 image, with its dpi."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected grey (H, W) or RGB (H, W, 3) uint8, got {image.dtype} {image.shape}")
    pil = Image.fromarray(np.ascontiguousarray(image), "L" if image.ndim == 2 else "RGB")
    buf = io.BytesIO()
    # fixed settings: the same pixels always give the same bytes, hence the same digest
    pil.save(buf, format="PNG", dpi=(dpi, dpi), compress_level=6)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Temp file in the same directory, fsync, rename over the target, fsync of the directory.
    The temp file is removed when anything fails.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class OriginalStore:
    """Originals under ``root``; the digest (sha256 hex) is the only handle callers keep.

    ``created`` lists what this instance wrote (not what it found already stored), so a caller whose
    transaction fails can take back exactly its own new objects (:meth:`remove`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.created: list[str] = []

    # --- writing ---------------------------------------------------------------------------------
    def put_image(self, image: PageImage, *, dpi: float) -> str:
        return self._put(encode_png(image, dpi=dpi), ".png")

    def put_file(self, source: Path | bytes, suffix: str) -> str:
        """Store an imported file byte for byte; ``suffix`` like ".pdf" or ".jpg"."""
        if not suffix.startswith("."):
            suffix = "." + suffix
        if not _SUFFIX.match(suffix):
            raise ValueError(f"bad suffix {suffix!r}")
        if isinstance(source, bytes):
            data = source
        else:
            try:
                data = Path(source).read_bytes()
            except OSError as err:
                raise UnreadableFile(f"{Path(source).name}: {err.strerror or err}") from err
        return self._put(data, suffix.lower())

    def _put(self, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._target(digest, suffix)
        if target.exists():
            return digest  # same content, already stored
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, data)
        except OSError as err:
            full = err.errno in (errno.ENOSPC, errno.EDQUOT)
            raise (DiskFull if full else StorageError)(f"cannot store original {digest[:12]}: {err}") from err
        self.created.append(digest)
        log.debug("stored original digest=%s bytes=%d", digest, len(data))
        return digest

    def remove(self, digest: str) -> bool:
        """Delete one stored object (an original no row names: the caller checked). Whether it existed."""
        try:
            target = self.path(digest)
        except StorageError:
            return False
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
            return True
        return False

    # --- reading ---------------------------------------------------------------------------------
    def _target(self, digest: str, suffix: str) -> Path:
        return self.root / digest[:2] / f"{digest[2:]}{suffix}"

    def path(self, digest: str) -> Path:
        """Where an original lives. Raises StorageError when it is not stored."""
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        folder = self.root / digest[:2]
        for candidate in sorted(folder.glob(f"{digest[2:]}.*")) if folder.is_dir() else []:
            if not candidate.name.startswith(".tmp-"):
                return candidate
        raise StorageError(f"original {digest[:12]} not found")

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return False
        try:
            self.path(digest)
        except StorageError:
            return False
        return True

    def get_image(self, digest: str) -> tuple[PageImage, float]:
        """The stored image and its dpi.

        The PNGs this store writes are decoded by OpenCV straight into the one array returned: through
        Pillow, a page was held three times at once (Pillow's 4 bytes a pixel, its bytes, the copy),
        about 90 MB for an A4 page at 300 dpi instead of 26 MB.
        """
        p = self.path(digest)
        try:
            with Image.open(p) as pil:  # the header only: format, mode, dpi
                dpi_info = pil.info.get("dpi", (0.0, 0.0))
                mode = pil.mode
                if pil.format == "PNG" and mode in ("L", "RGB"):
                    image = _read_png(p, grey=mode == "L")
                else:
                    pil.load()
                    if mode not in ("L", "RGB"):
                        pil = pil.convert("RGB")  # type: ignore[assignment]
                    image = np.asarray(pil, dtype=np.uint8).copy()
        except OSError as err:
            raise StorageError(f"original {digest[:12]} unreadable: {err}") from err
        dpi = round(float(dpi_info[0]), 1) if dpi_info and dpi_info[0] else 0.0
        return image, dpi

    def verify(self, digest: str) -> bool:
        """Whether the stored bytes still hash to their name (bit rot / tampering check)."""
        return hashlib.sha256(self.path(digest).read_bytes()).hexdigest() == digest


def _read_png(path: Path, *, grey: bool) -> PageImage:
    """An 8-bit grey or RGB PNG as (H, W) or (H, W, 3) uint8, exactly its stored samples."""
    flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR_RGB) | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imread(str(path), flags)
    if image is None:
        raise OSError(f"cannot decode {path.name}")
    out: PageImage = np.asarray(image, dtype=np.uint8)  # already uint8: no copy
    return out


__all__ = ["OriginalStore", "encode_png", "write_atomic"]
