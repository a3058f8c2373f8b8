"""QR codes on pages (zxing-cpp) and the payload of one-stop receipts.

Circular 01/2023/TT-VPCP puts a QR code (ISO/IEC 18004) in the upper-left corner of the slips the TTHC
system prints, with at least: dossier code, TTHC code, owner's ID, document name, system name, time; plus the
appointment date on receipts. The payload *format* is not standardised in our sources, so
:func:`parse_receipt` accepts JSON, ``key: value`` / ``key=value`` lists and bare separated values.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import parse_qsl

import cv2
import numpy as np
import zxingcpp

from appliance import domain
from appliance.errors import InvalidDate
from appliance.model import PageImage, QrCode

log = logging.getLogger(__name__)

# First pass on a copy whose longer side is at most this (about 150 dpi for A4); full resolution only when
# the first pass finds nothing.
FIRST_PASS_MAX_SIDE = 1800
_QR_FORMATS = zxingcpp.barcode_formats_from_str("QRCode,MicroQRCode")


def find_qr(image: PageImage) -> tuple[QrCode, ...]:
    """Every QR code on the page, with its box in the given image's pixels (top-left first)."""
    if image.size == 0:
        return ()
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    h, w = grey.shape
    scale = min(1.0, FIRST_PASS_MAX_SIDE / max(h, w))
    found: tuple[QrCode, ...] = ()
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.asarray(cv2.resize(grey, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
        found = _read(small, scale, w, h)
    if not found:
        found = _read(grey, 1.0, w, h)
    log.debug("found %d QR code(s) on a %dx%d page", len(found), w, h)
    return found


def _read(grey: PageImage, scale: float, width: int, height: int) -> tuple[QrCode, ...]:
    try:
        results = zxingcpp.read_barcodes(grey, formats=_QR_FORMATS)
    except (RuntimeError, ValueError) as err:  # zxing-cpp reports bad input this way
        log.warning("QR reader failed: %s", err)
        return ()
    codes: dict[str, QrCode] = {}
    for res in results:
        if not res.valid or not res.text:
            continue
        pos = res.position
        xs = [p.x / scale for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
        ys = [p.y / scale for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
        box = (
            max(0, int(min(xs))),
            max(0, int(min(ys))),
            min(width, int(round(max(xs))) + 1),
            min(height, int(round(max(ys))) + 1),
        )
        text = unicodedata.normalize("NFC", str(res.text))
        codes.setdefault(text, QrCode(text=text, box=box))
    return tuple(sorted(codes.values(), key=lambda c: (c.box[1] // 100, c.box[0])))


# --- receipt payload -----------------------------------------------------------------------------------

RECEIPT_KEYS = (
    "ma_ho_so",
    "ma_tthc",
    "so_dinh_danh",
    "ten_giay_to",
    "he_thong",
    "thoi_gian",
    "ngay_hen_tra",
    "co_quan_giai_quyet",  # Decree 118/2025: the deciding agency, when the receipt names it (not in the minimum)
)

# folded key (no diacritics, lower case, letters and digits only) -> normalised key
_ALIASES: dict[str, str] = {}
for _key, _names in {
    "ma_ho_so": "mahoso mahs sohoso maso masohoso dossiercode dossierid dossier code_dossier hoso",
    "ma_tthc": "matthc tthc mathutuc mathutuchanhchinh matthcdp procedurecode procedure thutuc",
    "so_dinh_danh": "sodinhdanh madinhdanh sodinhdanhcanhan sddcn socccd cccd socancuoc cancuoc "
    "sogiaytochuhoso madoituong personalid ownerid identification idnumber madinhdanhchuhoso",
    "ten_giay_to": "tengiayto tengiaytoketqua tentailieu tenvanban loaigiayto documentname docname document",
    "he_thong": "hethong tenhethong hethongthongtin system systemname",
    "thoi_gian": "thoigian thoigianphathanh thoigiantao ngayphathanh ngaytao ngaytiepnhan time "
    "createdat issuedat timestamp",
    "ngay_hen_tra": "ngayhentra hentra ngaytraketqua ngayhen appointmentdate appointment duedate",
    "co_quan_giai_quyet": "coquangiaiquyet macoquangiaiquyet donvigiaiquyet madonvigiaiquyet coquanthamquyen "
    "macoquanthamquyen coquanquyetdinh decidingagency agencycode",
}.items():
    for _name in _names.split():
        _ALIASES[_name.replace("_", "")] = _key

_DOSSIER = domain.DOSSIER_RE  # the shape; check_dossier_code decides
_ID12 = re.compile(r"^\d{12}$")
_DATE = re.compile(r"^\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}$|^\d{4}-\d{2}-\d{2}$|^\d{8}$")
_DATETIME = re.compile(
    r"^(?:\d{14}|\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2})?.*"
    r"|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}[ T]+\d{1,2}:\d{2}(?::\d{2})?"
    r"|\d{1,2}:\d{2}(?::\d{2})?[ ,]+\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4})$"
)


def fold_key(key: str) -> str:
    """'Mã hồ sơ' / 'MaHoSo' / 'ma_ho_so' -> 'mahoso'."""
    decomposed = unicodedata.normalize("NFD", key.replace("đ", "d").replace("Đ", "D"))
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]", "", ascii_only.lower())


def parse_receipt(text: str) -> dict[str, str]:
    """The known fields of a one-stop receipt QR payload, under normalised keys (see RECEIPT_KEYS)."""
    text = unicodedata.normalize("NFC", text).strip().lstrip("\ufeff")
    if not text:
        return {}
    pairs: list[tuple[str | None, str]]
    if text.startswith("{"):
        data = _json_object(text)
        pairs = list(_flatten(data)) if data is not None else _split_pairs(text.strip("{}"))
    elif re.match(r"^https?://", text) and "?" in text:
        query = text.partition("?")[2].partition("#")[0]  # not urlsplit: it refuses bad hosts ("http://[")
        pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=False)]
    else:
        pairs = _split_pairs(text)
    out: dict[str, str] = {}
    loose: list[str] = []
    for key, value in pairs:
        value = value.strip()
        if not value:
            continue
        name = _ALIASES.get(fold_key(key)) if key is not None else None
        if name is None:
            loose.append(value)
        elif name not in out:
            out[name] = _normalise(name, value)
    for value in loose:  # values without a known key: recognise them by their own pattern
        name = _guess(value, out)
        if name is not None:
            out[name] = _normalise(name, value)
    return out


# Receipts nest two or three levels at most; deeper JSON is not a receipt, and json.loads would recurse
# once per level (a QR code of 1.5 KB of brackets is enough for RecursionError).
MAX_JSON_DEPTH = 16


def _json_object(text: str) -> dict[str, object] | None:
    """The JSON object ``text`` holds; None when it is not one (bad JSON, nested too deep, huge numbers)."""
    if _nesting(text) > MAX_JSON_DEPTH:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, or an integer of more than 4300 digits
        return None
    return data if isinstance(data, dict) else None


def _nesting(text: str) -> int:
    """How deep brackets nest in a JSON text, not counting those inside strings (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _flatten(data: object, depth: int = 0) -> Iterable[tuple[str | None, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and depth < 3:
                yield from _flatten(value, depth + 1)
            elif value is not None and not isinstance(value, dict | list):
                yield str(key), str(value)
    elif isinstance(data, list) and depth < 3:
        for item in data:
            if isinstance(item, dict | list):
                yield from _flatten(item, depth + 1)
            elif item is not None:
                yield None, str(item)


_KEY_VALUE = re.compile(r"^\s*([^:=]{1,40}?)\s*[:=]\s*(.*)$", re.DOTALL)


def _split_pairs(text: str) -> list[tuple[str | None, str]]:
    pairs: list[tuple[str | None, str]] = []
    for part in re.split(r"[\r\n|;&\t]+", text):
        part = part.strip().strip(",").strip()
        if not part:
            continue
        m = _KEY_VALUE.match(part)
        # "10:30 05/07/2023" is a value, not key "10": keys start with a letter
        if m and re.match(r"^[^\W\d_]", m.group(1)) and fold_key(m.group(1)):
            pairs.append((m.group(1).strip().strip('"'), m.group(2).strip().strip('"')))
        else:
            pairs.append((None, part.strip('"')))
    return pairs


def _guess(value: str, found: dict[str, str]) -> str | None:
    squashed = re.sub(r"\s*([-.])\s*", r"\1", value.strip()).upper()
    if "ma_ho_so" not in found and _DOSSIER.match(squashed) and domain.check_dossier_code(value).ok:
        return "ma_ho_so"
    if "ma_tthc" not in found and domain.check_tthc_code(value).ok:
        return "ma_tthc"
    if "so_dinh_danh" not in found and _ID12.match(re.sub(r"\s", "", value)):
        return "so_dinh_danh"
    if _DATETIME.match(value.strip()) and "thoi_gian" not in found:
        return "thoi_gian"
    if _DATE.match(value.strip()) and domain.check_date(value).ok:
        # bare dates: the publication time comes first on the slips we know of, the appointment after it
        if "thoi_gian" not in found:
            return "thoi_gian"
        if "ngay_hen_tra" not in found:
            return "ngay_hen_tra"
    return None


def _normalise(name: str, value: str) -> str:
    value = " ".join(value.split())
    if name == "ma_ho_so":
        check = domain.check_dossier_code(value)
        return check.value if check.ok else value
    if name == "ma_tthc":
        check = domain.check_tthc_code(value)
        return check.value if check.ok else value
    if name == "so_dinh_danh":
        check = domain.check_personal_id(value)
        return check.value if check.ok else value
    if name in ("thoi_gian", "ngay_hen_tra"):
        return _normalise_time(value)
    return value


def _normalise_time(value: str) -> str:
    """ISO 8601 when the value is a recognisable date or date-time; the text as given otherwise."""
    v = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?", v):
        return v.replace(" ", "T", 1)
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})", v)
    if m:
        y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
        return _iso(y, mo, d, hh, mi, ss) or v
    m = re.fullmatch(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?", v)
    if m:
        d, mo, y, hh, mi = (int(g) for g in m.groups()[:5])
        return _iso(y, mo, d, hh, mi, int(m.group(6) or 0)) or v
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?[ ,]+(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})", v)
    if m:
        hh, mi = int(m.group(1)), int(m.group(2))
        d, mo, y = int(m.group(4)), int(m.group(5)), int(m.group(6))
        return _iso(y, mo, d, hh, mi, int(m.group(3) or 0)) or v
    check = domain.check_date(v)
    return check.value if check.ok else v


def _iso(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str | None:
    try:
        date = domain.make_date(year, month, day)
    except InvalidDate:
        return None
    if not (0 <= hour < 24 and 0 <= minute < 60 and 0 <= second < 60):
        return None
    return f"{date.isoformat()}T{hour:02d}:{minute:02d}:{second:02d}"
