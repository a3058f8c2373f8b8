"""Segments of transfers in progress, on disk, shared by every receiver process (a shared subscription
may hand consecutive segments of one file to different processes).

spool/{device}/{file_id}/init.json and seg-{offset:012d}: each written to a temporary name, fsynced and
renamed, so a segment is either whole or absent and a resent segment simply replaces itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
FILE_ID = re.compile(r"^[0-9a-f]{64}$")


def _write_atomic(path: Path, data: bytes, *, sync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Spool:
    def __init__(self, root: Path, *, sync: bool = True) -> None:
        self.root = root
        self.sync = sync
        root.mkdir(parents=True, exist_ok=True)

    def dir(self, device: str, file_id: str) -> Path:
        if not SAFE_ID.match(device) or not FILE_ID.match(file_id):
            raise ValueError(f"bad device or file id: {device!r} {file_id!r}")
        return self.root / device / file_id

    def write_init(self, device: str, file_id: str, meta: dict[str, Any]) -> None:
        d = self.dir(device, file_id)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / "init.json", json.dumps(meta).encode(), sync=self.sync)

    def read_init(self, device: str, file_id: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = json.loads((self.dir(device, file_id) / "init.json").read_bytes())
        except (OSError, ValueError):
            return None
        return meta

    def put_segment(self, device: str, file_id: str, offset: int, data: bytes) -> None:
        _write_atomic(self.dir(device, file_id) / f"seg-{offset:012d}", data, sync=self.sync)

    def _segments(self, device: str, file_id: str) -> list[tuple[int, Path, int]]:
        d = self.dir(device, file_id)
        out = []
        for p in d.glob("seg-*"):
            try:
                out.append((int(p.name[4:]), p, p.stat().st_size))
            except (ValueError, OSError):
                continue
        return sorted(out)

    def held(self, device: str, file_id: str) -> int:
        """How many leading bytes are held without a gap."""
        pos = 0
        for off, _p, size in self._segments(device, file_id):
            if off > pos:
                break
            pos = max(pos, off + size)
        return pos

    def assemble(self, device: str, file_id: str, dest: Path) -> tuple[int, str]:
        """Concatenate the leading segments into `dest` (fsynced); returns its size and SHA-256."""
        h = hashlib.sha256()
        pos = 0
        with dest.open("wb") as out:
            for off, p, _size in self._segments(device, file_id):
                if off > pos:
                    break
                data = p.read_bytes()[pos - off :]
                out.write(data)
                h.update(data)
                pos += len(data)
            out.flush()
            os.fsync(out.fileno())
        return pos, h.hexdigest()

    def drop(self, device: str, file_id: str) -> None:
        shutil.rmtree(self.dir(device, file_id), ignore_errors=True)
