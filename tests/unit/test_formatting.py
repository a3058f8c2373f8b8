"""Dates, times and numbers as the officers read them: dd/mm/yyyy, Vietnam time, a decimal comma."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from jinja2 import Environment

from appliance.web import formatting
from appliance.web.formatting import vn_date, vn_datetime, vn_number, vn_percent

NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (date(2023, 7, 5), "05/07/2023"),
        (datetime(2023, 7, 5, 10, 0, tzinfo=UTC), "05/07/2023"),
        (datetime(2023, 7, 5, 18, 30, tzinfo=UTC), "06/07/2023"),  # already the next day in Vietnam
        (datetime(2023, 7, 5, 18, 30), "06/07/2023"),  # naive from SQLite: stored in UTC
        ("2023-07-05", "05/07/2023"),
        ("5/7/2023", "05/07/2023"),
        ("05.07.2023", "05/07/2023"),
        ("20230705", "05/07/2023"),
        ("2023-07-05T23:30:00+07:00", "05/07/2023"),
        ("2023-07-05T18:30:00Z", "06/07/2023"),
        ("2023-07-05T10:30:00", "05/07/2023"),  # a text without offset is already local
        (None, ""),
        ("", ""),
        ("không thời hạn", "không thời hạn"),  # shown as given
        ("31/02/2023", "31/02/2023"),
    ],
)
def test_vn_date(value: object, shown: str) -> None:
    assert vn_date(value) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (datetime(2023, 7, 5, 2, 5, tzinfo=UTC), "05/07/2023 09:05"),
        (datetime(2023, 12, 31, 17, 0, tzinfo=UTC), "01/01/2024 00:00"),
        (datetime(2023, 7, 5, 2, 5), "05/07/2023 09:05"),
        (datetime(2023, 7, 5, 9, 5, tzinfo=timezone(timedelta(hours=7))), "05/07/2023 09:05"),
        (datetime(2023, 7, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "05/07/2023 09:05"),
        ("2023-07-05T02:05:00+00:00", "05/07/2023 09:05"),
        ("2023-07-05T14:30:15", "05/07/2023 14:30"),
        (date(2023, 7, 5), "05/07/2023"),
        ("2023-07-05", "05/07/2023"),
        (None, ""),
        ("hôm qua", "hôm qua"),
    ],
)
def test_vn_datetime_is_vietnam_time(value: object, shown: str) -> None:
    assert vn_datetime(value) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (1.4, 1, "1,4"),
        (1.44, 1, "1,4"),
        (1.46, 1, "1,5"),
        (3, 1, "3,0"),
        (12.5, 1, "12,5"),
        (1234.56, 1, "1.234,6"),
        (1234567, 0, "1.234.567"),
        (999.96, 1, "1.000,0"),
        (42.0, 0, "42"),
        (-2.25, 2, "-2,25"),
        (-0.01, 1, "0,0"),  # no "-0,0"
        (0, 2, "0,00"),
        ("3.5", 1, "3,5"),
        ("2,5", 1, "2,5"),
        (None, 1, ""),
        ("nhiều", 1, "nhiều"),
        (float("nan"), 1, "—"),
        (float("inf"), 1, "—"),
        (7, -3, "7"),
        (Decimal("2.25"), 2, "2,25"),
    ],
)
def test_vn_number(value: object, digits: int, shown: str) -> None:
    assert vn_number(value, digits) == shown  # type: ignore[arg-type]


def test_vn_percent() -> None:
    assert vn_percent(12.5) == f"12,5{NBSP}%"
    assert vn_percent(99.56, 0) == f"100{NBSP}%"
    assert vn_percent(None) == ""


def test_filters_in_a_template() -> None:
    env = Environment(autoescape=True)
    formatting.register(env)
    page = env.from_string(
        "{{ at|vn_datetime }} | {{ day|vn_date }} | {{ s|vn_number }} giây | {{ s|vn_number(0) }} | {{ r|vn_percent }}"
        " | {{ none|vn_date or '—' }}"
    )
    out = page.render(at=datetime(2024, 2, 29, 23, 59, tzinfo=UTC), day="2024-03-01", s=1.4, r=12.5, none=None)
    assert out == f"01/03/2024 06:59 | 01/03/2024 | 1,4 giây | 1 | 12,5{NBSP}% | —"
