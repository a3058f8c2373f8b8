"""Keep the process's memory flat over long batches on a small board.

glibc raises its mmap threshold each time a large block is freed, so later page-sized arrays
(tens of MB) come from the heap, which fragments and is never given back: a 20-page batch then
grows to twice the memory one page needs. A fixed threshold keeps every large array in its own
mapping, returned to the system when freed. Measured numbers: docs/performance.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc mallopt() parameter numbers (malloc.h)
M_ARENA_MAX = -8


def limit_heap_growth(mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """Fix glibc's mmap threshold and arena count; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("mallopt applied: %s", ok)
    return ok


def give_back() -> bool:
    """Collect garbage and hand the heap's free pages back to the system (glibc malloc_trim): start-up
    builds many short-lived objects (settings schemas, SQL compilation) that a long-running service
    would otherwise keep resident. False where that is not glibc."""
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def trim() -> bool:
    """Hand the heap's free pages back to the system (glibc malloc_trim), without a garbage collection:
    cheap enough after every page. A long batch otherwise keeps what each page's image work freed
    between the results it holds (measured: docs/performance.md). False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False
