"""Token self-test: one login, sign a throwaway one-page PDF, verify it. For checking a new token model.

Exactly one PIN attempt (the batch signer logs in once and never retries), so a wrong PIN costs one try on
the token's counter and no more. Nothing is kept: the PDF lives in a temporary directory.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.messages_vi import MESSAGES_VI

log = logging.getLogger(__name__)

# without configured trust roots only the signature itself is checked, not the chain
TRUST_PROBLEMS = frozenset({"untrusted", "revoked"})


@dataclass(frozen=True, slots=True)
class SelftestResult:
    ok: bool
    code: str  # "ok", "verify_failed", or the error code (pin_incorrect, token_not_found ...)
    message: str  # one Vietnamese sentence for the officer
    role: str
    serial: str | None
    signer: str = ""
    level: str = ""
    trusted: bool | None = None  # None: no trust roots configured, the chain was not checked
    problems: tuple[str, ...] = ()


def throwaway_pdf(path: Path) -> Path:
    """A one-page A4 PDF with a line of text (nothing from the box's documents)."""
    import pikepdf

    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica)
    )
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=[0, 0, 595.28, 841.89],
        Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
        Contents=pdf.make_stream(b"BT /F1 14 Tf 72 760 Td (Token self-test / Tu kiem tra token) Tj ET"),
    )
    pdf.pages.append(pikepdf.Page(page))
    pdf.save(path)
    return path


def run_selftest(
    pin: str,
    *,
    module: Path,
    serial: str | None,
    role: str,
    trust_roots: Sequence[Path] = (),
    tsa_url: str | None = None,
) -> SelftestResult:
    """Sign and verify once; every failure becomes a result (never raises for token or PIN errors)."""
    from appliance.sign.batch import SignJob, sign_batch
    from appliance.sign.verify import verify_pdf

    with tempfile.TemporaryDirectory(prefix="token-selftest-") as tmp:
        src = throwaway_pdf(Path(tmp) / "selftest.pdf")
        out = Path(tmp) / "selftest-signed.pdf"
        job = SignJob(input=src, output=out, role=role, reason="Tự kiểm tra token", signer_name="Tự kiểm tra")
        try:
            (signed,) = sign_batch([job], pin, module=module, serial=serial, tsa_url=tsa_url)
        except ApplianceError as err:
            log.warning("token self-test: signing failed (%s)", err.code)
            message = MESSAGES_VI.get(err.code, MESSAGES_VI.get("sign_failed", ""))
            return SelftestResult(False, err.code, message, role, serial)
        report = verify_pdf(out.read_bytes(), list(trust_roots), name="selftest.pdf")
    problems = [p for p in report.all_problems if trust_roots or p.code not in TRUST_PROBLEMS]
    trusted = all(c.trusted for c in report.signatures) if trust_roots else None
    ok = bool(report.signatures) and not problems
    if ok:
        message = "Token ký và xác minh được chữ ký số: token dùng được trên thiết bị này."
        if trusted is None:
            message += " (Chưa cấu hình chứng thư gốc tin cậy nên chưa kiểm tra chuỗi chứng thư.)"
    else:
        message = "Token đã ký nhưng chữ ký không xác minh được; hãy báo cho cán bộ CNTT của tỉnh."
    return SelftestResult(
        ok=ok,
        code="ok" if ok else "verify_failed",
        message=message,
        role=role,
        serial=serial,
        signer=signed.cert_subject,
        level=signed.level,
        trusted=trusted,
        problems=tuple(f"{p.code}: {p.detail}" for p in problems),
    )
