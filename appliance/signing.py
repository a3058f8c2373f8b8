"""Signing belongs to the officer: what is ready to sign, whose certificate is on the token, and the one
function that signs, packages and queues a batch with one PIN entry (one token session).

- :func:`ready` lists reviewed documents with who reviewed them; only the signed-in officer's own are
  pre-selected.
- :func:`check_certificate` compares the token's personal certificate with the officer's registered name
  (or ID number): when they differ, signing needs an explicit confirmation, recorded in the audit trail.
- :func:`sign` refuses anything not ready before the PIN is used, signs every chosen document and every
  package (one per dossier, kind, result code and superseded package) in one worker process and one
  token login, then records signed -> queued for each document and queues the packages, in one
  transaction. A wrong PIN, a pulled token or a failed package leaves every document as it was.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance import audit, db, domain, workflow
from appliance.db import DocState, Document
from appliance.errors import CertificateMismatch, NothingChosen, NotReadyToSign, PinRequired
from appliance.outbox import store as outbox
from appliance.records import DocumentInfo, Dossier, Kind
from appliance.settings import Settings
from appliance.sign.batch import BatchResult, PackageJob, SignJob, sign_and_package
from appliance.sign.package import PackageRequest
from appliance.sign.policy import sign_policy
from appliance.sign.token import CertInfo
from appliance.sign.verify import PdfReport
from appliance.textindex import fold
from appliance.workflow import Actor

log = logging.getLogger(__name__)

PACKAGE_FIELDS = {
    "so_ky_hieu": "number",
    "ngay_ban_hanh": "date",
    "loai_van_ban": "type",
    "co_quan_ban_hanh": "issuing_body",
    "trich_yeu": "summary",
    "so_dinh_danh": "owner_id",
}
MAX_BATCH = 200


@dataclass(frozen=True, slots=True)
class Signable:
    """A reviewed document waiting for a signature, as the signing list shows it."""

    id: str
    dossier_code: str | None
    kind: str | None
    result_code: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    page_count: int
    version: int
    title: str
    flags: tuple[str, ...]  # what to look at first: page flags, "no_result_code"
    mine: bool  # reviewed by the signed-in officer: pre-selected

    @property
    def ready(self) -> bool:
        return "no_result_code" not in self.flags


def ready(session: Session, *, actor: Actor) -> list[Signable]:
    rows = session.execute(
        select(Document, DocumentInfo)
        .join(DocumentInfo, DocumentInfo.document_id == Document.id)
        .where(Document.state == DocState.REVIEWED, DocumentInfo.kind.is_not(None), Document.superseded_by.is_(None))
        .order_by(Document.created_at)
    ).all()
    out = []
    for doc, info in rows:
        flags = sorted({str(f) for p in doc.pages for f in (p.flags or [])})
        if info.kind == Kind.RESULT and not info.result_code:
            flags.append("no_result_code")
        fields = info.fields or {}
        out.append(
            Signable(
                id=doc.id,
                dossier_code=doc.dossier_code,
                kind=info.kind,
                result_code=info.result_code,
                reviewed_by=info.reviewed_by,
                reviewed_at=info.reviewed_at,
                page_count=doc.page_count,
                version=doc.version,
                title=str(fields.get("trich_yeu") or fields.get("loai_van_ban") or ""),
                flags=tuple(flags),
                mine=info.reviewed_by == actor.username,
            )
        )
    return out


# --- whose certificate -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CertCheck:
    subject: str
    common_name: str
    serial: str
    matches: bool  # names the officer (by name or ID number)


_NUMBER = re.compile(r"\d{9,}")  # CMND has 9 digits, CCCD 12, a tax code 10 (or 13 with its branch)


def _numbers(value: str) -> set[str]:
    """The ID numbers in an identity attribute such as "CCCD:001203004005" or "MST:0101234567-001"."""
    return set(_NUMBER.findall(value.replace("-", "")))


def names_officer(cert: CertInfo, actor: Actor) -> bool:
    """Whether the certificate is the officer's: the same whole ID number in its UID or serialNumber
    attribute, or the same name (without diacritics or case)."""
    if actor.id_number:
        wanted = "".join(c for c in actor.id_number if c.isdigit())
        if wanted and any(wanted in _numbers(v) for v in (cert.subject_uid, cert.subject_serial_number)):
            return True
    return bool(actor.full_name) and fold(cert.common_name) == fold(actor.full_name)


def officer_certificate(certs: Sequence[CertInfo]) -> CertInfo | None:
    ours = [c for c in certs if not c.is_ca and c.role == "officer"]
    return sorted(ours, key=lambda c: c.not_after, reverse=True)[0] if ours else None


def check_certificate(certs: Sequence[CertInfo], actor: Actor) -> CertCheck | None:
    """The token's personal certificate against the officer (None when the token holds none)."""
    cert = officer_certificate(certs)
    if cert is None:
        return None
    return CertCheck(cert.subject, cert.common_name, cert.serial, names_officer(cert, actor))


