"""How the officers' UI writes dates, times and numbers: one Vietnamese style, as Jinja filters.

- Dates: dd/mm/yyyy (``vn_date``); times: dd/mm/yyyy HH:MM in Vietnam time (``vn_datetime``).
  Datetimes come from the database in UTC (SQLite hands them back naive, so a naive datetime is UTC);
  a date-time *text* without an offset (a receipt's QR, a typed value) is already local time.
- Numbers: a decimal comma and a dot between thousands, "1.234,5" (``vn_number``); "12,5 %"
  (``vn_percent``).

Each filter takes what a template has (None, a date, a datetime, a text, a number) and never raises:
what it cannot read it shows as given, so a template never fails on an odd stored value.
``create_app`` registers them all with ``register(templates.env)``.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import SupportsFloat

from jinja2 import Environment

from appliance import domain
from appliance.domain import VN_TZ
from appliance.errors import InvalidDate

DATE_FORMAT = "%d/%m/%Y"
DATETIME_FORMAT = "%d/%m/%Y %H:%M"
NBSP = "\u00a0"  # between a number and its unit: "12,5 %" never breaks across lines


def local_time(value: datetime) -> datetime:
    """The moment in Vietnam time; a naive datetime is taken as UTC (how the database stores it)."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(VN_TZ)


def _read(text: str) -> date | datetime | None:
    """A date or a date-time written as text (05/07/2023, 2023-07-05, 2023-07-05T10:30:00+07:00)."""
    if ":" in text:  # a time too: ISO 8601 only (parse_date would read the date and drop the time)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        return moment.astimezone(VN_TZ) if moment.tzinfo is not None else moment
    try:
        return domain.parse_date(text)
    except InvalidDate:
        return None


def vn_date(value: date | datetime | str | None) -> str:
    """'05/07/2023' for a date, a datetime (its day in Vietnam) or a date text; '' for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local_time(value).strftime(DATE_FORMAT)
    if isinstance(value, date):
        return value.strftime(DATE_FORMAT)
    text = str(value).strip()
    read = _read(text) if text else None
    return read.strftime(DATE_FORMAT) if read is not None else text


def vn_datetime(value: date | datetime | str | None) -> str:
    """'05/07/2023 17:30' in Vietnam time; a bare date (or date text) gives just the date."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local_time(value).strftime(DATETIME_FORMAT)
    if isinstance(value, date):
        return value.strftime(DATE_FORMAT)
    text = str(value).strip()
    read = _read(text) if text else None
    if isinstance(read, datetime):
        return read.strftime(DATETIME_FORMAT)
    return read.strftime(DATE_FORMAT) if read is not None else text


def vn_number(value: SupportsFloat | str | None, digits: int = 1) -> str:
    """1234.56 -> '1.234,6' (digits=1); 1.4 -> '1,4'; 3 -> '3,0'; digits=0 -> '1.235'. '' for None."""
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value)
    if isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "."))
        except ValueError:
            return value
    else:
        try:
            number = float(value)  # int, float, Decimal, numpy numbers
        except (TypeError, ValueError, OverflowError):
            return str(value)
    if not math.isfinite(number):
        return "—"
    digits = max(0, int(digits))
    text = f"{number:,.{digits}f}"
    if text.lstrip("-").strip("0.,") == "":  # -0.0 -> 0,0
        text = text.lstrip("-")
    return text.replace(",", " ").replace(".", ",").replace(" ", ".")


def vn_percent(value: SupportsFloat | str | None, digits: int = 1) -> str:
    """12.5 -> '12,5 %' (a no-break space before the sign); '' for None."""
    number = vn_number(value, digits)
    return f"{number}{NBSP}%" if number else ""


FILTERS = {
    "vn_date": vn_date,
    "vn_datetime": vn_datetime,
    "vn_number": vn_number,
    "vn_percent": vn_percent,
}


def register(env: Environment) -> None:
    """Make the filters available to every template of ``env``."""
    env.filters.update(FILTERS)
