"""Independent verification of signed PDFs (also used by the province receiver).

For every signature: integrity (digest), cryptographic validity, chain to the configured trust roots
(pyHanko's ValidationContext, no network fetching), certificate validity period, coverage (nothing
unsigned appended, later revisions only add signatures/form fields), and the rule-required visible mark:
a widget on page 1, top-left for an officer signature, top-right for an organisation signature, whose
appearance text carries the required items at about 10 pt. Each failure is one specific problem code.
Circular 15/2025 facts ride along (not failures): the signature algorithm and key (`notes` flags PKCS#1
v1.5 and short keys), the organisation, the trust path, and the revocation status when asked for
(`revocation=`: network, then the cache; a revoked signer is the problem `revoked`). Trust is a
`TrustStore` (appliance.sign.trust: pinned roots) or the given root files; roots embedded in a signature
count when pinned. People read the result through appliance.sign.report (`verification_lines`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.sign.pades import CONVERTED_NOTE, appearance_matrix, display_size, to_display
from appliance.sign.token import role_of

if TYPE_CHECKING:
    from appliance.sign.revocation import Revocation, RevocationOptions
    from appliance.sign.trust import TrustStore

log = logging.getLogger(__name__)

ISO_VN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+07:00")


@dataclass(frozen=True, slots=True)
class Problem:
    code: str  # tampered | bad_signature | untrusted | certificate_expired | certificate_not_yet_valid | ...
    detail: str


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    field_name: str
    signer: str
    cert_sha256: str
    role: str
    signing_time: str | None
    intact: bool
    valid: bool
    trusted: bool
    coverage: str
    modification_level: str
    mark_page: int | None
    mark_rect: tuple[float, float, float, float] | None
    mark_position: str | None  # "top-left" | "top-right" | "other"
    mark_text: str
    mark_font_size: float | None
    problems: tuple[Problem, ...]
    level: str = "B-B"  # "B-T" when the CMS carries an RFC 3161 signature timestamp
    timestamp_time: str | None = None  # genTime of the signature timestamp
    timestamp_ok: bool | None = None  # None without a timestamp
    page_rotate: int = 0  # page /Rotate of the mark's page; mark_position is as the reader sees it
    mark_text_source: str = ""  # "ActualText" | "ToUnicode" | "" (no text found)
    # Circular 15/2025: what verification shows besides integrity (appliance.sign.report renders it)
    organisation: str = ""  # O of the signer certificate
    algorithm: str = ""  # "rsassa-pss-sha256" | "rsa-pkcs1v15-sha256" | "ecdsa-sha256" | other "<sig>-<hash>"
    key: str = ""  # e.g. "RSA 2048", "EC 256"
    trust_path: tuple[str, ...] = ()  # signer -> root (common names) when trusted
    revocation: str = "not_checked"  # good | revoked | unknown | not_checked
    revocation_detail: str = ""
    notes: tuple[str, ...] = ()  # not failures: "legacy_algorithm" (PKCS#1 v1.5), "short_key", "revocation_unknown"

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class PdfReport:
    name: str
    signatures: tuple[SignatureCheck, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return bool(self.signatures) and not self.problems and all(s.ok for s in self.signatures)

    @property
    def all_problems(self) -> list[Problem]:
        return [*self.problems, *(p for s in self.signatures for p in s.problems)]


def load_roots(paths: Sequence[Path]) -> list[Any]:
    """asn1crypto certificates from PEM or DER files (a PEM file may hold several)."""
    from asn1crypto import pem  # type: ignore[import-untyped]
    from asn1crypto import x509 as asn1_x509

    roots: list[Any] = []
    for path in paths:
        data = path.read_bytes()
        if pem.detect(data):
            roots.extend(asn1_x509.Certificate.load(der) for _t, _h, der in pem.unarmor(data, multiple=True))
        else:
            roots.append(asn1_x509.Certificate.load(data))
    return roots


# --- the visible mark -------------------------------------------------------------------------
_HEX = re.compile(rb"<([0-9A-Fa-f\s]*)>")


def _hex(token: bytes) -> bytes:
    return bytes.fromhex(re.sub(rb"\s", b"", token).decode())


def _utf16(data: bytes) -> str:
    return data.decode("utf-16-be", errors="replace")


@dataclass(frozen=True, slots=True)
class _CMap:
    """A font's ToUnicode map: character code (bytes) -> text."""

    width: int  # bytes per character code
    table: dict[bytes, str]

    def decode(self, data: bytes) -> str:
        w = self.width
        return "".join(self.table.get(data[i : i + w], "\ufffd") for i in range(0, len(data) - w + 1, w))


