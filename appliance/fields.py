"""Fields of Vietnamese administrative documents, from OCR text (and QR payloads).

Layout per Decree 30/2020/NĐ-CP: the issuing body in capitals top-left, the national title and motto
top-right, "Số: 38/QĐ-UBND" under the issuer, "Quảng Trị, ngày 05 tháng 7 năm 2023" on the right, the
document type centred in capitals (none for a công văn, which has "V/v ..." under its number), then the
summary (trích yếu). Codes (personal ID, dossier, TTHC, enterprise) are found anywhere and validated with
:mod:`appliance.domain`.

Matching runs on a *folded* copy of each line that has exactly the same length as the line: diacritics
removed, lower case, and O/o -> 0, l/I/| -> 1 inside number-like tokens. So a match in the folded copy slices
the original line at the same positions. This is what makes "S6: 38/QĐ-UBND", "ngay 05 thang 7 nam 2O23" and
"Số : 38 / QĐ - UBND" readable.

A field's confidence is the pattern certainty times the character-weighted mean OCR confidence of the words
it came from (when words are given). QR values take precedence over OCR values of the same field.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance import domain
from appliance.errors import InvalidDate
from appliance.model import Field, QrCode, Word
from appliance.qr import parse_receipt

FIELD_ORDER = (
    "co_quan_ban_hanh",
    "so",
    "ky_hieu",
    "so_ky_hieu",
    "dia_danh",
    "ngay_ban_hanh",
    "loai_van_ban",
    "trich_yeu",
    "ma_ho_so",
    "ma_tthc",
    "so_dinh_danh",
    "ma_doanh_nghiep",
    "ten_giay_to",
    "he_thong",
    "thoi_gian",
    "ngay_hen_tra",
)
REPEATABLE = frozenset({"so_dinh_danh"})

# Document types (longest first wins). Folded forms are matched; the value keeps the diacritics.
DOC_TYPES = (
    "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
    "GIẤY XÁC NHẬN TÌNH TRẠNG HÔN NHÂN",
    "GIẤY CHỨNG NHẬN KẾT HÔN",
    "GIẤY CHỨNG NHẬN",
    "GIẤY XÁC NHẬN",
    "GIẤY KHAI SINH",
    "GIẤY CHỨNG TỬ",
    "GIẤY ỦY QUYỀN",
    "GIẤY ĐỀ NGHỊ",
    "GIẤY GIỚI THIỆU",
    "GIẤY MỜI",
    "GIẤY NGHỈ PHÉP",
    "QUYẾT ĐỊNH",
    "NGHỊ QUYẾT",
    "CHỈ THỊ",
    "QUY CHẾ",
    "QUY ĐỊNH",
    "THÔNG BÁO",
    "THÔNG CÁO",
    "HƯỚNG DẪN",
    "CHƯƠNG TRÌNH",
    "KẾ HOẠCH",
    "PHƯƠNG ÁN",
    "ĐỀ ÁN",
    "DỰ ÁN",
    "BÁO CÁO",
    "BIÊN BẢN",
    "TỜ TRÌNH",
    "TỜ KHAI",
    "HỢP ĐỒNG",
    "CÔNG ĐIỆN",
    "BẢN GHI NHỚ",
    "BẢN THỎA THUẬN",
    "TRÍCH LỤC",
    "PHIẾU GỬI",
    "PHIẾU CHUYỂN",
    "PHIẾU BÁO",
    "THƯ CÔNG",
    "ĐƠN",
    "CÔNG VĂN",
)
CONG_VAN = "CÔNG VĂN"


# --- folding -------------------------------------------------------------------------------------------


def _fold_char(c: str) -> str:
    if c in "đĐÐð":
        return "d"
    base = unicodedata.normalize("NFD", c)[0]
    return base.lower() if len(base.lower()) == 1 else c


_NUMBERISH = re.compile(r"[0-9a-z|]+")


def fold(line: str) -> str:
    """Same-length matching copy of a line: no diacritics, lower case, O/l confusions fixed in numbers."""
    folded = "".join(_fold_char(c) for c in line)

    def fix(m: re.Match[str]) -> str:
        token = m.group(0)
        digits = sum(ch.isdigit() for ch in token)
        if digits and digits * 2 >= len(token) and all(ch.isdigit() or ch in "oil|" for ch in token):
            return token.translate(str.maketrans("oil|", "0111"))
        return token

    out = _NUMBERISH.sub(fix, folded)
    assert len(out) == len(line)
    return out


def _is_upper_line(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 3 and sum(c.isupper() for c in letters) >= 0.85 * len(letters)


def _collapse(text: str) -> str:
    return " ".join(text.split())


# --- candidates ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    name: str
    value: str
    certainty: float
    source: str  # the text it came from, to find its OCR words
    valid: bool | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class _Line:
    index: int
    text: str
    folded: str
    paragraph: int  # lines separated by a blank line belong to different paragraphs


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    paragraph = 0
    for raw in unicodedata.normalize("NFC", text).splitlines():
        line = raw.rstrip()
        if not line.strip():
            paragraph += 1
            continue
        out.append(_Line(len(out), line, fold(line), paragraph))
    return out


MOTTO = re.compile(r"d[o0]c\s*[l1]ap\s*[-–_.]?\s*tu\s*do\s*[-–_.]?\s*hanh\s*phuc")
NATIONAL = re.compile(r"cong\s*h[o0]a\s*xa\s*h[o0]i\s*chu\s*ngh[i1]a\s*v[i1]et\s*nam")
SO_KY_HIEU = re.compile(
    r"(?<![a-z0-9])s[o06]\s*(?P<colon>[:;.])?\s*(?P<so>[0-9]{1,5})\s*/\s*"
    r"(?P<kh>[a-z0-9]+(?:\s*[-/]\s*[a-z0-9]+)*)"
)
DATE = re.compile(r"(?<![a-z])ngay\s*(?P<d>[0-9]{1,2})\s*,?\s*thang\s*(?P<m>[0-9]{1,2})\s*,?\s*nam\s*(?P<y>[0-9]{4})")
VV = re.compile(r"^\s*v\s*/\s*v\s*[:.]?\s*")
DOSSIER = re.compile(
    r"(?<![0-9a-z.])(?:[0-9]{3}\s*\.\s*[0-9]{2}\s*\.\s*[0-9]{2}\s*\.\s*[a-z]\s*[0-9]{2}"
    r"|[a-z][0-9]{2}(?:\s*\.\s*[0-9]{2,3}){0,3})\s*-\s*[0-9]{6}\s*-\s*[0-9]{4,7}(?![0-9])"
)
TTHC = re.compile(r"(?<![0-9.])[1-3]\s*\.\s*[0-9]{6}(?:\.[0-9a-z]{1,5}){0,7}(?![0-9])")
ID12 = re.compile(r"(?<![0-9])(?:[0-9]{12}|[0-9]{3}[ .][0-9]{3}[ .][0-9]{3}[ .][0-9]{3})(?![0-9])")
CMND9 = re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])")
ENTERPRISE = re.compile(r"(?<![0-9])[0-9]{10}(?:\s*-\s*[0-9]{3})?(?![0-9])")
ID_CONTEXT = re.compile(r"(cccd|can cuoc|dinh danh|ddcn|cmnd|cmtnd|chung minh|ho chieu)[^0-9]{0,40}$")
CMND_CONTEXT = re.compile(r"(cmnd|cmtnd|chung minh)[^0-9]{0,40}$")
ENTERPRISE_CONTEXT = re.compile(r"(ma so doanh nghiep|msdn|ma so thue|mst|dang ky doanh nghiep)[^0-9]{0,40}$")
TTHC_CONTEXT = re.compile(r"(tthc|thu tuc)[^0-9]{0,40}$")
SUMMARY_STOP = re.compile(r"^\s*(can cu|kinh gui|xet de nghi|theo de nghi|noi nhan|dieu 1)")


def _squash_code(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def _find_so(lines: list[_Line]) -> tuple[list[_Found], tuple[int, int] | None]:
    for ln in lines:
        for m in SO_KY_HIEU.finditer(ln.folded):
            kh_orig = ln.text[m.start("kh") : m.end("kh")]
            kh = re.sub(r"\s+", "", kh_orig)
            if not any(c.isalpha() for c in kh) or not kh[0].isupper() and not kh[0].isdigit():
                continue
            letters = [c for c in kh if c.isalpha()]
            if sum(c.isupper() for c in letters) < 0.6 * len(letters):
                continue
            at_start = not ln.folded[: m.start()].strip()
            if m.group("colon") is None and not at_start:
                continue
            so = m.group("so")
            certainty = 0.95 if m.group("colon") else 0.8
            if (
                ln.text[m.start() : m.start() + 2].lower() not in ("số", "so")
                or so != ln.text[m.start("so") : m.end("so")]
            ):
                certainty -= 0.1  # read through OCR noise
            src = ln.text[m.start("so") : m.end("kh")]
            found = [
                _Found("so", so, certainty, ln.text[m.start("so") : m.end("so")]),
                _Found("ky_hieu", kh, certainty, kh_orig),
                _Found("so_ky_hieu", f"{so}/{kh}", certainty, src),
            ]
            return found, (ln.index, m.end())
    return [], None


def _find_date(lines: list[_Line], so_at: tuple[int, int] | None) -> tuple[list[_Found], int | None]:
    for ln in lines:
        for m in DATE.finditer(ln.folded):
            rest = ln.folded[m.end() :]
            if any(c.isalpha() for c in rest):
                continue  # a date inside a sentence, not the place-and-date line
            start = 0
            if so_at is not None and so_at[0] == ln.index and so_at[1] <= m.start():
                start = so_at[1]  # "Số: 38/QĐ-UBND   Quảng Trị, ngày ..." merged on one line
            prefix = ln.text[start : m.start()].rstrip()
            comma = prefix.endswith(",")
            place = _place(prefix.rstrip(",").rstrip())
            if not comma and prefix.strip() and not place:
                continue
            certainty = 0.95 if comma and place else 0.75
            day, month, year = int(m.group("d")), int(m.group("m")), int(m.group("y"))
            src = ln.text[m.start() : m.end()]
            found: list[_Found] = []
            try:
                value = domain.make_date(year, month, day).isoformat()
                found.append(_Found("ngay_ban_hanh", value, certainty, src, valid=True))
            except InvalidDate:
                found.append(
                    _Found(
                        "ngay_ban_hanh",
                        f"{day:02d}/{month:02d}/{year}",
                        certainty,
                        src,
                        valid=False,
                        problem=InvalidDate.code,
                    )
                )
            if place:
                found.append(_Found("dia_danh", place, certainty, place))
            return found, ln.index
    return [], None


def _place(prefix: str) -> str:
    tokens = prefix.split()
    taken: list[str] = []
    for token in reversed(tokens):
        if len(taken) >= 5 or not token[0].isupper():
            break
        if token.isupper() and len(token) > 1 and not token.endswith("."):
            break  # an all-capitals word belongs to the issuer column
        taken.append(token)
    return " ".join(reversed(taken))


_TYPES_FOLDED = sorted(((fold(t), t) for t in DOC_TYPES), key=lambda p: -len(p[0]))


def _find_type(lines: list[_Line]) -> tuple[_Found | None, int | None]:
    for ln in lines:
        if not _is_upper_line(ln.text):
            continue
        f = re.sub(r"[^a-z0-9 ]", " ", ln.folded)
        f = " ".join(f.split())
        for folded, canonical in _TYPES_FOLDED:
            if canonical == CONG_VAN:
                continue
            if f == folded or (f.startswith(folded + " ") and len(f) <= len(folded) + 60):
                exact = f == folded
                return _Found("loai_van_ban", canonical, 0.95 if exact else 0.85, ln.text.strip()), ln.index
    return None, None


def _find_summary(lines: list[_Line], type_line: int | None) -> tuple[_Found | None, bool]:
    """The trích yếu, and whether it was a 'V/v' line (a công văn)."""
    for ln in lines:
        m = VV.match(ln.folded)
        if m and len(ln.folded) > m.end() + 3:
            parts = [_before_date(ln).strip()]
            parts += _continuation(lines, ln.index, ln.paragraph)
            value = _collapse(" ".join(parts))
            return _Found("trich_yeu", value, 0.9, value), True
    if type_line is None:
        return None, False
    first = next((ln for ln in lines if ln.index > type_line), None)
    if first is None or SUMMARY_STOP.match(first.folded) or not any(c.isalpha() for c in first.text):
        return None, False
    if _is_upper_line(first.text) and not first.folded.startswith("ve viec"):
        return None, False
    parts = [first.text.strip(), *_continuation(lines, first.index, first.paragraph)]
    value = _collapse(" ".join(parts))
    return _Found("trich_yeu", value, 0.85, value), False


def _before_date(ln: _Line) -> str:
    """The line without a place-and-date part merged onto its end by a two-column layout."""
    m = DATE.search(ln.folded)
    if m is None or any(c.isalpha() for c in ln.folded[m.end() :]):
        return ln.text
    prefix = ln.text[: m.start()].rstrip().rstrip(",").rstrip()
    place = _place(prefix)
    return prefix[: len(prefix) - len(place)].rstrip(" ,")


def _continuation(lines: list[_Line], index: int, paragraph: int) -> list[str]:
    out: list[str] = []
    prev = lines[index]
    for ln in lines[index + 1 : index + 4]:
        if SUMMARY_STOP.match(ln.folded) or _is_upper_line(ln.text) or DATE.search(ln.folded):
            break
        if not any(c.isalpha() for c in ln.text):
            break
        same_par = ln.paragraph == paragraph
        continues = ln.text.lstrip()[:1].islower() and not prev.text.rstrip().endswith((".", ";", ":"))
        if not (same_par or continues):
            break
        out.append(ln.text.strip())
        prev = ln
    return out


def _find_issuer(lines: list[_Line], stop: int | None) -> _Found | None:
    limit = stop if stop is not None else 6
    parts: list[str] = []
    for ln in lines[: max(0, min(limit, 6))]:
        text = ln.text
        folded = ln.folded
        for pattern in (NATIONAL, MOTTO, SO_KY_HIEU, DATE):
            m = pattern.search(folded)
            if m:
                cut = m.start()
                text, folded = text[:cut], folded[:cut]
        text = text.strip(" _-–—=.")
        if not text or not _is_upper_line(text):
            continue
        parts.append(_collapse(text))
    if not parts:
        return None
    value = " ".join(parts)
    return _Found("co_quan_ban_hanh", value, 0.8 if stop is not None else 0.6, value)


def _find_codes(lines: list[_Line]) -> list[_Found]:
    found: list[_Found] = []
    for ln in lines:
        f = ln.folded
        taken: list[tuple[int, int]] = []

        def free(m: re.Match[str], taken: list[tuple[int, int]] = taken) -> bool:
            return all(m.end() <= a or m.start() >= b for a, b in taken)

        for m in DOSSIER.finditer(f):
            check = domain.check_dossier_code(_squash_code(m.group(0)))
            found.append(
                _Found(
                    "ma_ho_so",
                    check.value,
                    0.95 if check.ok else 0.5,
                    ln.text[m.start() : m.end()],
                    check.ok,
                    check.problem,
                )
            )
            taken.append(m.span())
        for m in TTHC.finditer(f):
            if not free(m):
                continue
            check = domain.check_tthc_code(_squash_code(m.group(0)))
            context = bool(TTHC_CONTEXT.search(f[: m.start()]))
            found.append(
                _Found(
                    "ma_tthc",
                    check.value,
                    0.95 if context else 0.6,
                    ln.text[m.start() : m.end()],
                    check.ok,
                    check.problem,
                )
            )
            taken.append(m.span())
        for m in ID12.finditer(f):
            if not free(m):
                continue
            check = domain.check_personal_id(m.group(0))
            context = bool(ID_CONTEXT.search(f[: m.start()]))
            if not context and (not check.ok or check.warnings):
                continue  # a bare 12-digit number is an ID only when it looks like one
            found.append(
                _Found(
                    "so_dinh_danh",
                    check.value,
                    0.95 if context else 0.6,
                    ln.text[m.start() : m.end()],
                    check.ok,
                    check.problem,
                )
            )
            taken.append(m.span())
        for m in CMND9.finditer(f):
            if free(m) and CMND_CONTEXT.search(f[: m.start()]):
                check = domain.check_personal_id(m.group(0))
                found.append(_Found("so_dinh_danh", check.value, 0.85, m.group(0), check.ok, check.problem))
                taken.append(m.span())
        for m in ENTERPRISE.finditer(f):
            if free(m) and ENTERPRISE_CONTEXT.search(f[: m.start()]):
                check = domain.check_enterprise_code(m.group(0))
                found.append(
                    _Found(
                        "ma_doanh_nghiep",
                        check.value,
                        0.9,
                        ln.text[m.start() : m.end()],
                        check.ok,
                        check.problem,
                    )
                )
                taken.append(m.span())
    return found


# --- confidence from OCR words -------------------------------------------------------------------------


def _key(text: str) -> str:
    return re.sub(r"\s+", "", fold(unicodedata.normalize("NFC", text)))


class _WordIndex:
    def __init__(self, words: Sequence[Word]) -> None:
        self.words = list(words)
        keys = [_key(w.text) for w in self.words]
        self.stream = "".join(keys)
        self.owner: list[int] = [i for i, k in enumerate(keys) for _ in k]
        chars = sum(len(w.text) for w in self.words)
        self.page_conf = sum(w.conf * len(w.text) for w in self.words) / chars if chars else 0.0

    def confidence(self, source: str) -> float:
        """Character-weighted mean confidence (0..1) of the words that hold `source`."""
        if not self.words:
            return 1.0
        key = _key(source)
        pos = self.stream.find(key) if key else -1
        if pos < 0:
            return 0.9 * self.page_conf / 100
        hit = sorted(set(self.owner[pos : pos + len(key)]))
        chars = sum(len(self.words[i].text) for i in hit)
        return sum(self.words[i].conf * len(self.words[i].text) for i in hit) / chars / 100 if chars else 0.0


# --- entry point ---------------------------------------------------------------------------------------


def extract_fields(text: str, words: Sequence[Word] = (), qr: Sequence[QrCode] = ()) -> tuple[Field, ...]:
    """Fields found on one document (or page): OCR text and words, and QR payloads (which win)."""
    lines = _lines(text)
    found: list[_Found] = []
    so, so_at = _find_so(lines)
    found += so
    date, date_line = _find_date(lines, so_at)
    found += date
    doc_type, type_line = _find_type(lines)
    summary, is_cong_van = _find_summary(lines, type_line)
    if doc_type is not None:
        found.append(doc_type)
    elif is_cong_van:
        found.append(_Found("loai_van_ban", CONG_VAN, 0.7, ""))
    if summary is not None:
        found.append(summary)
    header_end = [i for i in (so_at[0] if so_at else None, date_line, type_line) if i is not None]
    issuer = _find_issuer(lines, min(header_end) if header_end else None)
    if issuer is not None:
        found.append(issuer)
    found += _find_codes(lines)

    index = _WordIndex(words)
    ocr_fields = [
        Field(
            name=f.name,
            value=f.value,
            confidence=round(max(0.0, min(1.0, f.certainty * (index.confidence(f.source) if f.source else 1.0))), 3),
            source="ocr",
            valid=f.valid,
            problem=f.problem,
        )
        for f in found
    ]
    return _merge(_qr_fields(qr), ocr_fields)


def _qr_fields(codes: Iterable[QrCode]) -> list[Field]:
    out: list[Field] = []
    seen: set[str] = set()
    checks = {
        "ma_ho_so": domain.check_dossier_code,
        "ma_tthc": domain.check_tthc_code,
        "so_dinh_danh": domain.check_personal_id,
    }
    for code in codes:
        for name, value in parse_receipt(code.text).items():
            if name in seen:
                continue
            seen.add(name)
            valid: bool | None = None
            problem: str | None = None
            if name in checks:
                check = checks[name](value)
                valid, problem = check.ok, check.problem
            elif name == "ngay_hen_tra":
                check = domain.check_date(value)
                valid, problem = check.ok, check.problem
            out.append(Field(name=name, value=value, confidence=1.0, source="qr", valid=valid, problem=problem))
    return out


def _merge(qr_fields: list[Field], ocr_fields: list[Field]) -> tuple[Field, ...]:
    by_name: dict[str, list[Field]] = {}
    for f in qr_fields:
        by_name.setdefault(f.name, []).append(f)
    for f in ocr_fields:
        have = by_name.setdefault(f.name, [])
        if not have or f.name in REPEATABLE and all(h.value != f.value for h in have):
            have.append(f)
        # otherwise: the first value (QR, or the first OCR match) wins
    order = {name: i for i, name in enumerate(FIELD_ORDER)}
    return tuple(f for name in sorted(by_name, key=lambda n: order.get(n, len(order))) for f in by_name[name])
