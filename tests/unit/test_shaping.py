""" "When bandwidth allows", pure: the token bucket over a fake clock, time windows, back-off with jitter."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.outbox.shaping import TokenBucket, Window, backoff, in_window, parse_windows

SEG = 256 * 1024


def _send_for(bucket: TokenBucket, seconds: float, start: float = 0.0, seg: int = SEG) -> list[tuple[float, int]]:
    """What a sender following the bucket publishes in `seconds` of fake time: (time, bytes) pairs."""
    now, sent = start, []
    while True:
        wait = bucket.wait(now)
        if wait > 0:
            now += max(wait, 0.001)  # as the sender: it sleeps at least 1 ms
            continue
        if now >= start + seconds:
            return sent
        bucket.spend(seg, now)
        sent.append((now, seg))


@pytest.mark.parametrize("kbit", [64, 1000, 8000])
def test_token_bucket_holds_the_rate_over_time(kbit: int) -> None:
    bucket = TokenBucket(kbit, SEG, now=0.0)
    horizon = 600.0 if kbit < 1000 else 120.0
    sent = _send_for(bucket, horizon)
    rate = kbit * 1000 / 8
    total = sum(n for _t, n in sent)
    assert total <= rate * horizon + SEG + SEG  # the burst plus the one segment the debt lets through
    assert total >= rate * horizon - SEG  # and the cap is not a throttle below the rate either
    # over any window of 10+ s the rate holds too (no bursts hidden in an average)
    for t0 in range(0, int(horizon) - 10, 5):
        window = sum(n for t, n in sent if t0 <= t < t0 + 10)
        assert window <= rate * 10 + 2 * SEG


def test_token_bucket_idle_time_does_not_save_up_more_than_the_burst() -> None:
    bucket = TokenBucket(1000, SEG, now=0.0)
    bucket.spend(SEG, 0.0)
    assert bucket.wait(0.0) == 0.0  # full burst spent: exactly at zero
    bucket.spend(1, 0.0)
    assert bucket.wait(0.0) > 0
    # an hour idle refills only to the burst: after one segment the sender waits again
    assert bucket.wait(3600.0) == 0.0
    bucket.spend(SEG, 3600.0)
    bucket.spend(SEG, 3600.0)
    assert bucket.wait(3600.0) == pytest.approx(SEG / 125_000)


def test_token_bucket_in_debt_waits_exactly_for_the_debt() -> None:
    bucket = TokenBucket(800, 1000, now=10.0)  # 100 000 bytes/s
    bucket.spend(51_000, 10.0)  # larger than the burst: goes into debt, still passes
    assert bucket.wait(10.0) == pytest.approx(0.5)
    assert bucket.wait(10.25) == pytest.approx(0.25)
    assert bucket.wait(10.5) == 0.0


def test_zero_rate_means_no_cap() -> None:
    bucket = TokenBucket(0, SEG, now=0.0)
    for _ in range(1000):
        bucket.spend(SEG, 0.0)
    assert bucket.wait(0.0) == 0.0


def test_windows_parse_wrap_midnight_and_always() -> None:
    night = parse_windows(["17:30-07:00"])
    assert night == [Window(dt.time(17, 30), dt.time(7, 0))]
    at = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert in_window(night, at.replace(hour=23))
    assert in_window(night, at.replace(hour=6, minute=59))
    assert not in_window(night, at.replace(hour=7))  # end is exclusive
    assert not in_window(night, at.replace(hour=12))
    assert in_window(night, at.replace(hour=17, minute=30))
    lunch_and_evening = parse_windows(["11:30-13:00", "18:00-22:00"])
    assert in_window(lunch_and_evening, at.replace(hour=12))
    assert not in_window(lunch_and_evening, at.replace(hour=14))
    assert parse_windows(["always"]) == [] and in_window([], at)
    assert parse_windows(["08:00-09:00", "Always"]) == []
    with pytest.raises(ValueError):
        parse_windows(["8 to 9"])
    with pytest.raises(ValueError):
        parse_windows(["25:00-26:00"])


def test_backoff_grows_then_caps_within_the_jitter_bounds() -> None:
    rng = random.Random(1)
    for attempts, d in [(1, 5), (2, 10), (3, 20), (4, 40), (8, 640), (9, 900), (50, 900)]:
        values = [backoff(attempts, base=5, cap=900, rng=rng) for _ in range(500)]
        assert min(values) >= d / 2 and max(values) <= d
        assert max(values) - min(values) > d / 4  # really jittered, not a constant
    assert backoff(0, base=5, cap=900, rng=rng) <= 5


@given(attempts=st.integers(0, 200), base=st.floats(0.01, 100), cap=st.floats(0.01, 10_000), seed=st.integers())
def test_backoff_is_always_within_half_to_full_delay(attempts: int, base: float, cap: float, seed: int) -> None:
    d = min(cap, base * 2 ** max(0, attempts - 1))
    value = backoff(attempts, base=base, cap=cap, rng=random.Random(seed))
    assert d / 2 <= value <= d
