"""Vietnamese administrative codes: parsing and validation (pure functions, no I/O).

Sources and how sure we are: /work/shared/reference/domain-vn.md §2 and §7.

- Dossier code ``{agency code}-{yyMMdd}-{sequence}``, in every form in force (law-and-anchors-2026.md §1.2):
  ``qcvn102``: the legacy agency code ``000.00.19.H12`` (QCVN 102:2016, Circular 01/2018/TT-VPCP Art. 19) [C],
  4-7 digit sequence; ``dinh_danh``: the agency's electronic identifier written level-1 first
  (``H15.50.05.13``, Decision 20/2020 as used under Circular 03/2025/TT-VPCP) [I: the text of 03/2025
  Art. 13.1-13.2 is unconfirmed, so any sequence of >= 4 digits is accepted]; ``tt04_2025``:
  ``MX1X2.Y1Y2Y3.Z1Z2-YYMMDD-AA`` + >= 4 digits (Circular 04/2025/TT-VPCP, from 25/01/2026) [C]. Forms that
  cannot be confirmed are added as patterns in configuration (``Settings.dossier_code_patterns``), as
  result codes are (``sign.result_code_pattern``). A rejection says why, in Vietnamese (``Check.reason``).
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
from collections.abc import Sequence
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

# dossier-code agency parts, one per form (see the module docstring); the sequence rules are in _dossier
QCVN102_AGENCY = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
TT04_AGENCY = re.compile(r"^[A-Y]\d{2}\.\d{3}\.\d{2}$")  # MX1X2.Y1Y2Y3.Z1Z2
IDENTIFIER_AGENCY = re.compile(r"^[A-Z]\d{2}(?:\.\d{2,3}){0,3}$")
AGENCY_RE = r"(?:\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}|[A-Z]\d{2}(?:\.\d{2,3}){0,3})"  # either agency form
DOSSIER_RE = re.compile(rf"^({AGENCY_RE})-(\d{{6}})-(\d{{4,}})$")  # the shape only: forms in parse_dossier_code
DOSSIER_FORMS: dict[str, str] = {
    "qcvn102": "mã cũ theo QCVN 102:2016 (Thông tư 01/2018/TT-VPCP)",
    "dinh_danh": "mã định danh cơ quan (Thông tư 03/2025/TT-VPCP)",
    "tt04_2025": "mã hồ sơ dịch vụ tập trung (Thông tư 04/2025/TT-VPCP)",
    "custom": "mẫu mã hồ sơ do tỉnh cấu hình",
}
TTHC_RE = re.compile(r"^([1-3]\.\d{6})((?:\.[0-9A-Z]{1,5}){1,7})?$")
ENTERPRISE_RE = re.compile(r"^(\d{10})(?:-(\d{3}))?$")


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of validating one value. ``problem`` is an errors.py code when not ok."""

    ok: bool
    value: str  # normalised form (the input, cleaned, when not ok)
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    kind: str = ""  # sub-kind: "cccd" / "cmnd" for IDs, "branch" for enterprise codes, the dossier-code form
    reason: str = ""  # why it is not ok, in Vietnamese, when more precise than the problem's message


@dataclass(frozen=True, slots=True)
class DossierCode:
    agency: str
    received: dt.date
    sequence: str  # kept as text: leading zeros matter
    form: str = "qcvn102"  # a key of DOSSIER_FORMS
    operator: str | None = None  # tt04_2025: AA, two digits of the operating agency's identifier
    raw: str = ""  # custom: the code as written (its parts are only what the pattern names)

    def __str__(self) -> str:
        if self.form == "custom":
            return self.raw
        return f"{self.agency}-{self.received:%y%m%d}-{self.operator or ''}{self.sequence}"


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


_CODE_CHARS = re.compile(r"[^0-9A-Z.\-]")


def check_dossier_code(text: str, *, patterns: Sequence[str] = ()) -> Check:
    """Any dossier-code form in force (``kind`` = the form), or the first reason it is none, in Vietnamese.

    ``patterns``: more accepted forms (regular expressions; named groups ``agency``, ``date`` (yyMMdd) and
    ``seq`` when they have them), for forms the law's text could not confirm."""
    value = _squash(text)
    parsed = _dossier(value, patterns)
    if isinstance(parsed, str):
        return Check(False, value, InvalidDossierCode.code, reason=parsed)
    return Check(True, value, kind=parsed.form)


def parse_dossier_code(text: str, *, patterns: Sequence[str] = ()) -> DossierCode:
    value = _squash(text)
    parsed = _dossier(value, patterns)
    if isinstance(parsed, str):
        raise InvalidDossierCode(f"not a dossier code: {value!r}", reason=parsed)
    return parsed


def _dossier(value: str, patterns: Sequence[str]) -> DossierCode | str:
    """The parsed code, or why it is not one (a Vietnamese sentence for the officer)."""
    if not value:
        return "Chưa có mã hồ sơ."
    for pattern in patterns:  # the province's own forms come first: they may be stricter or looser
        custom = _custom(value, pattern)
        if custom is not None:
            return custom
    if m := _CODE_CHARS.search(value):
        return f"Mã hồ sơ chỉ gồm chữ số, chữ in hoa, dấu chấm và dấu gạch ngang; có ký tự «{m.group(0)}»."
    parts = value.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return "Mã hồ sơ phải có ba phần nối bằng dấu gạch ngang: mã cơ quan - ngày tiếp nhận (yyMMdd) - số thứ tự."
    agency, day, tail = parts
    if not re.fullmatch(r"\d{6}", day):
        return f"Phần ngày tiếp nhận «{day}» phải có đúng 6 chữ số (năm, tháng, ngày: yyMMdd)."
    received = _yymmdd(day)
    if received is None:
        return f"Phần ngày tiếp nhận «{day}» không phải ngày có thật (yyMMdd)."
    if not tail.isdigit():
        return f"Số thứ tự «{tail}» chỉ được gồm chữ số."
    if len(tail) < 4:
        return f"Số thứ tự «{tail}» phải có ít nhất 4 chữ số."
    if QCVN102_AGENCY.match(agency):
        if len(tail) > 7:
            return f"Mã theo mẫu cũ (QCVN 102, như 000.00.19.H12) có số thứ tự 4 đến 7 chữ số, «{tail}» có {len(tail)}."
        return DossierCode(agency, received, tail, "qcvn102")
    if TT04_AGENCY.match(agency) and len(tail) >= 6:  # AA + at least 4 digits
        return DossierCode(agency, received, tail[2:], "tt04_2025", operator=tail[:2])
    if IDENTIFIER_AGENCY.match(agency) and len(agency) <= 35:
        return DossierCode(agency, received, tail, "dinh_danh")
    return (
        f"Phần mã cơ quan «{agency}» không theo mẫu nào đang dùng: 000.00.19.H12 (mẫu cũ QCVN 102) hoặc "
        "mã định danh viết từ cấp 1, như H12.345.67 (Thông tư 03/2025 và 04/2025)."
    )


def _custom(value: str, pattern: str) -> DossierCode | None:
    try:
        m = re.fullmatch(pattern, value)
    except re.error:
        return None  # a broken pattern in configuration accepts nothing (Settings validates it at start)
    if m is None:
        return None
    groups = m.groupdict()
    received = _yymmdd(groups["date"]) if groups.get("date") else dt.date(1900, 1, 1)  # 1900: no date part
    if received is None:
        return None
    return DossierCode(groups.get("agency") or "", received, groups.get("seq") or "", "custom", raw=value)


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