def parse_tounicode(cmap: bytes) -> _CMap:
    """bfchar and bfrange entries of a ToUnicode CMap (ISO 32000-1 § 9.10.3)."""
    table: dict[bytes, str] = {}
    width = 0
    for block in re.findall(rb"begincodespacerange(.*?)endcodespacerange", cmap, re.S):
        codes = _HEX.findall(block)
        if codes:
            width = len(_hex(codes[0]))
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        codes = _HEX.findall(block)
        for src, dst in zip(codes[0::2], codes[1::2], strict=False):
            table[_hex(src)] = _utf16(_hex(dst))
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for lo_s, hi_s, rest in re.findall(
            rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(<[0-9A-Fa-f]+>|\[[^\]]*\])", block
        ):
            lo, hi = _hex(lo_s), _hex(hi_s)
            n = len(lo)
            start, stop = int.from_bytes(lo, "big"), int.from_bytes(hi, "big")
            if rest.startswith(b"["):
                targets = [_utf16(_hex(t)) for t in _HEX.findall(rest)]
                for i, code in enumerate(range(start, stop + 1)):
                    if i < len(targets):
                        table[code.to_bytes(n, "big")] = targets[i]
            else:
                base = _hex(rest[1:-1])
                for i, code in enumerate(range(start, stop + 1)):
                    last = int.from_bytes(base[-2:], "big") + i
                    table[code.to_bytes(n, "big")] = _utf16(base[:-2] + last.to_bytes(2, "big"))
    if not width:
        width = len(next(iter(table), b"\0\0"))
    return _CMap(width, table)


def _font_cmaps(xobject: Any) -> dict[str, _CMap]:
    res = xobject.get("/Resources")
    fonts = res.get("/Font") if res is not None else None
    out: dict[str, _CMap] = {}
    for name, font in (fonts or {}).items():
        to_unicode = font.get("/ToUnicode")
        if to_unicode is not None:
            out[str(name)] = parse_tounicode(to_unicode.read_bytes())
    return out


@dataclass
class _Text:
    """Text found in an appearance: /ActualText spans, and the glyphs decoded through ToUnicode."""

    actual: list[str] = field(default_factory=list)
    glyph_lines: list[str] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)

    def lines(self) -> tuple[list[str], str]:
        if self.actual:
            return self.actual, "ActualText"
        lines = [ln for ln in self.glyph_lines if ln.strip()]
        return lines, "ToUnicode" if lines else ""


def _appearance_text(xobject: Any, depth: int = 0, found: _Text | None = None) -> _Text:
    """Text (from /ActualText spans and from glyph codes via the fonts' ToUnicode maps) and effective
    font sizes in a form XObject. A new glyph line starts at every vertical text move."""
    import pikepdf

    found = found if found is not None else _Text()
    scale = [1.0]
    cmaps = _font_cmaps(xobject)
    cmap: _CMap | None = None
    line: list[str] = []

    def end_line() -> None:
        if line:
            found.glyph_lines.append("".join(line))
            line.clear()

    try:
        ops = pikepdf.parse_content_stream(xobject)
    except pikepdf.PdfError:
        return found
    for instruction in ops:
        operands, op = getattr(instruction, "operands", []), getattr(instruction, "operator", "")
        name = str(op)
        if name == "q":
            scale.append(scale[-1])
        elif name == "Q" and len(scale) > 1:
            scale.pop()
        elif name == "cm" and len(operands) == 6:
            a, b = float(operands[0]), float(operands[1])
            scale[-1] *= (a * a + b * b) ** 0.5
        elif name == "Tf" and len(operands) == 2:
            found.sizes.append(float(operands[1]) * scale[-1])
            cmap = cmaps.get(str(operands[0]))
        elif name in {"T*", "'", '"', "Tm", "BT", "ET"} or (
            name in {"Td", "TD"} and len(operands) == 2 and float(operands[1]) != 0
        ):
            end_line()
        if name in {"Tj", "'", '"'} and operands and cmap is not None:
            line.append(cmap.decode(bytes(operands[-1])))
        elif name == "TJ" and operands and cmap is not None:
            for item in operands[0]:
                if isinstance(item, pikepdf.String):
                    line.append(cmap.decode(bytes(item)))
                elif float(item) < -250:  # a gap wider than a quarter em reads as a space
                    line.append(" ")
        elif name == "BDC" and len(operands) == 2 and isinstance(operands[1], pikepdf.Dictionary):
            actual = operands[1].get("/ActualText")
            if actual is not None:
                found.actual.append(str(actual))
        elif name == "Do" and depth < 4:
            res = xobject.get("/Resources")
            inner = res.get("/XObject", {}).get(str(operands[0])) if res is not None else None
            if inner is not None:
                before = len(found.sizes)
                _appearance_text(inner, depth + 1, found)
                found.sizes[before:] = [s * scale[-1] for s in found.sizes[before:]]
    end_line()
    return found


