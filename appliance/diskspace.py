"""Free space in the data directory: disk-full is a normal day.

Below a floor (``settings.storage.min_free_mb``) new captures are refused with one sentence
(:func:`check_room`, raising DiskFull) before anything is written; reading, searching and signing what
exists go on. A spare file (``settings.storage.reserve_mb``, CockroachDB's "ballast") is kept in
data_dir: when the disk fills all the same (logs, another program, a capture that raced the floor),
:func:`keep_writable` deletes it, so the few database writes that sign-in and signing need still find
room; it comes back (:func:`ensure_reserve`) once there is room again. :func:`is_disk_full` recognises
ENOSPC however a library wrapped it (OSError, SQLite's "database or disk is full").
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
from pathlib import Path

from appliance.errors import DiskFull
from appliance.settings import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
RESERVE_NAME = ".reserve"  # in data_dir
NEARLY_FULL = 2 * MB  # below this, the spare file is given back to the system
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL = 13

_lock = threading.Lock()


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_room(settings: Settings, *, need_bytes: int = 0) -> None:
    """Raise DiskFull when data_dir would keep less than the floor free after ``need_bytes`` more."""
    floor = settings.storage.min_free_mb * MB
    free = free_bytes(_existing(settings.data_dir))
    if free - need_bytes < floor:
        raise DiskFull(
            f"{free // MB} MB free in {settings.data_dir}, floor {settings.storage.min_free_mb} MB"
            + (f", {need_bytes // MB} MB needed" if need_bytes else ""),
            free_mb=str(free // MB),
            floor="yes",  # refused by the floor, before anything was written
        )
    if free - need_bytes >= floor + settings.storage.reserve_mb * MB:
        ensure_reserve(settings)


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or what it was raised from) is a full disk."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, DiskFull):
            return True
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if isinstance(err, sqlite3.Error) and (
            getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(err)
        ):
            return True
        orig = getattr(err, "orig", None)  # SQLAlchemy's DBAPIError keeps the driver's error here
        if isinstance(orig, BaseException) and is_disk_full(orig):
            return True
        err = err.__cause__ or err.__context__
    return False


def reserve_path(settings: Settings) -> Path:
    return settings.data_dir / RESERVE_NAME


def ensure_reserve(settings: Settings) -> bool:
    """Create the spare file when it is missing and the floor stays free after it. Whether it exists."""
    size = settings.storage.reserve_mb * MB
    path = reserve_path(settings)
    if size <= 0:
        return False
    with _lock:
        try:
            if path.exists():
                return True
            if free_bytes(_existing(settings.data_dir)) < size + settings.storage.min_free_mb * MB:
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                path.unlink()
            log.warning("could not keep the spare file %s: %s", path, err)
            return False
    log.info("spare file kept path=%s mb=%d", path, settings.storage.reserve_mb)
    return True


def release_reserve(settings: Settings) -> bool:
    """Give the spare file's space back to the system. Whether there was one."""
    with _lock:
        try:
            reserve_path(settings).unlink()
        except FileNotFoundError:
            return False
    log.error(
        "disk full: released the %d MB spare file in %s so that sign-in and signing keep working; free space is needed",
        settings.storage.reserve_mb,
        settings.data_dir,
    )
    return True


def keep_writable(settings: Settings) -> None:
    """Cheap (one statvfs, about a microsecond; called on every request): release the spare file when
    the disk is nearly full."""
    try:
        if free_bytes(_existing(settings.data_dir)) < NEARLY_FULL:
            release_reserve(settings)
    except OSError as err:  # data_dir gone: nothing to keep
        log.debug("free space check failed: %s", err)


__all__ = [
    "MB",
    "check_room",
    "ensure_reserve",
    "free_bytes",
    "is_disk_full",
    "keep_writable",
    "release_reserve",
    "reserve_path",
]
