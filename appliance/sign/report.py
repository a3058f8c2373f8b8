"""Verification results for people: lines in Vietnamese (or English) and a one-page printable PDF.

Circular 15/2025/TT-BKHCN asks verification software to show the result in Vietnamese: who signed, when,
and whether the document is intact. For every signature `verification_lines` gives the signer, the
organisation, the signing time (ISO 8601, +07:00), integrity, the trust path, the revocation status and
the algorithm, then each problem in words (its code in brackets, for support). The CLI prints them, the
web's document page renders the same list, and `write_report_pdf` lays them out on one A4 page (Liberation
Serif, the metric twin of Times New Roman) that can be printed for the citizen.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.sign.pades import VN_TZ, iso_vn
from appliance.sign.policy import ALGORITHM_LABELS

if TYPE_CHECKING:
    from appliance.sign.package import PackageReport
    from appliance.sign.verify import PdfReport, Problem, SignatureCheck

PROBLEMS: dict[str, tuple[str, str]] = {  # code -> (Vietnamese, English)
    "tampered": ("Nội dung đã bị thay đổi sau khi ký", "the content was changed after signing"),
    "bad_signature": ("Giá trị chữ ký số không đúng", "the signature value does not verify"),
    "untrusted": (
        "Chứng thư của người ký không thuộc chuỗi tin cậy đến chứng thư gốc",
        "the signer's certificate does not chain to a trusted root",
    ),
    "certificate_expired": ("Chứng thư của người ký đã hết hạn", "the signer's certificate has expired"),
    "certificate_not_yet_valid": (
        "Chứng thư của người ký chưa có hiệu lực vào lúc ký",
        "the signer's certificate was not yet valid when it signed",
    ),
    "revoked": ("Chứng thư của người ký đã bị thu hồi", "the signer's certificate is revoked"),
    "unsigned_changes": (
        "Có nội dung được thêm vào sau chữ ký cuối cùng mà không được ký",
        "content was added after the last signature without being signed",
    ),
    "modified_after_signing": ("Tài liệu đã bị sửa đổi sau khi ký", "the document was modified after signing"),
    "bad_timestamp": ("Dấu thời gian không hợp lệ hoặc không tin cậy", "the timestamp is invalid or untrusted"),
    "mark_missing": ("Không có hình thức chữ ký hiển thị trên văn bản", "the signature has no visible mark"),
    "mark_wrong_page": ("Hình thức chữ ký không nằm ở trang đầu", "the visible mark is not on page 1"),
    "mark_wrong_position": ("Hình thức chữ ký không ở đúng vị trí quy định", "the visible mark is misplaced"),
    "mark_text_missing": ("Hình thức chữ ký thiếu thông tin bắt buộc", "the visible mark lacks required text"),
    "mark_font_size": ("Cỡ chữ của hình thức chữ ký không đúng 10 pt", "the visible mark is not 10 pt"),
    "mark_not_upright": ("Chữ của hình thức chữ ký bị xoay", "the visible mark's text is turned"),
    "unreadable": ("Không đọc được tệp", "the file cannot be read"),
    "no_signatures": ("Tệp không có chữ ký số", "the file carries no signature"),
    "bad_container": ("Cấu trúc gói hồ sơ không đúng", "the package's structure is wrong"),
    "missing_file": ("Gói hồ sơ thiếu tệp", "a file is missing from the package"),
    "wrong_hash": ("Tệp trong gói không khớp mã băm đã ký", "a file does not match its signed hash"),
    "unreferenced_file": ("Gói có tệp không được ký", "the package holds a file the signature does not cover"),
    "signer_mismatch": ("Người ký gói khác với người được khai báo", "the package signer is not the declared one"),
    "no_documents": ("Gói hồ sơ không có tài liệu", "the package holds no documents"),
}

NOTES: dict[str, tuple[str, str]] = {
    "legacy_algorithm": (
        "Chữ ký dùng RSA PKCS#1 v1.5, chưa theo Thông tư 15/2025/TT-BKHCN (RSASSA-PSS)",
        "the signature uses RSA PKCS#1 v1.5, not RSASSA-PSS as Circular 15/2025/TT-BKHCN requires",
    ),
    "short_key": (
        "Khóa ngắn hơn mức tối thiểu (RSA 2048 bit, ECDSA 256 bit)",
        "the key is shorter than the minimum (RSA 2048 bits, ECDSA 256 bits)",
    ),
    "revocation_unknown": (
        "Chưa xác định được tình trạng thu hồi của chứng thư",
        "the certificate's revocation status could not be established",
    ),
}

_WORDS: dict[str, tuple[str, str]] = {
    "file": ("Tệp", "File"),
    "package": ("Gói hồ sơ", "Package"),
    "package_id": ("Mã gói", "Package id"),
    "package_signature": ("Chữ ký của gói", "Package signature"),
    "result": ("Kết quả", "Result"),
    "valid": ("HỢP LỆ", "VALID"),
    "invalid": ("KHÔNG HỢP LỆ", "NOT VALID"),
    "signature": ("Chữ ký", "Signature"),
    "signer": ("Người ký", "Signer"),
    "organisation": ("Tổ chức", "Organisation"),
    "time": ("Thời gian ký", "Signing time"),
    "integrity": ("Toàn vẹn", "Integrity"),
    "intact": ("Nội dung không bị thay đổi sau khi ký", "unchanged since signing"),
    "broken": ("Nội dung đã bị thay đổi hoặc chữ ký không đúng", "changed since signing, or a bad signature"),
    "trust": ("Chuỗi tin cậy", "Trust path"),
    "untrusted": ("Không đến được chứng thư gốc tin cậy", "does not reach a trusted root"),
    "revocation": ("Tình trạng thu hồi", "Revocation"),
    "rev_good": ("Chưa bị thu hồi", "not revoked"),
    "rev_revoked": ("ĐÃ BỊ THU HỒI", "REVOKED"),
    "rev_unknown": ("Chưa kiểm tra được", "unknown"),
    "rev_not_checked": ("Không kiểm tra", "not checked"),
    "offline": ("mất mạng, không có kết quả đã lưu còn hiệu lực", "offline, no current cached answer"),
    "algorithm": ("Thuật toán", "Algorithm"),
    "key": ("khóa", "key"),
    "timestamp": ("Dấu thời gian", "Timestamp"),
    "note": ("Lưu ý", "Note"),
    "problem": ("Vấn đề", "Problem"),
    "none": ("(không có)", "(none)"),
    "unknown_time": ("không rõ", "unknown"),
    "title": ("KẾT QUẢ KIỂM TRA CHỮ KÝ SỐ", "DIGITAL SIGNATURE VERIFICATION"),
    "checked_at": ("Kiểm tra lúc", "Checked at"),
    "footer": (
        "Kiểm tra theo Thông tư 15/2025/TT-BKHCN: toàn vẹn, chuỗi tin cậy, thu hồi, thuật toán.",
        "Checked per Circular 15/2025/TT-BKHCN: integrity, trust path, revocation, algorithm.",
    ),
}


def _t(key: str, lang: str) -> str:
    vi, en = _WORDS[key]
    return en if lang == "en" else vi


def problem_text(problem: Problem, lang: str = "vi") -> str:
    """One problem in words, its code in brackets."""
    vi, en = PROBLEMS.get(problem.code, (problem.detail, problem.detail))
    return f"{en if lang == 'en' else vi} ({problem.code})"


def _common_name(subject: str) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if "Common Name: " in subject:  # asn1crypto's human_friendly form (PackageReport.signer)
        return subject.split("Common Name: ", 1)[1].split(", ", 1)[0]
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        return subject
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else subject


def _time_vn(value: str | None, lang: str) -> str:
    if not value:
        return _t("unknown_time", lang)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return iso_vn(when)


def algorithm_label(name: str) -> str:
    """'rsassa-pss-sha256' -> 'RSASSA-PSS (SHA-256)'; unknown names as they are."""
    if name in ALGORITHM_LABELS:
        return ALGORITHM_LABELS[name]
    kind, _sep, digest = name.rpartition("-")
    base = {"rsassa-pss": "RSASSA-PSS", "rsa-pkcs1v15": "RSA PKCS#1 v1.5", "ecdsa": "ECDSA"}.get(kind, kind)
    return f"{base} ({digest.upper().replace('SHA', 'SHA-')})" if base else name


def _revocation(check: SignatureCheck, lang: str) -> str:
    status = check.revocation
    text = _t(f"rev_{status}", lang) if f"rev_{status}" in _WORDS else status
    if status == "unknown" and "offline" in check.revocation_detail:
        text += f" ({_t('offline', lang)})"
    elif status in {"good", "revoked"} and check.revocation_detail:
        source = "OCSP" if "OCSP" in check.revocation_detail else "CRL"
        text += f" ({source})"
    return text


def signature_lines(check: SignatureCheck, index: int, lang: str = "vi") -> list[str]:
    """The lines for one signature (indented under a heading line)."""
    lines = [f"{_t('signature', lang)} {index} ({check.field_name}):"]
    lines.append(f"  {_t('signer', lang)}: {_common_name(check.signer) or _t('none', lang)}")
    lines.append(f"  {_t('organisation', lang)}: {check.organisation or _t('none', lang)}")
    lines.append(f"  {_t('time', lang)}: {_time_vn(check.signing_time, lang)}")
    lines.append(f"  {_t('integrity', lang)}: {_t('intact' if check.intact and check.valid else 'broken', lang)}")
    path = " → ".join(check.trust_path) if check.trusted and check.trust_path else _t("untrusted", lang)
    lines.append(f"  {_t('trust', lang)}: {path}")
    lines.append(f"  {_t('revocation', lang)}: {_revocation(check, lang)}")
    algorithm = algorithm_label(check.algorithm) if check.algorithm else _t("none", lang)
    key = f", {_t('key', lang)} {check.key} bit" if check.key else ""
    lines.append(f"  {_t('algorithm', lang)}: {algorithm}{key}")
    if check.level == "B-T" and check.timestamp_time:
        lines.append(f"  {_t('timestamp', lang)}: {_time_vn(check.timestamp_time, lang)}")
    for note in check.notes:
        vi, en = NOTES.get(note, (note, note))
        lines.append(f"  {_t('note', lang)}: {en if lang == 'en' else vi}")
    for problem in check.problems:
        lines.append(f"  {_t('problem', lang)}: {problem_text(problem, lang)}")
    return lines


def _pdf_lines(report: PdfReport, lang: str, indent: str = "") -> list[str]:
    lines = [
        f"{_t('file', lang)}: {report.name}",
        f"{_t('result', lang)}: {_t('valid' if report.ok else 'invalid', lang)}",
    ]
    for problem in report.problems:
        lines.append(f"{_t('problem', lang)}: {problem_text(problem, lang)}")
    for i, check in enumerate(report.signatures, start=1):
        lines.extend(signature_lines(check, i, lang))
    return [indent + line for line in lines]


def verification_lines(report: PdfReport | PackageReport, lang: str = "vi") -> list[str]:
    """What a person reads about a verification: per signature signer, organisation, signing time (+07:00),
    integrity, trust path, revocation and algorithm, then problems. `lang` "vi" (default) or "en"."""
    from appliance.sign.package import PackageReport

    if not isinstance(report, PackageReport):
        return _pdf_lines(report, lang)
    lines = [
        f"{_t('package', lang)}: {report.name}",
        f"{_t('result', lang)}: {_t('valid' if report.ok else 'invalid', lang)}",
        f"{_t('package_id', lang)}: {report.package_id or _t('none', lang)}",
    ]
    signer = _common_name(report.signer or "") if report.signer else _t("none", lang)
    algorithm = f", {algorithm_label(report.algorithm)}" if report.algorithm else ""
    lines.append(f"{_t('package_signature', lang)}: {signer}{algorithm}")
    if report.trust_path:
        lines.append(f"  {_t('trust', lang)}: {' → '.join(report.trust_path)}")
    for problem in report.problems:
        lines.append(f"{_t('problem', lang)}: {problem_text(problem, lang)}")
    for document in report.documents:
        lines.extend(_pdf_lines(document, lang, indent="  "))
    return lines


# --- the printable page -------------------------------------------------------------------------
PAGE = (595.28, 841.89)  # A4, pt
MARGIN = 56.0
TITLE_SIZE = 14


def _wrap(lines: list[str], size: float, width: float) -> list[str]:
    """Lines broken at spaces so each fits `width` pt at `size` pt (Liberation Serif metrics)."""
    from appliance.sign.pades import _measure

    font = _measure()

    def fits(text: str) -> bool:
        return float(font.getlength(text)) * size / 100 <= width

    out: list[str] = []
    for line in lines:
        lead = line[: len(line) - len(line.lstrip(" "))]
        words = line.split()
        current = lead + (words[0] if words else "")
        for word in words[1:]:
            if fits(f"{current} {word}"):
                current = f"{current} {word}"
            else:
                out.append(current)
                current = f"{lead}    {word}"  # continuation lines sit deeper
        out.append(current)
    return out


def _leading(size: int) -> int:
    return round(size * 1.25)


def _text_block(writer: object, text: str, size: int, x: float, y_top: float, width: float) -> None:
    from pyhanko.pdf_utils import layout
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
    from pyhanko.pdf_utils.text import TextBoxStyle
    from pyhanko.stamp import TextStamp, TextStampStyle

    from appliance.sign.pades import font_file

    leading = _leading(size)
    height = leading * (text.count("\n") + 1) + 4
    style = TextStampStyle(
        stamp_text="%(body)s",
        text_box_style=TextBoxStyle(
            font=GlyphAccumulatorFactory(str(font_file()), font_size=size),
            font_size=size,
            leading=leading,
            text_color=(0, 0, 0),
            box_layout_rule=layout.SimpleBoxLayoutRule(
                x_align=layout.AxisAlignment.ALIGN_MIN,
                y_align=layout.AxisAlignment.ALIGN_MAX,
                margins=layout.Margins(0, 0, 0, 0),
            ),
        ),
        inner_content_layout=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MIN,
            y_align=layout.AxisAlignment.ALIGN_MAX,
            margins=layout.Margins(0, 0, 0, 0),
        ),
        border_width=0,
        background=None,
    )
    stamp = TextStamp(
        writer=writer,  # type: ignore[arg-type]
        style=style,
        text_params={"body": text.replace("%", "%%")},
        box=layout.BoxConstraints(width=width, height=height),
    )
    stamp.apply(0, round(x), round(y_top - height))


def report_pdf(report: PdfReport | PackageReport, lang: str = "vi", now: dt.datetime | None = None) -> bytes:
    """One A4 page: a title, the verification lines (wrapped; the font shrinks down to 7 pt to keep one
    page), when it was checked. Text is real text (pdftotext reads it)."""
    import pikepdf
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    now = now or dt.datetime.now(VN_TZ)
    width = PAGE[0] - 2 * MARGIN
    body = verification_lines(report, lang)
    footer = [f"{_t('checked_at', lang)}: {iso_vn(now)}", _t("footer", lang)]
    available = PAGE[1] - 2 * MARGIN - TITLE_SIZE * 2.5
    size = 10
    while True:
        wrapped = _wrap(body, size, width)
        if (len(wrapped) + len(footer) + 1) * _leading(size) + 8 <= available or size <= 7:
            break
        size -= 1
    room = int((available - 8) / _leading(size)) - len(footer) - 1
    if len(wrapped) > room:  # still too long at 7 pt: say so rather than run off the page
        wrapped = [*wrapped[: room - 1], "…"]

    blank = pikepdf.new()
    blank.add_blank_page(page_size=PAGE)
    buf = io.BytesIO()
    blank.save(buf)
    writer = IncrementalPdfFileWriter(io.BytesIO(buf.getvalue()))
    top = PAGE[1] - MARGIN
    _text_block(writer, _t("title", lang), TITLE_SIZE, MARGIN, top, width)
    top -= TITLE_SIZE * 2.5
    _text_block(writer, "\n".join(wrapped), size, MARGIN, top, width)
    _text_block(writer, "\n".join(_wrap(footer, 8, width)), 8, MARGIN, MARGIN + _leading(8) * 3, width)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    with pikepdf.open(io.BytesIO(out.getvalue())) as pdf:  # one clean revision
        pdf.docinfo["/Title"] = _t("title", lang)
        final = io.BytesIO()
        pdf.save(final)
    return final.getvalue()


def write_report_pdf(report: PdfReport | PackageReport, path: Path, lang: str = "vi") -> Path:
    """`report_pdf` written to `path` (atomically)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(report_pdf(report, lang))
    tmp.replace(path)
    return path
