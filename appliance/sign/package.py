"""ASiC-E packages (ETSI EN 319 162-1): what travels to the provincial warehouse.

Layout:
  mimetype                      first entry, stored uncompressed: application/vnd.etsi.asic-e+zip
  <name>.pdf ...                the signed PDFs
  manifest.json                 package facts (below)
  META-INF/ASiCManifest.xml     references manifest.json and every PDF with its SHA-256
  META-INF/signature001.p7s     CAdES detached signature over ASiCManifest.xml, made with the token

manifest.json: package_id (SHA-256 over the sorted file digests), commune/agency code, dossier code,
TTHC code, category (Decision 468: result / processing / component), result code for results,
per document: file, sha256, bytes, pages, fields (number, symbol, date, type, issuing body, summary,
owner ID, validity), signatures (field, signer, certificate SHA-256, signing time); creation time and
whether the clock was NTP-synchronised; `package_signer`: SHA-256 and subject of the certificate that
signs the package; `supersedes`: the package_id this package corrects (null if none); `audit`: the audit
trail events the core hands over ([] if none), each {at, actor, action, document_id, detail}.
The signer certificate is read from the token (no login) before the manifest is written, so the manifest
names its own signer without a chicken-and-egg: it is the certificate, not the signature value, that is
fingerprinted. The same worker process signs with that certificate only, and verification checks that
the CAdES signer is the declared one (`signer_mismatch`).

This module is the format (`make_manifest`, `asic_manifest`, `write_package`, `verify_package`); the
signing session is `appliance.sign.batch` (`sign_and_package`), which defines `PackageRequest` and
`PackageInfo` (re-exported here). `write_package` runs inside the signing worker.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import re
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

from appliance.errors import PackageError
from appliance.sign.batch import PackageInfo, PackageJob, PackageRequest, sign_and_package
from appliance.sign.policy import SignPolicy
from appliance.sign.token import CertInfo
from appliance.sign.verify import PdfReport, Problem, verify_pdf

if TYPE_CHECKING:
    from appliance.sign.revocation import RevocationOptions
    from appliance.sign.trust import TrustStore

__all__ = [
    "ASIC_MANIFEST",
    "MANIFEST",
    "MIMETYPE",
    "SIGNATURE",
    "PackageInfo",
    "PackageReport",
    "PackageRequest",
    "asic_manifest",
    "build_package",
    "check_request",
    "make_manifest",
    "verify_package",
    "write_package",
]

log = logging.getLogger(__name__)

MIMETYPE = "application/vnd.etsi.asic-e+zip"
ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
MANIFEST = "manifest.json"
ASIC_MANIFEST = "META-INF/ASiCManifest.xml"
SIGNATURE = "META-INF/signature001.p7s"
CATEGORIES = {
    "result": "Kết quả giải quyết TTHC",
    "processing": "Kết quả xử lý (kể cả dự thảo)",
    "component": "Thành phần hồ sơ do tổ chức, cá nhân nộp",
}
DOCUMENT_FIELDS = ("number", "symbol", "date", "type", "issuing_body", "summary", "owner_id", "validity")
PACKAGE_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class PackageReport:
    name: str
    package_id: str | None
    signer: str | None
    documents: tuple[PdfReport, ...]
    problems: tuple[Problem, ...]
    signer_cert_sha256: str | None = None  # SHA-256 of the certificate in the CAdES signature
    supersedes: str | None = None  # package_id this package corrects (manifest.json; None in old packages)
    audit: tuple[dict[str, Any], ...] = ()  # the audit trail events of manifest.json (() in old packages)
    algorithm: str = ""  # of the package's CAdES signature (appliance.sign.verify.algorithm_name)
    trust_path: tuple[str, ...] = ()  # the package signer -> root (common names) when trusted

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.documents) and all(d.ok for d in self.documents)

    @property
    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for doc in self.documents:
            out.extend(Problem(p.code, f"{doc.name}: {p.detail}") for p in doc.all_problems)
        return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ntp_synchronised() -> bool | None:
    """Whether systemd reports the clock NTP-synchronised; None when it cannot tell."""
    try:
        done = subprocess.run(
            ["timedatectl", "show", "--property=NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip().lower()
    return {"yes": True, "no": False}.get(value)


def _pdf_facts(data: bytes) -> tuple[int, list[dict[str, Any]]]:
    import pikepdf
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from pyhanko.pdf_utils.reader import PdfFileReader

    with pikepdf.open(io.BytesIO(data)) as pdf:
        pages = len(pdf.pages)
    sigs = []
    for sig in PdfFileReader(io.BytesIO(data), strict=False).embedded_signatures:
        cert = x509.load_der_x509_certificate(sig.signer_cert.dump())
        when = sig.self_reported_timestamp
        sigs.append(
            {
                "field": sig.field_name,
                "signer": cert.subject.rfc4514_string(),
                "cert_sha256": cert.fingerprint(hashes.SHA256()).hex(),
                "signing_time": when.isoformat() if when else None,
            }
        )
    return pages, sigs


def check_request(request: PackageRequest, names: Sequence[str]) -> None:
    """Refuse a malformed package request before anything is signed (`names`: the PDFs' file names)."""
    if request.category not in CATEGORIES:
        raise PackageError(f"unknown category {request.category!r}")
    if not names:
        raise PackageError("a package needs at least one PDF")
    seen: set[str] = set()
    for name in names:
        if name in seen or name in {MANIFEST, "mimetype"} or name.startswith("META-INF/"):
            raise PackageError(f"two files named {name} in one package" if name in seen else f"reserved name {name}")
        seen.add(name)
    for name, given in request.fields.items():
        unknown = set(given) - set(DOCUMENT_FIELDS)
        if unknown:
            raise PackageError(f"unknown document field(s) for {name}: {sorted(unknown)}")
    if request.supersedes is not None and not PACKAGE_ID.match(request.supersedes):
        raise PackageError(f"supersedes must be a package_id (64 hex digits), not {request.supersedes!r}")
    for event in request.audit:
        if not isinstance(event, dict) or not all(isinstance(k, str) for k in event):
            raise PackageError("each audit event must be a JSON object")
    try:
        json.dumps(list(request.audit))
    except (TypeError, ValueError) as err:
        raise PackageError(f"the audit events are not JSON: {err}") from err


def make_manifest(
    request: PackageRequest,
    files: dict[str, bytes],
    now: dt.datetime,
    package_signer: dict[str, str] | None = None,
) -> dict[str, Any]:
    check_request(request, list(files))
    documents: list[dict[str, Any]] = []
    for name, data in files.items():
        try:
            pages, sigs = _pdf_facts(data)
        except Exception as err:  # noqa: BLE001 - pikepdf and pyHanko fail in many ways on a non-PDF
            raise PackageError(f"{name} is not a readable PDF: {type(err).__name__}") from err
        given = request.fields.get(name, {})
        documents.append(
            {
                "file": name,
                "sha256": _sha256(data),
                "bytes": len(data),
                "pages": pages,
                "fields": {k: given.get(k) for k in DOCUMENT_FIELDS},
                "signatures": sigs,
            }
        )
    package_id = _sha256("\n".join(sorted(f"{d['sha256']}  {d['file']}" for d in documents)).encode())
    if request.supersedes == package_id:
        raise PackageError("a package cannot supersede itself")
    return {
        "format": "appliance-package/1",
        "package_id": package_id,
        "commune_code": request.commune_code,
        "agency_code": request.agency_code,
        "dossier_code": request.dossier_code,
        "deciding_agency": request.deciding_agency or request.commune_code,
        "tthc_code": request.tthc_code,
        "category": request.category,
        "category_label": CATEGORIES[request.category],
        "result_code": request.result_code if request.category == "result" else None,
        "documents": documents,
        "signer_cert_sha256": sorted({s["cert_sha256"] for d in documents for s in d["signatures"]}),
        "package_signer": package_signer,
        "supersedes": request.supersedes,
        "audit": [dict(event) for event in request.audit],
        "created_at": now.astimezone(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="seconds"),
        "clock_ntp_synchronised": ntp_synchronised(),
    }


def asic_manifest(entries: dict[str, tuple[bytes, str]], signature_name: str = SIGNATURE) -> bytes:
    """META-INF/ASiCManifest.xml: one DataObjectReference (with SHA-256) per name -> (data, mime type)."""
    ET.register_namespace("asic", ASIC_NS)
    ET.register_namespace("ds", DS_NS)
    root = ET.Element(f"{{{ASIC_NS}}}ASiCManifest")
    ET.SubElement(root, f"{{{ASIC_NS}}}SigReference", URI=signature_name, MimeType="application/pkcs7-signature")
    for name, (data, mime) in entries.items():
        ref = ET.SubElement(root, f"{{{ASIC_NS}}}DataObjectReference", URI=name, MimeType=mime)
        ET.SubElement(ref, f"{{{DS_NS}}}DigestMethod", Algorithm=SHA256_URI)
        ET.SubElement(ref, f"{{{DS_NS}}}DigestValue").text = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True))


