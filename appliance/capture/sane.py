"""SANE scanner backend (python-sane). The only module that imports ``sane``.

The scanner at the counter is one shared device: every use of libsane goes through one
process-wide lock. A scan holds it for the whole batch; a waiting request gives up after
``lock_timeout_s`` seconds with ScannerBusy. The device is opened per request and closed after
(also on error), so a re-plugged scanner works without a restart.

python-sane raises ``_sane.error`` carrying only ``sane_strstatus()`` text, so errors are mapped
by that text (sane-backends' strings; the library does not translate them).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import sane

from appliance.capture import (
    DeviceInfo,
    OptionInfo,
    OptionValue,
    ScanRequest,
    is_feeder_source,
    resolve_source,
)
from appliance.errors import (
    BadScannerOption,
    CaptureError,
    CoverOpen,
    DeviceGone,
    FeederEmpty,
    FeederJammed,
    NoScanner,
    ScanCancelled,
    ScannerBusy,
    ScannerIOError,
)
from appliance.model import PageImage, RawPage, Source

log = logging.getLogger(__name__)

# sane_strstatus() texts (sane-backends sanei/sane_strstatus.c), lower-cased.
_NO_DOCS = "document feeder out of documents"
_STATUS_TEXT: dict[str, type[CaptureError]] = {
    "document feeder jammed": FeederJammed,
    "scanner cover is open": CoverOpen,
    "device busy": ScannerBusy,
    "error during device i/o": ScannerIOError,
    "operation was canceled": ScanCancelled,
    "operation was cancelled": ScanCancelled,
    _NO_DOCS: FeederEmpty,
    "out of memory": ScannerIOError,
    "access to resource has been denied": ScannerIOError,
    "operation not supported": ScannerIOError,
    "invalid argument": ScannerIOError,
    "end of file reached": ScannerIOError,
    "lamp not ready, please retry": ScannerBusy,
    "scanner mechanism locked for transport": ScannerIOError,
    "sanedev object is closed": DeviceGone,
    "scanner returned no data": ScannerIOError,
}

_TYPE = {0: "bool", 1: "int", 2: "fixed", 3: "string", 4: "button", 5: "group"}
_UNIT = {0: "none", 1: "pixel", 2: "bit", 3: "mm", 4: "dpi", 5: "percent", 6: "microsecond"}
_CAP_SOFT_SELECT = 1
_CAP_INACTIVE = 32

# One lock for all of libsane in this process (libsane is not thread-safe, and there is one scanner).
_LOCK = threading.Lock()
_init_guard = threading.Lock()
_init_config: list[str | None] = []  # SANE_CONFIG_DIR used by the live sane.init(), if any


_libc = ctypes.CDLL(None, use_errno=True)
_libc.signal.restype = ctypes.c_void_p
_libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
_SIG_IGN = ctypes.c_void_p(1)


def keep_sigpipe_ignored() -> None:
    """Ignore SIGPIPE again. libsane's reader thread sets it back to the default action while it scans
    (seen with the `test` backend: the test suite checks after every test), and then the first write to a
    closed socket or pipe (an officer's browser gone, a broker restarted) kills the whole service. Called
    after each page and each session; plain libc, so it works from the worker thread a scan runs in
    (Python's signal.signal only works in the main thread; its table already says "ignored")."""
    _libc.signal(signal.SIGPIPE, _SIG_IGN)


def map_sane_error(err: BaseException, *, stage: str, device: str) -> CaptureError:
    """Translate a python-sane failure into the error tree.

    ``stage`` is "open", "option" or "scan": "Invalid argument" means an unknown device when
    opening, a bad value when setting an option, and a device failure while scanning.
    """
    text = str(err).strip()
    low = text.lower()
    detail = f"{device}: {text} (during {stage})"
    if stage == "open":
        if low in {"invalid argument", "access to resource has been denied"} or "no such" in low:
            return NoScanner(detail, device=device)
        if low == "error during device i/o":
            return DeviceGone(detail, device=device)
    if stage == "option" and (
        isinstance(err, TypeError | ValueError | AttributeError)
        or low
        in {
            "invalid argument",
            "operation not supported",
        }
    ):
        return BadScannerOption(detail, device=device)
    cls = _STATUS_TEXT.get(low, ScannerIOError)
    return cls(detail, device=device)


def _ensure_init() -> None:
    """sane.init() once per process; again only if SANE_CONFIG_DIR changed (caller holds _LOCK)."""
    config = os.environ.get("SANE_CONFIG_DIR")
    with _init_guard:
        if _init_config and _init_config[0] == config:
            return
        if _init_config:
            sane.exit()
            _init_config.clear()
        try:
            version = sane.init()
        except Exception as err:  # _sane.error
            raise NoScanner(f"sane_init failed: {err}") from err
        _init_config.append(config)
        log.debug("sane initialised version=%s config=%s", version, config)


def _option_value(dev: Any, opt: Any) -> OptionValue | None:
    if opt.type in (4, 5) or not opt.is_active():
        return None
    try:
        value = dev.dev.get_option(opt.index)
    except Exception:  # some options are write-only or not readable now
        return None
    if isinstance(value, str | int | float | bool):
        return value
    return None


def _describe(dev: Any) -> list[OptionInfo]:
    infos: list[OptionInfo] = []
    for t in dev.get_options():
        index, name, title, desc, otype, unit, _size, cap, constraint = t
        if not name:
            continue
        opt = dev.opt.get(str(name).replace("-", "_"))
        value = _option_value(dev, opt) if opt is not None else None
        if isinstance(constraint, tuple):
            constraint = tuple(float(x) for x in constraint)
        elif isinstance(constraint, list):
            constraint = list(constraint)
        infos.append(
            OptionInfo(
                name=str(name),
                title=str(title or ""),
                description=str(desc or ""),
                type=_TYPE.get(int(otype), "unknown"),
                unit=_UNIT.get(int(unit), "none"),
                constraint=constraint,
                value=value,
                settable=bool(cap & _CAP_SOFT_SELECT),
                active=not bool(cap & _CAP_INACTIVE),
            )
        )
    return infos


def _coerce(opt: Any, value: OptionValue) -> OptionValue:
    """The Python type the descriptor wants (python-sane is strict about int vs float)."""
    kind = _TYPE.get(int(opt.type))
    if kind == "fixed":
        return float(value)
    if kind == "int":
        return round(float(value))
    if kind == "bool":
        return bool(value)
    if kind == "string":
        return str(value)
    raise TypeError(f"option {opt.name} of type {kind} has no value")


def _set(dev: Any, name: str, value: OptionValue, device: str) -> None:
    py_name = name.replace("-", "_")
    opt = dev.opt.get(py_name)
    if opt is None:
        raise BadScannerOption(f"{device}: no option {name!r}", device=device, option=name)
    if isinstance(opt.constraint, list) and opt.type == 3:
        # match string choices case-insensitively ("color" -> "Color")
        for choice in opt.constraint:
            if str(choice).lower() == str(value).lower():
                value = choice
                break
        else:
            raise BadScannerOption(f"{device}: {name}={value!r} not in {opt.constraint!r}", device=device, option=name)
    elif (
        isinstance(opt.constraint, list)
        and opt.type in (1, 2)
        and not any(float(w) == float(value) for w in opt.constraint)
    ):
        # word lists: SANE would silently snap to a neighbour; say so instead
        raise BadScannerOption(f"{device}: {name}={value!r} not in {opt.constraint!r}", device=device, option=name)
    try:
        setattr(dev, py_name, _coerce(opt, value))
    except Exception as err:
        raise map_sane_error(err, stage="option", device=device) from err


def _clamp(opt: Any, value: float) -> float:
    if isinstance(opt.constraint, tuple):
        lo, hi = float(opt.constraint[0]), float(opt.constraint[1])
        return min(max(value, lo), hi)
    return value


def _nearest_word(opt: Any, value: float) -> float:
    if isinstance(opt.constraint, list) and opt.constraint and opt.type in (1, 2):
        return float(min(opt.constraint, key=lambda w: (abs(float(w) - value), -float(w))))
    return value


def _configure(dev: Any, request: ScanRequest) -> str:
    """Set options from the request, in dependency order. Returns the source string in use."""
    device = request.device
    source = ""
    if request.source is not None:
        choices = [str(c) for c in dev.opt["source"].constraint] if "source" in dev.opt else []
        if not choices:
            raise BadScannerOption(f"{device}: no source option", device=device, option="source")
        source = resolve_source(choices, request.source)
        _set(dev, "source", source, device)
    elif "source" in dev.opt and dev.opt["source"].is_active():
        source = str(dev.source)
    if request.mode is not None:
        _set(dev, "mode", request.mode, device)
    for name, value in request.extra.items():
        _set(dev, name, value, device)
    if "resolution" in dev.opt and "resolution" not in request.extra:
        _set(dev, "resolution", _nearest_word(dev.opt["resolution"], float(request.resolution)), device)
    _set_area(dev, request.area_mm, device)
    return source


def _set_area(dev: Any, area_mm: tuple[float, float] | None, device: str) -> None:
    names = ("tl_x", "tl_y", "br_x", "br_y")
    if not all(n in dev.opt for n in names):
        return
    if not all(dev.opt[n].is_active() and dev.opt[n].is_settable() for n in names):
        return
    big = 1e9 if area_mm is None else 0.0
    width = area_mm[0] if area_mm else big
    height = area_mm[1] if area_mm else big
    # page-width/page-height (sheet-fed backends) first: they bound br-x/br-y
    for name, want in (("page_width", width), ("page_height", height)):
        opt = dev.opt.get(name)
        if opt is not None and opt.is_active() and opt.is_settable():
            _set(dev, name, _clamp(opt, want), device)
    _set(dev, "tl-x", _clamp(dev.opt["tl_x"], 0.0), device)
    _set(dev, "tl-y", _clamp(dev.opt["tl_y"], 0.0), device)
    _set(dev, "br-x", _clamp(dev.opt["br_x"], width), device)
    _set(dev, "br-y", _clamp(dev.opt["br_y"], height), device)


def _to_image(result: tuple[Any, ...]) -> PageImage:
    data, width, height, samples, sample_size = result
    if not data or width <= 0 or height <= 0:
        raise ScannerIOError("scanner returned no image data")
    if sample_size == 2:
        arr16 = np.frombuffer(data, np.uint16)
        arr = (arr16 >> 8).astype(np.uint8)
    else:
        arr = np.frombuffer(data, np.uint8)
    arr = arr[: width * height * samples].reshape(height, width, samples)
    image = arr[:, :, 0] if samples == 1 else arr[:, :, :3]
    # depth-1 (lineart) data already arrives unpacked as 0/255 bytes from python-sane
    return np.ascontiguousarray(image, dtype=np.uint8)


class SaneScanner:
    """Scanner backed by libsane. Thread-safe: concurrent scans queue on one lock."""

    def __init__(self, *, lock_timeout_s: float = 60.0) -> None:
        self.lock_timeout_s = lock_timeout_s
        self._cancel = threading.Event()
        self._active: Any = None  # the device of this instance's scan in progress
        self._active_lock = threading.Lock()

    def cancel(self) -> None:
        """Stop this scanner's scan in progress (from any thread, e.g. the officer's Stop button).

        The scan raises ScanCancelled; pages already yielded stay with the caller.
        """
        self._cancel.set()
        with self._active_lock:
            dev = self._active
        if dev is not None:
            try:
                dev.cancel()  # sane_cancel may be called while another thread reads
            except Exception as err:
                log.debug("sane cancel failed: %s", err)

    def _acquire(self, what: str) -> None:
        if not _LOCK.acquire(timeout=self.lock_timeout_s):
            raise ScannerBusy(f"scanner still busy after {self.lock_timeout_s:.0f} s ({what})")

    def devices(self) -> list[DeviceInfo]:
        self._acquire("list devices")
        try:
            _ensure_init()
            try:
                found = sane.get_devices()
            except Exception as err:
                raise map_sane_error(err, stage="open", device="*") from err
        finally:
            _LOCK.release()
        return [DeviceInfo(name=str(n), vendor=str(v), model=str(m), type=str(t)) for n, v, m, t in found]

    def options(self, device: str) -> list[OptionInfo]:
        self._acquire("read options")
        try:
            _ensure_init()
            dev = self._open(device)
            try:
                return _describe(dev)
            finally:
                self._close(dev, device)
        finally:
            _LOCK.release()

    def scan(self, request: ScanRequest) -> Iterator[RawPage]:
        self._acquire(f"scan {request.device}")
        try:
            _ensure_init()
            dev = self._open(request.device)
            log.info("sane session open device=%s", request.device)
            self._cancel.clear()
            with self._active_lock:
                self._active = dev
            try:
                yield from self._pages(dev, request)
            finally:
                with self._active_lock:
                    self._active = None
                self._close(dev, request.device)
                keep_sigpipe_ignored()
                log.info("sane session closed device=%s", request.device)
        finally:
            _LOCK.release()

    # --- internals (called with _LOCK held) -----------------------------------------------------
    @staticmethod
    def _open(device: str) -> Any:
        try:
            return sane.open(device)
        except Exception as err:
            raise map_sane_error(err, stage="open", device=device) from err

    @staticmethod
    def _close(dev: Any, device: str) -> None:
        for step in (dev.cancel, dev.close):
            try:
                step()
            except Exception as err:  # closing a vanished device must not hide the real error
                log.debug("sane close step failed device=%s err=%s", device, err)

    def _pages(self, dev: Any, request: ScanRequest) -> Iterator[RawPage]:
        device = request.device
        source = _configure(dev, request)
        dpi = float(dev.resolution) if "resolution" in dev.opt else float(request.resolution)
        feeder = bool(source) and is_feeder_source(source)
        label_base = source if source else "Flatbed"
        count = 0
        while True:
            try:
                if self._cancel.is_set():
                    raise ScanCancelled(f"{device}: cancelled by the officer")
                dev.start()
                image = _to_image(dev.dev.snap(request.batch, True, None))
            except Exception as err:
                keep_sigpipe_ignored()
                if isinstance(err, CaptureError):
                    err.params["pages"] = str(count)
                    raise
                mapped = map_sane_error(err, stage="scan", device=device)
                if isinstance(mapped, FeederEmpty) and count > 0:
                    log.info("feeder empty after %d page(s) device=%s", count, device)
                    return
                mapped.params["pages"] = str(count)
                raise mapped from err
            keep_sigpipe_ignored()
            count += 1
            label = f"{'ADF' if feeder else label_base} {count}" if request.batch else label_base
            yield RawPage(image=image, dpi=dpi, source=Source.SCANNER, label=label)
            if not request.batch:
                return


__all__ = ["SaneScanner", "map_sane_error"]
