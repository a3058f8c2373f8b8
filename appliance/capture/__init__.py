"""Capture: the roles a page source plays (Scanner, Camera) and the values they exchange.

No hardware library is imported here; each backend lives in its own module
(``sane.py``, ``uvc.py``, ``picamera.py``) and file import in ``files.py``.
Choices shown to the officer come from the device's own option descriptors
(:class:`OptionInfo`), never from a hard-coded list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, TypeAlias

from appliance.errors import BadScannerOption
from appliance.model import RawPage

OptionValue: TypeAlias = str | int | float | bool
Constraint: TypeAlias = list[str] | list[int] | list[float] | tuple[float, float, float] | None

A4_MM: tuple[float, float] = (210.0, 297.0)


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """One scan job for one device.

    ``mode`` and ``source`` use the device's own strings (see :func:`resolve_source` for the
    generic words "flatbed", "adf" and "duplex"). ``area_mm`` is clamped to the device's
    maximum; ``None`` scans the whole area the device offers. ``extra`` sets any other device
    option by its SANE name (``"read-return-value"``, ``"swdeskew"`` ...).
    """

    device: str
    resolution: int = 300
    mode: str | None = None
    source: str | None = None
    batch: bool = False
    area_mm: tuple[float, float] | None = A4_MM
    extra: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    name: str  # what ScanRequest.device takes, e.g. "fujitsu:fi-7160:12345" or "test:0"
    vendor: str
    model: str
    type: str  # "flatbed scanner", "sheetfed scanner", "virtual device" ...


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One device option as the device describes it."""

    name: str  # SANE name with dashes, e.g. "br-x", "resolution"
    title: str
    description: str
    type: str  # "bool" | "int" | "fixed" | "string" | "button" | "group"
    unit: str  # "none" | "pixel" | "bit" | "mm" | "dpi" | "percent" | "microsecond"
    constraint: Constraint  # list of choices, (min, max, quant) range, or None
    value: OptionValue | None  # None when inactive or not readable
    settable: bool
    active: bool


class Scanner(Protocol):
    """A document scanner (one shared device; implementations queue concurrent requests)."""

    def devices(self) -> list[DeviceInfo]: ...

    def options(self, device: str) -> list[OptionInfo]: ...

    def scan(self, request: ScanRequest) -> Iterator[RawPage]:
        """Yield pages as they come: flatbed -> 1 page; batch -> until the feeder is empty.

        An empty feeder at the very first sheet raises FeederEmpty; at the end it just ends.
        """
        ...


class Camera(Protocol):
    """A document camera: one fresh frame per call."""

    def capture(self) -> RawPage: ...

    def close(self) -> None: ...


# --- sources: vendor strings differ ("ADF", "Automatic Document Feeder", "ADF Duplex" ...) ----------
_FEEDER_WORDS = ("adf", "feeder", "document feeder")
_FLATBED_WORDS = ("flatbed", "platen", "normal")


def _is_feeder(choice: str) -> bool:
    low = choice.lower()
    return any(w in low for w in _FEEDER_WORDS)


def duplex_sources(choices: Sequence[str]) -> list[str]:
    """Source strings that scan both sides, best first ("ADF Duplex", "Duplex", "ADF Front/Back/Duplex")."""
    found = [c for c in choices if "duplex" in c.lower()]
    return sorted(found, key=lambda c: (not _is_feeder(c), len(c)))


def adf_sources(choices: Sequence[str]) -> list[str]:
    """Single-sided feeder source strings, best first (front before back)."""
    found = [c for c in choices if _is_feeder(c) and "duplex" not in c.lower()]

    def rank(c: str) -> tuple[int, int]:
        low = c.lower()
        back_only = "back" in low and "front" not in low
        return (1 if back_only else 0, len(c))

    return sorted(found, key=rank)


def flatbed_sources(choices: Sequence[str]) -> list[str]:
    return [c for c in choices if any(w in c.lower() for w in _FLATBED_WORDS)]


def option_choices(options: Sequence[OptionInfo], name: str) -> list[str]:
    """String choices of one option ("mode", "source" ...); empty when free-form or absent."""
    for opt in options:
        if opt.name == name and isinstance(opt.constraint, list):
            return [str(c) for c in opt.constraint]
    return []


def source_choices(options: Sequence[OptionInfo]) -> list[str]:
    """The device's source strings (empty when the device has no source option)."""
    return option_choices(options, "source")


def resolve_source(choices: Sequence[str], wanted: str) -> str:
    """Map a preset's source to the device's own string.

    ``wanted`` is either one of the device's strings (case-insensitive) or a generic word:
    "flatbed", "adf" / "feeder", "duplex". Raises BadScannerOption when nothing fits.
    """
    for c in choices:
        if c.lower() == wanted.lower():
            return c
    generic = wanted.strip().lower()
    pick: list[str]
    if generic in {"adf", "feeder", "automatic document feeder"}:
        pick = adf_sources(choices)
    elif generic == "duplex":
        pick = duplex_sources(choices)
    elif generic == "flatbed":
        pick = flatbed_sources(choices)
    else:
        pick = []
    if not pick:
        raise BadScannerOption(f"source {wanted!r} not offered; device has {list(choices)!r}", option="source")
    return pick[0]


def find_source(options: Sequence[OptionInfo], *, duplex: bool = False) -> str | None:
    """The device's feeder source string (duplex when asked), or None when it has none."""
    choices = source_choices(options)
    found = duplex_sources(choices) if duplex else adf_sources(choices)
    return found[0] if found else None


def is_feeder_source(source: str) -> bool:
    """Whether a device source string feeds sheets (so an empty tray means FeederEmpty)."""
    return _is_feeder(source) or "duplex" in source.lower()


__all__ = [
    "A4_MM",
    "Camera",
    "Constraint",
    "DeviceInfo",
    "OptionInfo",
    "OptionValue",
    "Scanner",
    "ScanRequest",
    "adf_sources",
    "duplex_sources",
    "find_source",
    "flatbed_sources",
    "is_feeder_source",
    "option_choices",
    "resolve_source",
    "source_choices",
]