def _widget(pdf: Any, field_name: str) -> tuple[int | None, Any]:
    for index, page in enumerate(pdf.pages):
        for annot in page.obj.get("/Annots", []):
            if str(annot.get("/Subtype", "")) != "/Widget":
                continue
            name = annot.get("/T")
            if name is None and annot.get("/Parent") is not None:
                name = annot.Parent.get("/T")
            if name is not None and str(name) == field_name:
                return index, annot
    return None, None


def _inherited(node: Any, key: str) -> Any:
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
    return None


def _page_box(page: Any) -> tuple[tuple[float, float, float, float], int]:
    """The page's crop box (else media box) and /Rotate, both possibly inherited from the page tree."""
    box = _inherited(page.obj, "/CropBox") or _inherited(page.obj, "/MediaBox")
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), int(_inherited(page.obj, "/Rotate") or 0) % 360


def _position(rect: tuple[float, float, float, float], page: tuple[float, float, float, float], rotate: int) -> str:
    """Where the rectangle sits on the page as the reader sees it (after the clockwise /Rotate)."""
    corners = [to_display(rotate, page, x, y) for x in (rect[0], rect[2]) for y in (rect[1], rect[3])]
    cx = sum(c[0] for c in corners) / 4
    cy = sum(c[1] for c in corners) / 4
    width, height = display_size(rotate, page)
    if cy <= 0.75 * height:
        return "other"
    return "top-left" if cx < width / 2 else "top-right" if cx > width / 2 else "other"


def _upright(appearance: Any, rotate: int) -> bool:
    """The appearance's /Matrix turns it counter-clockwise by the page's /Rotate (text reads upright)."""
    m = appearance.get("/Matrix")
    matrix = tuple(round(float(v)) for v in m[:4]) if m is not None else (1, 0, 0, 1)
    return matrix == appearance_matrix(rotate)[:4]


def _mark_problems(
    role: str, position: str | None, page: int | None, lines: list[str], sizes: list[float]
) -> list[Problem]:
    problems: list[Problem] = []
    if page is None:
        return [Problem("mark_missing", "the signature has no visible widget")]
    if page != 0:
        problems.append(Problem("mark_wrong_page", f"the mark is on page {page + 1}, not page 1"))
    want = "top-left" if role == "officer" else "top-right"
    if position != want:
        problems.append(Problem("mark_wrong_position", f"{role} mark is at {position}, the rule requires {want}"))
    text = "\n".join(lines)
    if not ISO_VN.search(text):
        problems.append(Problem("mark_text_missing", "no signing time in ISO 8601 with +07:00 in the mark"))
    if role == "officer" and not re.search(r"Người số hóa: \S", text):
        problems.append(Problem("mark_text_missing", "the officer mark does not name the digitizer"))
    if role == "organisation":
        if CONVERTED_NOTE not in text:
            problems.append(Problem("mark_text_missing", f"the organisation mark lacks «{CONVERTED_NOTE}»"))
        if not re.search(r"^(SAO Y|SAO LỤC|TRÍCH SAO)$", text, re.MULTILINE):
            problems.append(Problem("mark_text_missing", "the organisation mark lacks the copy form (SAO Y...)"))
        if sizes and any(abs(s - 10.0) > 0.5 for s in sizes):
            problems.append(Problem("mark_font_size", f"mark text is {sizes[0]:.1f} pt, the rule requires 10 pt"))
    return problems


# --- signatures -------------------------------------------------------------------------------
def algorithm_name(mechanism: str, digest: str) -> str:
    """appliance.sign.policy's name for a CMS signature mechanism (pyHanko's `pkcs7_signature_mechanism`)."""
    mechanism, digest = mechanism.lower(), (digest or "").lower()
    if mechanism == "rsassa_pss":
        return f"rsassa-pss-{digest}"
    if mechanism.endswith("_rsa") or mechanism in {"rsassa_pkcs1v15", "rsa"}:
        return f"rsa-pkcs1v15-{digest}"
    if "ecdsa" in mechanism:
        return f"ecdsa-{digest}"
    return f"{mechanism}-{digest}" if digest else mechanism


