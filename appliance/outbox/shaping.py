""" "When bandwidth allows": token bucket, time windows, back-off with jitter. Pure, clock passed in."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass


class TokenBucket:
    """A cap in kbit/s. Send when `wait(now)` is 0, then `spend(n, now)`; the bucket may go into debt, so a
    segment larger than the burst still passes and the average rate holds."""

    def __init__(self, rate_kbit: float, burst_bytes: int, now: float) -> None:
        self.rate = rate_kbit * 1000 / 8  # bytes/s
        self.burst = float(burst_bytes)
        self.tokens = float(burst_bytes)
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def spend(self, n: int, now: float) -> None:
        if self.rate > 0:
            self._refill(now)
            self.tokens -= n


@dataclass(frozen=True, slots=True)
class Window:
    start: dt.time
    end: dt.time

    def contains(self, t: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # wraps midnight


def parse_windows(specs: list[str]) -> list[Window]:
    """ "HH:MM-HH:MM" strings; "always" or an empty list means no restriction."""
    out = []
    for spec in specs:
        if spec.strip().lower() == "always":
            return []
        a, sep, b = spec.partition("-")
        if not sep:
            raise ValueError(f"time window {spec!r} is not HH:MM-HH:MM")
        out.append(Window(dt.time.fromisoformat(a.strip()), dt.time.fromisoformat(b.strip())))
    return out


def in_window(windows: list[Window], local: dt.datetime) -> bool:
    return not windows or any(w.contains(local.time()) for w in windows)


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with full jitter in [d/2, d]: attempts=1 -> ~base."""
    d = min(cap, base * 2 ** max(0, attempts - 1))
    r = float((rng or random).random())
    return float(d / 2 + r * d / 2)
