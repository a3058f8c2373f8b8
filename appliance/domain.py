"""Vietnamese administrative codes: parsing and validation (pure functions, no I/O).

Sources and how sure we are: /work/shared/reference/domain-vn.md §2 and §7.

- Dossier code ``{agency code}-{yyMMdd}-{NNNN}``: two agency forms are seen in practice [I].
- TTHC code ``d.dddddd``, optionally followed by the locally applied agency suffix [I].
- Personal ID: 12 digits ``PPP G YY RRRRRR`` [C]; the province table is the 2004 province code with a leading
  zero [C for some entries, consistent in implementations]. An unknown prefix is a *warning*: people
  registered abroad carry a country code and the table may change.
- Old 9-digit CMND numbers are recognised as such (kind "cmnd").
- Enterprise / tax code ``10 digits[-3 digits]`` [C]; the check-digit algorithm is unconfirmed, never checked.

Each ``check_*`` returns a :class:`Check` (never raises); each ``parse_*`` returns a typed value or raises the
matching :mod:`appliance.errors` class, whose officer message lives in ``messages_vi``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from appliance.errors import (
    InvalidDate,
    InvalidDossierCode,
    InvalidEnterpriseCode,
    InvalidPersonalId,
    InvalidTthcCode,
)

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # the one Vietnam time zone (UTC+7, no daylight saving)

# 63 provinces before the 2025 merger: 2004 province code -> name. Personal-ID prefix = "0" + code.
PROVINCES: dict[str, str] = {
    "01": "Hà Nội",
    "02": "Hà Giang",
    "04": "Cao Bằng",
    "06": "Bắc Kạn",
    "08": "Tuyên Quang",
    "10": "Lào Cai",
    "11": "Điện Biên",
    "12": "Lai Châu",
    "14": "Sơn La",
    "15": "Yên Bái",
    "17": "Hòa Bình",
    "19": "Thái Nguyên",
    "20": "Lạng Sơn",
    "22": "Quảng Ninh",
    "24": "Bắc Giang",
    "25": "Phú Thọ",
    "26": "Vĩnh Phúc",
    "27": "Bắc Ninh",
    "30": "Hải Dương",
    "31": "Hải Phòng",
    "33": "Hưng Yên",
    "34": "Thái Bình",
    "35": "Hà Nam",
    "36": "Nam Định",
    "37": "Ninh Bình",
    "38": "Thanh Hóa",
    "40": "Nghệ An",
    "42": "Hà Tĩnh",
    "44": "Quảng Bình",
    "45": "Quảng Trị",
    "46": "Thừa Thiên Huế",
    "48": "Đà Nẵng",
    "49": "Quảng Nam",
    "51": "Quảng Ngãi",
    "52": "Bình Định",
    "54": "Phú Yên",
    "56": "Khánh Hòa",
    "58": "Ninh Thuận",
    "60": "Bình Thuận",
    "62": "Kon Tum",
    "64": "Gia Lai",
    "66": "Đắk Lắk",
    "67": "Đắk Nông",
    "68": "Lâm Đồng",
    "70": "Bình Phước",
    "72": "Tây Ninh",
    "74": "Bình Dương",
    "75": "Đồng Nai",
    "77": "Bà Rịa - Vũng Tàu",
    "79": "Hồ Chí Minh",
    "80": "Long An",
    "82": "Tiền Giang",
    "83": "Bến Tre",
    "84": "Trà Vinh",
    "86": "Vĩnh Long",
    "87": "Đồng Tháp",
    "89": "An Giang",
    "91": "Kiên Giang",
    "92": "Cần Thơ",
    "93": "Hậu Giang",
    "94": "Sóc Trăng",
    "95": "Bạc Liêu",
    "96": "Cà Mau",
}
ID_PREFIXES: dict[str, str] = {"0" + code: name for code, name in PROVINCES.items()}

# warnings (not error codes: they never make a value invalid)
W_UNKNOWN_PREFIX = "unknown_province_prefix"  # 12-digit ID whose first 3 digits are not in the table
W_OLD_CMND = "old_cmnd"  # 9-digit identity-card number, replaced by the 12-digit personal ID
W_TTHC_LOCAL = "tthc_local_suffix"  # TTHC code carried the local agency suffix
W_CHECK_DIGIT_UNCHECKED = "check_digit_unchecked"

AGENCY_RE = r"(?:\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}|[A-Z]\d{2}(?:\.\d{2,3}){0,3})"
DOSSIER_RE = re.compile(rf"^({AGENCY_RE})-(\d{{6}})-(\d{{4,7}})$")
TTHC_RE = re.compile(r"^([1-3]\.\d{6})((?:\.[0-9A-Z]{1,5}){1,7})?$")
ENTERPRISE_RE = re.compile(r"^(\d{10})(?:-(\d{3}))?$")


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of validating one value. ``problem`` is an errors.py code when not ok."""

    ok: bool
    value: str  # normalised form (the input, cleaned, when not ok)
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    kind: str = ""  # sub-kind when useful: "cccd" / "cmnd" for IDs, "branch" for enterprise codes


@dataclass(frozen=True, slots=True)
class DossierCode:
    agency: str
    received: dt.date
    sequence: str  # kept as text: leading zeros matter

    def __str__(self) -> str:
        return f"{self.agency}-{self.received:%y%m%d}-{self.sequence}"


@dataclass(frozen=True, slots=True)
class TthcCode:
    national: str  # d.dddddd
    local: str | None = None  # agency (and service) suffix of the locally applied procedure

    def __str__(self) -> str:
        return self.national + (f".{self.local}" if self.local else "")


@dataclass(frozen=True, slots=True)
class PersonalId:
    number: str
    kind: str  # "cccd" (12 digits) or "cmnd" (old 9 digits)
    province: str | None = None  # province of birth registration, from the prefix, when known
    female: bool | None = None
    birth_year: int | None = None