def _key_notes(cert: Any, algorithm: str) -> tuple[str, list[str]]:
    from appliance.sign.policy import MIN_EC_BITS, MIN_RSA_BITS
    from appliance.sign.token import key_facts

    kind, bits = key_facts(cert)
    notes = []
    if algorithm.startswith("rsa-pkcs1v15"):
        notes.append("legacy_algorithm")
    if (kind == "rsa" and bits < MIN_RSA_BITS) or (kind == "ec" and bits < MIN_EC_BITS):
        notes.append("short_key")
    return f"{kind.upper()} {bits}" if bits else kind.upper(), notes


def _path_names(path: Any) -> tuple[str, ...]:
    from appliance.sign.trust import common_name, from_asn1

    if path is None:
        return ()
    certs = [from_asn1(c) for c in path.iter_certs(include_root=True)]
    return tuple(common_name(c.subject) for c in reversed(certs))


def _revocation(path: Any, options: RevocationOptions | None, now: dt.datetime) -> Revocation:
    """The signer certificate's revocation status now, when asked for and a trusted path gives its issuer."""
    from appliance.sign import revocation
    from appliance.sign.trust import from_asn1

    if options is None:
        return revocation.NOT_CHECKED_RESULT
    if path is None:
        return revocation.Revocation(revocation.UNKNOWN, "", "no trusted path, so no issuer to ask")
    certs = [from_asn1(c) for c in path.iter_certs(include_root=True)]
    if len(certs) < 2:
        return revocation.Revocation(revocation.UNKNOWN, "", "the signer certificate is itself the root")
    return revocation.check(certs[-1], certs[-2], options, now)


def _check_signature(
    sig: Any, status: Any, pdf: Any, now: dt.datetime, is_last: bool, options: RevocationOptions | None = None
) -> SignatureCheck:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(status.signing_cert.dump())
    from cryptography.hazmat.primitives import hashes

    problems: list[Problem] = []
    if not status.intact:
        problems.append(Problem("tampered", "digest mismatch: the signed bytes were changed"))
    elif not status.valid:
        problems.append(Problem("bad_signature", "the signature value does not verify"))
    signed_at = status.signer_reported_dt
    at = signed_at or now
    if cert.not_valid_after_utc < now:
        problems.append(
            Problem("certificate_expired", f"signer certificate expired {cert.not_valid_after_utc:%Y-%m-%d}")
        )
    elif cert.not_valid_before_utc > at:
        problems.append(
            Problem(
                "certificate_not_yet_valid",
                f"signer certificate valid from {cert.not_valid_before_utc:%Y-%m-%d}",
            )
        )
    elif status.intact and status.valid and not status.trusted:
        problems.append(Problem("untrusted", "the signer certificate does not chain to a configured trust root"))
    if getattr(status, "revoked", False):
        problems.append(Problem("revoked", "the signer certificate is revoked"))
    algorithm = algorithm_name(str(status.pkcs7_signature_mechanism), str(status.md_algorithm))
    key, notes = _key_notes(cert, algorithm)
    path = status.validation_path if status.trusted else None
    revoked = _revocation(path, options, now)
    if revoked.status == "revoked":
        problems.append(Problem("revoked", revoked.detail))
    elif revoked.status == "unknown":
        notes.append("revocation_unknown")
    coverage = str(getattr(status.coverage, "name", status.coverage))
    modification = str(getattr(status.modification_level, "name", status.modification_level))
    if is_last and coverage != "ENTIRE_FILE":
        problems.append(Problem("unsigned_changes", f"bytes after the last signature are not signed ({coverage})"))
    elif modification not in {"NONE", "LTA_UPDATES", "FORM_FILLING"}:
        problems.append(Problem("modified_after_signing", f"later revisions changed the document ({modification})"))
    name = sig.field_name
    role = name.split("-", 1)[0] if name.split("-", 1)[0] in {"officer", "organisation"} else role_of(cert)
    page_index, widget = _widget(pdf, name)
    rect = position = None
    rotate = 0
    lines: list[str] = []
    sizes: list[float] = []
    source = ""
    if widget is not None and page_index is not None:
        r = [float(v) for v in widget.Rect]
        rect = (min(r[0], r[2]), min(r[1], r[3]), max(r[0], r[2]), max(r[1], r[3]))
        page_box, rotate = _page_box(pdf.pages[page_index])
        position = _position(rect, page_box, rotate)
        ap = widget.get("/AP")
        if ap is not None and ap.get("/N") is not None:
            found = _appearance_text(ap.N)
            (lines, source), sizes = found.lines(), found.sizes
            if lines and not _upright(ap.N, rotate):
                problems.append(
                    Problem("mark_not_upright", f"the mark's text is turned on a page with /Rotate {rotate}")
                )
    problems.extend(_mark_problems(role, position, page_index, lines, sizes))
    level, ts_time, ts_ok = "B-B", None, None
    ts = getattr(status, "timestamp_validity", None)
    if ts is not None:
        level, ts_time = "B-T", ts.timestamp.isoformat()
        ts_ok = bool(ts.intact and ts.valid and ts.trusted)
        if not ts_ok:
            what = (
                "does not match the signature" if not ts.intact else "is not valid" if not ts.valid else "is untrusted"
            )
            problems.append(Problem("bad_timestamp", f"the signature timestamp {what}"))
    return SignatureCheck(
        field_name=name,
        signer=cert.subject.rfc4514_string(),
        cert_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        role=role,
        signing_time=signed_at.isoformat() if signed_at else None,
        intact=bool(status.intact),
        valid=bool(status.valid),
        trusted=bool(status.trusted),
        coverage=coverage,
        modification_level=modification,
        mark_page=page_index,
        mark_rect=rect,
        mark_position=position,
        mark_text="\n".join(lines),
        mark_font_size=round(sizes[0], 2) if sizes else None,
        problems=tuple(problems),
        level=level,
        timestamp_time=ts_time,
        timestamp_ok=ts_ok,
        page_rotate=rotate,
        mark_text_source=source,
        organisation=_organisation(cert),
        algorithm=algorithm,
        key=key,
        trust_path=_path_names(path),
        revocation=revoked.status,
        revocation_detail=revoked.detail,
        notes=tuple(notes),
    )