# --- the batch -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Chosen:
    doc_id: str
    dossier_code: str
    kind: str
    result_code: str | None
    fields: dict[str, str | None]
    supersedes: str | None  # the package of the version this one corrects
    pdf: Path
    reviewed_at: datetime | None  # the review that was signed: a later one means the batch is stale


@dataclass(frozen=True, slots=True)
class Signed:
    documents: tuple[str, ...]
    packages: tuple[str, ...]
    cert_subject: str


def _choose(session: Session, doc_ids: Sequence[str]) -> list[_Chosen]:
    chosen = []
    for doc_id in doc_ids:
        doc = session.get(Document, doc_id)
        info = session.get(DocumentInfo, doc_id)
        if (
            doc is None
            or info is None
            or doc.state != DocState.REVIEWED
            or doc.superseded_by
            or not info.kind
            or (info.kind == Kind.RESULT and not info.result_code)
            or not doc.pdf_path
        ):
            raise NotReadyToSign(f"document {doc_id} is not ready to sign")
        supersedes = None
        if doc.supersedes_id:
            older = session.get(DocumentInfo, doc.supersedes_id)
            supersedes = older.package_id if older else None
        fields = {new: (info.fields or {}).get(old) or None for old, new in PACKAGE_FIELDS.items()}
        if fields["date"]:  # the warehouse gets ISO 8601 dates whatever the officer typed
            checked = domain.check_date(str(fields["date"]))
            fields["date"] = checked.value if checked.ok else fields["date"]
        chosen.append(
            _Chosen(
                doc.id,
                doc.dossier_code or "",
                info.kind,
                info.result_code,
                fields | {"validity": info.valid_until},
                supersedes,
                Path(doc.pdf_path),
                info.reviewed_at,
            )
        )
    return chosen


def sign(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    actor: Actor,
    doc_ids: Sequence[str],
    pin: str,
    certificates: Sequence[CertInfo] = (),
    confirm_certificate: bool = False,
) -> Signed:
    """Sign, package and queue the chosen documents with one PIN entry.

    ``certificates`` are the token's (read without a login for the signing page); when the personal one
    does not name the officer, ``confirm_certificate`` must be True (else CertificateMismatch, before the
    PIN is used)."""
    doc_ids = list(dict.fromkeys(doc_ids))[:MAX_BATCH]
    if not doc_ids:
        raise NothingChosen("no document chosen")
    if not pin:
        raise PinRequired("no PIN typed")
    with db.transaction(factory) as session:
        chosen = _choose(session, doc_ids)
        history: dict[str | None, list[dict[str, Any]]] = {}
        for entry in audit.for_documents(session, document_ids=doc_ids):
            history.setdefault(entry.document_id, []).append(entry.as_json())
        opened = {c.dossier_code: session.get(Dossier, c.dossier_code) for c in chosen if c.dossier_code}
        tthc = {code: (d.tthc_code if d else None) for code, d in opened.items()}
        deciding = {  # Decree 118/2025: the package goes to the deciding agency's warehouse
            code: (d.deciding_agency or d.receiving_unit if d else None) or settings.commune_code
            for code, d in opened.items()
        }
    personal = any(c.kind != Kind.RESULT for c in chosen)
    check = check_certificate(certificates, actor) if personal else None
    if check is not None and not check.matches and not confirm_certificate:
        raise CertificateMismatch(
            f"certificate {check.common_name!r} does not name {actor.username}", subject=check.subject
        )

    signed_dir = settings.data_dir / "signed"
    packages_dir = settings.data_dir / "packages"
    signed_dir.mkdir(parents=True, exist_ok=True)
    packages_dir.mkdir(parents=True, exist_ok=True)
    org = settings.sign.organisation_name
    jobs = [
        SignJob(
            input=c.pdf,
            output=signed_dir / f"{c.doc_id}.pdf",
            role="organisation" if c.kind == Kind.RESULT else "officer",
            signer_name=actor.full_name or actor.username,
            organisation=org,
            reason=(
                f"SAO Y: chuyển đổi từ văn bản giấy; mã kết quả {c.result_code}"
                if c.kind == Kind.RESULT
                else "Số hóa thành phần hồ sơ TTHC"
            ),
            location=org,
        )
        for c in chosen
    ]
    groups: dict[tuple[str, str, str, str], list[_Chosen]] = defaultdict(list)
    for c in chosen:
        groups[(c.dossier_code, c.kind, c.result_code or "", c.supersedes or "")].append(c)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    packages: list[PackageJob] = []
    members: list[list[_Chosen]] = []
    for (dossier_code, kind, result_code, supersedes), group in groups.items():
        name = f"{dossier_code or 'ton-dong'}-{kind}-{stamp}-{group[0].doc_id[:8]}.asice"
        request = PackageRequest(
            pdfs=tuple(signed_dir / f"{c.doc_id}.pdf" for c in group),
            category=kind,
            dossier_code=dossier_code,
            tthc_code=tthc.get(dossier_code),
            result_code=result_code or None,
            fields={f"{c.doc_id}.pdf": c.fields for c in group},
            role="organisation",
            commune_code=settings.commune_code,
            agency_code=settings.sign.agency_code,
            supersedes=supersedes or None,
            audit=tuple(event for c in group for event in history.get(c.doc_id, [])),
            deciding_agency=deciding.get(dossier_code) or settings.commune_code,
        )
        packages.append(PackageJob(request=request, output=packages_dir / name))
        members.append(group)

    done: BatchResult = sign_and_package(
        jobs,
        packages,
        pin,
        module=settings.sign.pkcs11_module,
        serial=settings.sign.token_serial,
        tsa_url=settings.sign.tsa_url,
        policy=sign_policy(settings),  # Circular 15/2025: PSS, key size, trust path and revocation first
    )
    del pin
    by_output = {r.output: r for r in done.signed}
    now = datetime.now(UTC)
    try:
        _record(factory, actor, chosen, members, done, by_output, check, now, signed_dir)
    except NotReadyToSign:  # a document changed while the token signed: what was signed is not kept
        for result in done.signed:
            result.output.unlink(missing_ok=True)
        for package in done.packages:
            package.path.unlink(missing_ok=True)
        raise
    log.info("signed %d document(s) into %d package(s)", len(chosen), len(done.packages))
    return Signed(tuple(c.doc_id for c in chosen), tuple(p.package_id for p in done.packages), done.cert_subject)