@dataclass(frozen=True, slots=True)
class EnterpriseCode:
    number: str  # 10 digits
    branch: str | None = None  # 3-digit dependent-unit suffix

    def __str__(self) -> str:
        return self.number + (f"-{self.branch}" if self.branch else "")


_SPACES = re.compile(r"\s+")
_SPACED_SEPARATORS = re.compile(r"\s*([-./])\s*")


def _squash(text: str) -> str:
    """Trim, drop spaces around separators, upper-case (codes only use 0-9, A-Z, '.', '-')."""
    text = _SPACED_SEPARATORS.sub(r"\1", text.strip())
    return _SPACES.sub("", text).upper().replace("\u2013", "-").replace("\u2010", "-")


def _yymmdd(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%y%m%d").date()
    except ValueError:
        return None


# --- dossier code ------------------------------------------------------------------------------------


def check_dossier_code(text: str) -> Check:
    value = _squash(text)
    m = DOSSIER_RE.match(value)
    if m is None or _yymmdd(m.group(2)) is None:
        return Check(False, value, InvalidDossierCode.code)
    return Check(True, value)


def parse_dossier_code(text: str) -> DossierCode:
    value = _squash(text)
    m = DOSSIER_RE.match(value)
    if m is None:
        raise InvalidDossierCode(f"not a dossier code: {value!r}")
    received = _yymmdd(m.group(2))
    if received is None:
        raise InvalidDossierCode(f"dossier code has no real date: {m.group(2)!r}")
    return DossierCode(agency=m.group(1), received=received, sequence=m.group(3))


# --- TTHC code ---------------------------------------------------------------------------------------


def check_tthc_code(text: str) -> Check:
    value = _squash(text)
    m = TTHC_RE.match(value)
    if m is None:
        return Check(False, value, InvalidTthcCode.code)
    return Check(True, value, warnings=(W_TTHC_LOCAL,) if m.group(2) else ())


def parse_tthc_code(text: str) -> TthcCode:
    value = _squash(text)
    m = TTHC_RE.match(value)
    if m is None:
        raise InvalidTthcCode(f"not a TTHC code: {value!r}")
    return TthcCode(national=m.group(1), local=m.group(2)[1:] if m.group(2) else None)


# --- personal ID ---------------------------------------------------------------------------------------


def _digits(text: str) -> str:
    return re.sub(r"[\s.\-]", "", text.strip())


def check_personal_id(text: str, *, today: dt.date | None = None) -> Check:
    try:
        pid = parse_personal_id(text, today=today)
    except InvalidPersonalId:
        return Check(False, _digits(text), InvalidPersonalId.code)
    warnings: list[str] = []
    if pid.kind == "cmnd":
        warnings.append(W_OLD_CMND)
    elif pid.province is None:
        warnings.append(W_UNKNOWN_PREFIX)
    return Check(True, pid.number, warnings=tuple(warnings), kind=pid.kind)


def parse_personal_id(text: str, *, today: dt.date | None = None) -> PersonalId:
    """A 12-digit personal ID (century/sex digit and birth year checked) or an old 9-digit CMND."""
    number = _digits(text)
    if re.fullmatch(r"\d{9}", number):
        return PersonalId(number=number, kind="cmnd")
    if not re.fullmatch(r"\d{12}", number):
        raise InvalidPersonalId(f"personal ID must have 12 digits, got {len(number)} characters")
    g = int(number[3])
    year = 1900 + 100 * (g // 2) + int(number[4:6])
    this_year = (today or dt.date.today()).year
    if year > this_year:
        raise InvalidPersonalId(f"personal ID gives a birth year in the future ({year})")
    return PersonalId(
        number=number,
        kind="cccd",
        province=ID_PREFIXES.get(number[:3]),
        female=g % 2 == 1,
        birth_year=year,
    )


# --- enterprise / tax code -----------------------------------------------------------------------------


def check_enterprise_code(text: str) -> Check:
    value = _squash(text)
    m = ENTERPRISE_RE.match(value)
    if m is None:
        return Check(False, value, InvalidEnterpriseCode.code)
    return Check(True, value, warnings=(W_CHECK_DIGIT_UNCHECKED,), kind="branch" if m.group(2) else "")


def parse_enterprise_code(text: str) -> EnterpriseCode:
    value = _squash(text)
    m = ENTERPRISE_RE.match(value)
    if m is None:
        raise InvalidEnterpriseCode(f"not an enterprise code: {value!r}")
    return EnterpriseCode(number=m.group(1), branch=m.group(2))


# --- dates ---------------------------------------------------------------------------------------------

_DMY = re.compile(r"^(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4})$")
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:\d{6})?$")  # yyyyMMdd or the portal's yyyyMMddHHmmss
MIN_YEAR, MAX_YEAR = 1900, 2100


def parse_date(text: str) -> dt.date:
    """Day-first dates as written on documents, or ISO: 05/07/2023, 5-7-2023, 2023-07-05, 20230705."""
    value = text.strip()
    if m := _DMY.match(value):
        day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif (m := _ISO.match(value)) or (m := _COMPACT.match(value)):
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        raise InvalidDate(f"not a date: {value!r}")
    return make_date(year, month, day)


def make_date(year: int, month: int, day: int) -> dt.date:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidDate(f"year out of range: {year}")
    try:
        return dt.date(year, month, day)
    except ValueError as err:
        raise InvalidDate(f"no such date: {year}-{month}-{day}") from err


def check_date(text: str) -> Check:
    try:
        return Check(True, parse_date(text).isoformat())
    except InvalidDate:
        return Check(False, text.strip(), InvalidDate.code)