def _organisation(cert: Any) -> str:
    from cryptography.x509.oid import NameOID

    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else ""


def embedded_certificates(signed_data: Any) -> list[Any]:
    """The certificates a CMS SignedData carries (cryptography objects)."""
    from cryptography import x509

    out = []
    for choice in signed_data["certificates"] or []:
        if choice.name == "certificate":
            try:
                out.append(x509.load_der_x509_certificate(choice.chosen.dump()))
            except ValueError:
                continue
    return out


def verify_pdf(
    data: bytes,
    trust_roots: Sequence[Path],
    *,
    name: str = "",
    now: dt.datetime | None = None,
    trust: TrustStore | None = None,
    revocation: RevocationOptions | None = None,
) -> PdfReport:
    """Check every signature of a PDF; the report's `ok` is True only when everything holds.

    Trust: `trust` (e.g. `policy.store(now)`: pinned roots, appliance.sign.trust) when given, else every
    certificate in `trust_roots` is a root as given. Either way a root embedded in the signature whose
    SHA-256 is pinned counts too. `revocation`: check the signer certificate now (network, then the
    cache); None leaves it "not_checked"."""
    import pikepdf
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature

    from appliance.sign.trust import explicit_store, validation_context

    now = now or dt.datetime.now(dt.UTC)
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = list(reader.embedded_signatures)
        pdf = pikepdf.open(io.BytesIO(data))
    except (PdfError, pikepdf.PdfError, ValueError) as err:
        return PdfReport(name, (), (Problem("unreadable", f"not a readable PDF: {err}"),))
    if not sigs:
        return PdfReport(name, (), (Problem("no_signatures", "the PDF carries no signature"),))
    store = trust if trust is not None else explicit_store(trust_roots)
    checks = []
    with pdf:
        for i, sig in enumerate(sigs):
            vc = validation_context(store.with_candidates(embedded_certificates(sig.signed_data), now), now)
            try:
                status = validate_pdf_signature(sig, vc)
            except Exception as err:  # noqa: BLE001 - pyHanko raises many kinds on malformed data
                log.warning("validating %s failed: %s", sig.field_name, type(err).__name__)
                checks.append(
                    SignatureCheck(
                        sig.field_name,
                        "",
                        "",
                        "",
                        None,
                        False,
                        False,
                        False,
                        "NONE",
                        "UNKNOWN",
                        None,
                        None,
                        None,
                        "",
                        None,
                        (Problem("tampered", f"cannot validate: {type(err).__name__}: {err}"),),
                    )
                )
                continue
            checks.append(_check_signature(sig, status, pdf, now, i == len(sigs) - 1, revocation))
    return PdfReport(name, tuple(checks))