def _record(
    factory: sessionmaker[Session],
    actor: Actor,
    chosen: Sequence[_Chosen],
    members: Sequence[Sequence[_Chosen]],
    done: BatchResult,
    by_output: dict[Path, Any],
    check: CertCheck | None,
    now: datetime,
    signed_dir: Path,
) -> None:
    """signed -> queued for every document and the packages in the outbox, in one transaction; refused
    (NotReadyToSign) when a document is no longer exactly what was signed."""
    with db.transaction(factory) as session:
        for package, group in zip(done.packages, members, strict=True):  # the first write takes the lock
            outbox.enqueue(
                session,
                path=package.path,
                package_id=package.package_id,
                dossier_code=group[0].dossier_code or None,
                priority=outbox.PRIORITY_RECEIPT if group[0].kind == Kind.RESULT else outbox.PRIORITY_PACKAGE,
            )
        for c in chosen:  # read under the write lock: nobody changes them until this commits
            doc = session.get(Document, c.doc_id)
            info = session.get(DocumentInfo, c.doc_id)
            if (
                doc is None
                or info is None
                or doc.state != DocState.REVIEWED
                or doc.superseded_by
                or info.reviewed_at != c.reviewed_at
                or info.result_code != c.result_code
                or info.kind != c.kind
            ):
                raise NotReadyToSign(f"document {c.doc_id} changed while it was being signed")
        for package, group in zip(done.packages, members, strict=True):
            for c in group:
                doc = session.get(Document, c.doc_id)
                info = session.get(DocumentInfo, c.doc_id)
                assert doc is not None and info is not None
                result = by_output[signed_dir / f"{c.doc_id}.pdf"]
                info.signed_path = str(result.output)
                info.signed_by, info.signed_at = actor.username, now
                info.cert_subject, info.cert_serial = result.cert_subject[:500], result.cert_serial
                info.package_id = package.package_id
                if check is not None and not check.matches and c.kind != Kind.RESULT:
                    audit.record(
                        session,
                        actor=actor.username,
                        action="certificate_confirmed",
                        document_id=doc.id,
                        dossier_code=doc.dossier_code,
                        detail={"certificate": check.subject, "officer": actor.full_name},
                    )
                workflow.move(
                    session,
                    doc,
                    DocState.SIGNED,
                    actor=actor,
                    detail={
                        "certificate_subject": result.cert_subject,
                        "certificate_serial": result.cert_serial,
                        "certificate_sha256": result.cert_sha256,
                        "level": result.level,
                        "signing_time": result.signing_time,
                        "algorithm": result.algorithm,
                        "algorithm_fallback": result.algorithm_note or None,
                        "trust_path": " > ".join(result.trust_path) or None,
                        "revocation": result.revocation,
                        "revocation_detail": result.revocation_detail or None,
                    },
                )
                workflow.move(
                    session,
                    doc,
                    DocState.QUEUED,
                    actor=actor,
                    detail={"package_id": package.package_id, "supersedes": c.supersedes},
                )


# --- verification of what was signed ---------------------------------------------------------------
def verify_signed(settings: Settings, path: Path) -> PdfReport:
    """Every signature of a signed document checked as ``appliance verify`` does: the box's pinned roots,
    revocation now (or the cached answer), integrity, marks."""
    from appliance.sign.verify import verify_pdf

    policy = sign_policy(settings)
    now = datetime.now(UTC)
    return verify_pdf(
        path.read_bytes(), [], name=path.name, trust=policy.store(now), revocation=policy.revocation_options()
    )
