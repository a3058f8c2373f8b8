"""Raspberry Pi firmware readings (`vcgencmd`) behind a small interface, so tests feed recorded outputs.

`get_throttled` bits (Raspberry Pi documentation): 0 under-voltage now, 1 ARM frequency capped now,
2 throttled now, 3 soft temperature limit now; bits 16-19 the same "has occurred since boot".
Off a Pi every value is None ("unknown"), never zero.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from appliance.telemetry.schema import Power

_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+|\d+)")
_TEMP = re.compile(r"temp=([-\d.]+)'?C")


class Firmware(Protocol):
    """Where `vcgencmd` answers come from: the real tool, or recorded outputs in tests."""

    def vcgencmd(self, *args: str) -> str | None:
        """The tool's stdout, or None when there is no such tool (not a Pi)."""


class Vcgencmd:
    def __init__(self, timeout_s: float = 3.0) -> None:
        self.timeout_s = timeout_s

    def vcgencmd(self, *args: str) -> str | None:
        tool = shutil.which("vcgencmd")
        if tool is None:
            return None
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=self.timeout_s, check=False)
        return done.stdout if done.returncode == 0 else None


class Recorded:
    """Recorded outputs by command line, e.g. {"get_throttled": "throttled=0x50005\\n"}."""

    def __init__(self, outputs: Mapping[str, str]) -> None:
        self.outputs = dict(outputs)

    def vcgencmd(self, *args: str) -> str | None:
        return self.outputs.get(" ".join(args))


def parse_throttled(text: str | None) -> Power:
    m = _THROTTLED.search(text or "")
    if m is None:
        return Power()
    bits = int(m.group(1), 0)

    def bit(n: int) -> bool:
        return bool(bits >> n & 1)

    return Power(
        throttled_raw=hex(bits),
        under_voltage_now=bit(0),
        freq_capped_now=bit(1),
        throttled_now=bit(2),
        soft_temp_limit_now=bit(3),
        under_voltage_since_boot=bit(16),
        freq_capped_since_boot=bit(17),
        throttled_since_boot=bit(18),
        soft_temp_limit_since_boot=bit(19),
    )


def parse_temp(text: str | None) -> float | None:
    m = _TEMP.search(text or "")
    return float(m.group(1)) if m else None


def power(fw: Firmware) -> Power:
    return parse_throttled(fw.vcgencmd("get_throttled"))


def cpu_temp(fw: Firmware, thermal: Path = Path("/sys/class/thermal")) -> float | None:
    """`vcgencmd measure_temp`, else the kernel's first thermal zone, else None."""
    t = parse_temp(fw.vcgencmd("measure_temp"))
    if t is not None:
        return t
    for zone in sorted(thermal.glob("thermal_zone*/temp")):
        try:
            return int(zone.read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None