def write_package(
    request: PackageRequest,
    files: dict[str, bytes],
    signer: CertInfo,
    sign: Callable[[bytes], bytes],
    path: Path,
    now: dt.datetime,
) -> PackageInfo:
    """Write the ASiC-E container to `path`: manifest.json naming `signer`, ASiCManifest.xml, and the
    CAdES signature `sign(asic_manifest_bytes)` made with that certificate (in the signing worker)."""
    manifest = make_manifest(request, files, now, {"cert_sha256": signer.sha256, "subject": signer.subject})
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    entries = {MANIFEST: (manifest_bytes, "application/json")}
    entries.update({name: (data, "application/pdf") for name, data in files.items()})
    asic = asic_manifest(entries)
    der = sign(asic)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED)  # PDFs are already compressed
        z.writestr(MANIFEST, manifest_bytes, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(ASIC_MANIFEST, asic, compress_type=zipfile.ZIP_DEFLATED)
        z.writestr(SIGNATURE, der, compress_type=zipfile.ZIP_STORED)
    return PackageInfo(path, manifest["package_id"], path.stat().st_size, manifest, signer.sha256)


def build_package(
    request: PackageRequest,
    output: Path,
    pin: str,
    *,
    module: Path,
    serial: str | None = None,
    policy: SignPolicy | None = None,
) -> PackageInfo:
    """One package from already-signed PDFs, one PIN entry (`batch.sign_and_package` without documents)."""
    result = sign_and_package([], [PackageJob(request, output)], pin, module=module, serial=serial, policy=policy)
    return result.packages[0]


# --- verification -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _CmsCheck:
    signer: str | None
    fingerprint: str | None
    problems: list[Problem]
    algorithm: str = ""
    trust_path: tuple[str, ...] = ()


def _check_cms(signature: bytes, signed: bytes, store: TrustStore, now: dt.datetime) -> _CmsCheck:
    import asyncio

    from asn1crypto import cms  # type: ignore[import-untyped]
    from pyhanko.sign.validation.generic_cms import async_validate_detached_cms

    from appliance.sign.trust import validation_context
    from appliance.sign.verify import _path_names, algorithm_name, embedded_certificates

    try:
        info = cms.ContentInfo.load(signature)
        signed_data = info["content"]
        vc = validation_context(store.with_candidates(embedded_certificates(signed_data), now), now)
        status = asyncio.run(async_validate_detached_cms(signed, signed_data, signer_validation_context=vc))
    except Exception as err:  # noqa: BLE001 - malformed CMS takes many shapes
        return _CmsCheck(
            None, None, [Problem("bad_signature", f"the package signature cannot be read: {type(err).__name__}")]
        )
    cert = status.signing_cert
    signer = cert.subject.human_friendly if cert is not None else None
    fingerprint = hashlib.sha256(cert.dump()).hexdigest() if cert is not None else None
    problems = []
    if not status.intact:
        problems.append(Problem("tampered", "ASiCManifest.xml does not match the package signature"))
    elif not status.valid:
        problems.append(Problem("bad_signature", "the package signature does not verify"))
    elif cert is not None and cert["tbs_certificate"]["validity"]["not_after"].native < now:
        problems.append(Problem("certificate_expired", "the package signer's certificate has expired"))
    elif not status.trusted:
        problems.append(Problem("untrusted", "the package signer does not chain to a configured trust root"))
    algorithm = algorithm_name(str(status.pkcs7_signature_mechanism), str(status.md_algorithm))
    path = _path_names(status.validation_path) if status.trusted else ()
    return _CmsCheck(signer, fingerprint, problems, algorithm, path)


def verify_package(
    data: bytes,
    trust_roots: Sequence[Path],
    *,
    name: str = "",
    trust: TrustStore | None = None,
    revocation: RevocationOptions | None = None,
) -> PackageReport:
    """Container layout, the CAdES signature over ASiCManifest.xml, every referenced digest, the manifest's
    own digests and each PDF's signatures and marks. `trust` / `revocation` as in `verify_pdf`."""
    from appliance.sign.trust import explicit_store

    now = dt.datetime.now(dt.UTC)
    store = trust if trust is not None else explicit_store(trust_roots)
    problems: list[Problem] = []
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
        contents = {i.filename: z.read(i) for i in infos}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        return PackageReport(name, None, None, (), (Problem("unreadable", f"not a ZIP container: {err}"),))
    if (
        not infos
        or infos[0].filename != "mimetype"
        or infos[0].compress_type != zipfile.ZIP_STORED
        or contents["mimetype"] != MIMETYPE.encode()
    ):
        problems.append(
            Problem("bad_container", f"the first entry must be an uncompressed `mimetype` holding {MIMETYPE}")
        )
    asic = contents.get(ASIC_MANIFEST)
    if asic is None:
        return PackageReport(name, None, None, (), (*problems, Problem("bad_container", f"no {ASIC_MANIFEST}")))
    try:
        root = ET.fromstring(asic)
    except ET.ParseError as err:
        return PackageReport(name, None, None, (), (*problems, Problem("bad_container", f"bad XML: {err}")))
    sig_ref = root.find(f"{{{ASIC_NS}}}SigReference")
    sig_name = sig_ref.get("URI", "") if sig_ref is not None else ""
    signature = contents.get(sig_name)
    checked = _CmsCheck(None, None, [])
    if signature is None:
        problems.append(Problem("bad_container", f"signature {sig_name or '(none)'} missing"))
    else:
        checked = _check_cms(signature, asic, store, now)
        problems.extend(checked.problems)
    signer, fingerprint = checked.signer, checked.fingerprint
    referenced = set()
    for ref in root.findall(f"{{{ASIC_NS}}}DataObjectReference"):
        uri = ref.get("URI", "")
        referenced.add(uri)
        value = ref.findtext(f"{{{DS_NS}}}DigestValue", "")
        method = ref.find(f"{{{DS_NS}}}DigestMethod")
        if method is None or method.get("Algorithm") != SHA256_URI:
            problems.append(Problem("bad_container", f"{uri}: digest method is not SHA-256"))
        elif uri not in contents:
            problems.append(Problem("missing_file", f"{uri} is referenced but not in the package"))
        elif base64.b64encode(hashlib.sha256(contents[uri]).digest()).decode() != value:
            problems.append(Problem("wrong_hash", f"{uri}: SHA-256 differs from ASiCManifest.xml"))
    for fname in contents:
        if fname != "mimetype" and not fname.startswith("META-INF/") and fname not in referenced:
            problems.append(Problem("unreferenced_file", f"{fname} is not covered by the signature"))
    if MANIFEST not in referenced:
        problems.append(Problem("bad_container", f"{MANIFEST} is not referenced by {ASIC_MANIFEST}"))
    try:
        manifest = json.loads(contents.get(MANIFEST, b"{}"))
    except ValueError:
        manifest = {}
        problems.append(Problem("bad_container", f"{MANIFEST} is not JSON"))
    if not isinstance(manifest, dict):
        manifest = {}
        problems.append(Problem("bad_container", f"{MANIFEST} is not a JSON object"))
    supersedes, audit, fact_problems = _history(manifest)
    problems.extend(fact_problems)
    declared = (manifest.get("package_signer") or {}).get("cert_sha256")
    if fingerprint is not None and declared != fingerprint:
        problems.append(
            Problem(
                "signer_mismatch",
                f"{MANIFEST} declares package signer {declared or '(none)'}, the signature is by {fingerprint}",
            )
        )
    reports = []
    for doc in manifest.get("documents", []):
        fname = str(doc.get("file"))
        blob = contents.get(fname)
        if blob is None:
            problems.append(Problem("missing_file", f"{fname} is listed in {MANIFEST} but not in the package"))
            continue
        if _sha256(blob) != doc.get("sha256"):
            problems.append(Problem("wrong_hash", f"{fname}: SHA-256 differs from {MANIFEST}"))
        reports.append(verify_pdf(blob, trust_roots, name=fname, now=now, trust=store, revocation=revocation))
    if not reports:
        problems.append(Problem("no_documents", "the package holds no documents"))
    return PackageReport(
        name,
        manifest.get("package_id"),
        signer,
        tuple(reports),
        tuple(problems),
        fingerprint,
        supersedes,
        audit,
        checked.algorithm,
        checked.trust_path,
    )


def _history(manifest: dict[str, Any]) -> tuple[str | None, tuple[dict[str, Any], ...], list[Problem]]:
    """`supersedes` and `audit` of manifest.json; packages made before they existed have neither."""
    problems = []
    supersedes = manifest.get("supersedes")
    if supersedes is not None and not (isinstance(supersedes, str) and PACKAGE_ID.match(supersedes)):
        problems.append(Problem("bad_container", f"{MANIFEST}: supersedes is not a package_id"))
        supersedes = None
    audit = manifest.get("audit") or []
    if not isinstance(audit, list) or not all(isinstance(e, dict) for e in audit):
        problems.append(Problem("bad_container", f"{MANIFEST}: audit is not a list of events"))
        audit = []
    return supersedes, tuple(audit), problems
