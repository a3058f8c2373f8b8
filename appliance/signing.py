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

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from appliance import audit, db, domain, remote_signing, roster, workflow
from appliance.db import DocState, Document
from appliance.errors import (
    ApplianceError,
    CertificateMismatch,
    CertificateRevoked,
    NothingChosen,
    NotReadyToSign,
    PinRequired,
    RemoteResultNeedsToken,
    RemoteSigningBusy,
    RemoteSigningExpired,
    RemoteSigningFailed,
    RemoteSigningNotConfigured,
)
from appliance.outbox import store as outbox
from appliance.records import DocumentInfo, Dossier, Kind
from appliance.remote_signing import RemoteTransaction, SigningProfile
from appliance.settings import Settings
from appliance.sign import remote as remote_sign
from appliance.sign.batch import BatchResult, PackageInfo, PackageJob, SignJob, SignResult, sign_and_package
from appliance.sign.package import PackageRequest
from appliance.sign.policy import PSS, CertStatus, sign_policy
from appliance.sign.remote import Credential as RemoteCredential
from appliance.sign.remote import CscClient, CscService, RemoteService
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


@dataclass(frozen=True, slots=True)
class _Plan:
    chosen: list[_Chosen]
    jobs: list[SignJob]
    packages: list[PackageJob]
    members: list[list[_Chosen]]
    signed_dir: Path


def _plan(
    factory: sessionmaker[Session],
    settings: Settings,
    actor: Actor,
    doc_ids: Sequence[str],
    *,
    package_role: str = "organisation",
) -> _Plan:
    """The documents (refused unless ready), their signing jobs and one package per dossier, kind, result
    code and superseded package: the same for the token and for a remote signing service."""
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
            role=package_role,
            commune_code=settings.commune_code,
            agency_code=settings.sign.agency_code,
            supersedes=supersedes or None,
            audit=tuple(event for c in group for event in history.get(c.doc_id, [])),
            deciding_agency=deciding.get(dossier_code) or settings.commune_code,
        )
        packages.append(PackageJob(request=request, output=packages_dir / name))
        members.append(group)

    return _Plan(chosen, jobs, packages, members, signed_dir)


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
    plan = _plan(factory, settings, actor, doc_ids)
    chosen, jobs, packages, members, signed_dir = plan.chosen, plan.jobs, plan.packages, plan.members, plan.signed_dir
    personal = any(c.kind != Kind.RESULT for c in chosen)
    check = check_certificate(certificates, actor) if personal else None
    if check is not None and not check.matches and not confirm_certificate:
        raise CertificateMismatch(
            f"certificate {check.common_name!r} does not name {actor.username}", subject=check.subject
        )

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
    source: str = "token",
) -> None:
    """signed -> queued for every document and the packages in the outbox, in one transaction; refused
    (NotReadyToSign) when a document is no longer exactly what was signed. The certificates used go to the
    officers' roster (appliance.roster)."""
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
        _remember(session, actor, done, source, now)


def _remember(session: Session, actor: Actor, done: BatchResult, source: str, now: datetime) -> None:
    """Every certificate a batch used, in the roster: the officer's under the officer, the organisation's
    under the organisation; PSS as the signatures show it, revocation as checked before signing."""
    algorithms = {r.cert_sha256: (r.algorithm, r.algorithm_note) for r in done.signed}
    for cert, status in zip(done.certificates, done.checks or [None] * len(done.certificates), strict=False):
        if cert.is_ca:
            continue
        algorithm, note = algorithms.get(cert.sha256, ("", ""))
        pss = True if algorithm == PSS else (False if note == "token_without_pss" else None)
        officer = cert.role == "officer"
        roster.record_seen(
            session,
            username=actor.username if officer else roster.ORGANISATION,
            cert=cert,
            source=source,
            name_matches=names_officer(cert, actor) if officer else True,
            pss=pss,
            revocation=status.revocation if status is not None else None,
            signed=True,
            now=now,
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


# --- remote signing services (CSC API v1, VNPT SmartCA, Viettel MySign): approval on the phone --------
@dataclass(frozen=True, slots=True)
class Pending:
    """A batch hashed and waiting for the officer's approval on the phone."""

    id: str
    documents: tuple[str, ...]
    expires_at: datetime
    provider: str


_running: set[str] = set()
_running_lock = threading.Lock()


def remote_profile(session: Session, settings: Settings, *, actor: Actor) -> SigningProfile | None:
    """The officer's remote signing service when one is set and configured on this box (else the token)."""
    row = remote_signing.profile(session, username=actor.username)
    return row if row is not None and row.provider in settings.remote.providers else None


def _service(settings: Settings, provider: str) -> RemoteService:
    """The adapter of a configured provider: CSC API v1, VNPT SmartCA or Viettel MySign."""
    from appliance.sign.vendor import MySignClient, SmartCaClient

    conf = settings.remote.providers.get(provider)
    if conf is None:
        raise RemoteSigningNotConfigured(f"remote signing provider {provider!r} is not configured")
    if conf.kind == "csc":
        token = conf.token.get_secret_value() if conf.token is not None else None
        return CscClient(CscService(conf.url, token, conf.client_data, conf.request_timeout_s))
    if not conf.client_id or conf.client_secret is None:
        raise RemoteSigningNotConfigured(f"provider {provider!r} has no partner id or secret configured")
    if conf.kind == "vnpt_smartca":
        return SmartCaClient(
            conf.url,
            conf.client_id,
            conf.client_secret,
            request_timeout_s=conf.request_timeout_s,
            poll_interval_s=conf.poll_interval_s,
        )
    if not conf.profile_id:
        raise RemoteSigningNotConfigured(f"provider {provider!r} has no MySign profile_id configured")
    return MySignClient(
        conf.url,
        conf.client_id,
        conf.client_secret,
        conf.profile_id,
        request_timeout_s=conf.request_timeout_s,
        poll_interval_s=conf.poll_interval_s,
    )


def start_remote(
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    actor: Actor,
    doc_ids: Sequence[str],
    confirm_certificate: bool = False,
) -> Pending:
    """Hash the chosen documents for the officer's remote credential and store the batch as waiting.

    Refusals come first, before anything is sent for approval: nothing chosen, no remote service set,
    a batch already waiting, a result among the documents (the organisation's certificate is on the
    token), the credential's certificate unusable, untrusted, revoked or not naming the officer (unless
    confirmed), an algorithm the policy refuses. Then the documents are prepared (mark, field, signed
    attributes) and the batch is committed; `continue_remote` asks for the approval."""
    from appliance.sign import pades
    from appliance.sign.policy import check_certificate as policy_check
    from appliance.sign.policy import choose_algorithm
    from appliance.sign.token import check_cert_usable

    doc_ids = list(dict.fromkeys(doc_ids))[:MAX_BATCH]
    if not doc_ids:
        raise NothingChosen("no document chosen")
    with db.transaction(factory) as session:
        prof = remote_profile(session, settings, actor=actor)
        if prof is None:
            raise RemoteSigningNotConfigured(f"{actor.username} has no remote signing service")
        if remote_signing.pending(session, username=actor.username):
            raise RemoteSigningBusy(f"{actor.username} already has a batch waiting for approval")
        provider, credential_id, user_id = prof.provider, prof.credential_id, prof.user_id
    plan = _plan(factory, settings, actor, doc_ids, package_role="officer")
    if any(c.kind == Kind.RESULT for c in plan.chosen):
        raise RemoteResultNeedsToken("results are signed with the organisation's certificate on the token")
    credential = _service(settings, provider).find_credential(credential_id, user_id)
    kind = settings.remote.providers[provider].kind
    credential_id = credential.credential_id or credential_id
    now = datetime.now(UTC)
    cert = credential.info(now)
    matches = names_officer(cert, actor)
    policy = sign_policy(settings)
    try:
        check_cert_usable(cert, now)
        algorithm = choose_algorithm(cert, credential.mechanisms, policy.signature_policy)
        status = policy_check(credential.cert_der, list(credential.chain_der), policy, policy.store(now), now)
    except CertificateRevoked:
        with db.transaction(factory) as session:
            roster.record_seen(
                session, username=actor.username, cert=cert, source=f"remote:{provider}"[:32],
                name_matches=matches, pss=credential.offers_pss, revocation="revoked", now=now,
            )  # fmt: skip
        raise
    with db.transaction(factory) as session:  # presented: in the roster even if the officer never approves
        roster.record_seen(
            session, username=actor.username, cert=cert, source=f"remote:{provider}"[:32],
            name_matches=matches, pss=credential.offers_pss, revocation=status.revocation, now=now,
        )  # fmt: skip
    check = CertCheck(cert.subject, cert.common_name, cert.serial, matches)
    if not matches and not confirm_certificate:
        raise CertificateMismatch(
            f"certificate {cert.common_name!r} does not name {actor.username}", subject=cert.subject
        )

    txn_id = str(uuid.uuid4())
    workdir = settings.data_dir / "remote" / txn_id
    workdir.mkdir(parents=True, exist_ok=True)
    chain = _chain_ders(status.chain_pem)
    signer = remote_sign.external_signer(credential, algorithm.name, chain)
    prepared = []
    try:
        for c, job in zip(plan.chosen, plan.jobs, strict=True):
            mark = pades.officer_mark(job.signer_name or cert.common_name, now)
            prep = pades.prepare_pdf(
                job.input.read_bytes(),
                signer,
                mark,
                when=now,
                tsa_url=settings.sign.tsa_url,
                reason=job.reason,
                location=job.location,
                signer_name=cert.common_name,
            )
            path = workdir / f"{c.doc_id}.prepared.pdf"
            path.write_bytes(prep.data)
            prepared.append(
                {
                    "doc_id": c.doc_id,
                    "reviewed_at": c.reviewed_at.isoformat() if c.reviewed_at else None,
                    "path": str(path),
                    "digest": prep.document_digest.hex(),
                    "start": prep.reserved_start,
                    "end": prep.reserved_end,
                    "signed_attrs": prep.signed_attrs.hex(),
                    "field_name": prep.field_name,
                    "level": prep.level,
                    "signing_time": prep.signing_time.isoformat(),
                    "mark": list(prep.mark.lines),
                    "box": list(prep.box),
                    "bytes_in": len(job.input.read_bytes()),
                }
            )
        expires = now + timedelta(seconds=settings.remote.approval_timeout_s)
        with db.transaction(factory) as session:
            session.add(
                RemoteTransaction(
                    id=txn_id,
                    username=actor.username,
                    provider=provider,
                    credential_id=credential_id,
                    state=remote_signing.WAITING,
                    doc_ids=[c.doc_id for c in plan.chosen],
                    plan={
                        "actor": {
                            "username": actor.username,
                            "full_name": actor.full_name,
                            "id_number": actor.id_number,
                        },
                        "user_id": user_id,  # the provider's id of the officer (not a secret)
                        # approvals on the phone: one under a CSC SAD at SCAL 1, else one per round
                        "confirmations": 1 if kind == "csc" and credential.scal < 2 else 2,
                        "credential": credential.to_json(),
                        "algorithm": algorithm.name,
                        "algorithm_note": algorithm.note,
                        "status": dataclasses.asdict(status),
                        "check": dataclasses.asdict(check),
                        "documents": prepared,
                    },
                    created_at=now,
                    expires_at=expires,
                )
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    log.info("remote batch %s: %d document(s) hashed, waiting for approval", txn_id[:8], len(prepared))
    return Pending(txn_id, tuple(c.doc_id for c in plan.chosen), expires, provider)


def _chain_ders(chain_pem: Sequence[str]) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return [x509.load_pem_x509_certificate(p.encode()).public_bytes(serialization.Encoding.DER) for p in chain_pem]


def _fail(factory: sessionmaker[Session], settings: Settings, txn_id: str, err: ApplianceError) -> None:
    with db.transaction(factory) as session:
        txn = session.get(RemoteTransaction, txn_id)
        if txn is not None and txn.state == remote_signing.WAITING:
            txn.state, txn.error_code, txn.finished_at = remote_signing.FAILED, err.code, datetime.now(UTC)
    shutil.rmtree(settings.data_dir / "remote" / txn_id, ignore_errors=True)
    log.warning("remote batch %s ended: %s", txn_id[:8], err.code)


def continue_remote(factory: sessionmaker[Session], settings: Settings, txn_id: str) -> Signed | None:
    """Have a waiting batch signed by its provider in two rounds (`_round`): every document's hash in one
    request, then their packages' (CSC: one `credentials/authorize` for both, each round one
    `signatures/signHash`; SmartCA / MySign: one sign request per round, polled until the officer confirms
    on the phone). Then write everything and record signed -> queued with `_record`. Rejected, expired,
    timed out or a document changed: the batch ends failed with its error code, nothing is written and the
    documents stay reviewed. None when the batch is not waiting (already done, failed, or continued by
    another thread)."""
    with _running_lock:
        if txn_id in _running:
            return None
        _running.add(txn_id)
    try:
        return _continue(factory, settings, txn_id)
    finally:
        with _running_lock:
            _running.discard(txn_id)


def _continue(factory: sessionmaker[Session], settings: Settings, txn_id: str) -> Signed | None:
    from appliance.sign import pades
    from appliance.sign.package import write_package

    with db.transaction(factory) as session:
        txn = session.get(RemoteTransaction, txn_id)
        if txn is None or txn.state != remote_signing.WAITING:
            return None
        plan_json, provider, doc_ids = dict(txn.plan), txn.provider, list(txn.doc_ids)
        expires = txn.expires_at if txn.expires_at.tzinfo else txn.expires_at.replace(tzinfo=UTC)
    actor = Actor(**plan_json["actor"])
    left = (expires - datetime.now(UTC)).total_seconds()
    parts: list[Path] = []
    try:
        if left <= 0:
            raise RemoteSigningExpired("the batch was not approved in time")
        plan = _plan(factory, settings, actor, doc_ids, package_role="officer")
        docs = {d["doc_id"]: d for d in plan_json["documents"]}
        for c in plan.chosen:
            was = docs[c.doc_id]["reviewed_at"]
            if was != (c.reviewed_at.isoformat() if c.reviewed_at else None):
                raise NotReadyToSign(f"document {c.doc_id} changed while it waited for approval")
        credential = RemoteCredential.from_json(plan_json["credential"])
        algorithm, note = plan_json["algorithm"], plan_json["algorithm_note"]
        status = CertStatus(**{**plan_json["status"], "trust_path": tuple(plan_json["status"]["trust_path"]),
                               "chain_pem": tuple(plan_json["status"]["chain_pem"])})  # fmt: skip
        check = CertCheck(**plan_json["check"])
        chain = _chain_ders(status.chain_pem)
        rounds: dict[str, dict[str, Any]] = dict(plan_json.get("rounds") or {})
        attrs = [bytes.fromhex(docs[c.doc_id]["signed_attrs"]) for c in plan.chosen]
        batch = _service(settings, provider).batch(
            credential,
            algorithm,
            user_id=str(plan_json.get("user_id") or ""),
            extra_chain=chain,
            total=len(attrs) + len(plan.packages),
            deadline=expires,
        )
        tsa = settings.sign.tsa_url if any(docs[c.doc_id]["level"] == "B-T" for c in plan.chosen) else None
        cms = _round(factory, txn_id, rounds, "documents", attrs, batch, tsa)
        now = datetime.fromisoformat(rounds["documents"]["done_at"])  # the same after a restart
        cert = credential.info(now)
        signed_results: list[SignResult] = []
        signed_bytes: dict[Path, bytes] = {}
        for c, job, der in zip(plan.chosen, plan.jobs, cms, strict=True):
            d = docs[c.doc_id]
            prepared = pades.PreparedPdf(
                data=Path(d["path"]).read_bytes(),
                document_digest=bytes.fromhex(d["digest"]),
                reserved_start=int(d["start"]),
                reserved_end=int(d["end"]),
                signed_attrs=bytes.fromhex(d["signed_attrs"]),
                field_name=d["field_name"],
                level=d["level"],
                signing_time=datetime.fromisoformat(d["signing_time"]),
                mark=pades.Mark("officer", tuple(d["mark"])),
                box=(d["box"][0], d["box"][1], d["box"][2], d["box"][3]),
            )
            data = pades.finish_pdf(prepared, der)
            part = job.output.with_name(job.output.name + ".part")
            part.write_bytes(data)
            parts.append(part)
            signed_bytes[job.output] = data
            signed_results.append(
                SignResult(
                    output=job.output,
                    field_name=prepared.field_name,
                    level=prepared.level,
                    signing_time=pades.iso_vn(prepared.signing_time),
                    mark=prepared.mark.lines,
                    box=prepared.box,
                    cert_sha256=cert.sha256,
                    cert_subject=cert.subject,
                    bytes_added=len(data) - int(d["bytes_in"]),
                    cert_serial=cert.serial,
                    algorithm=algorithm,
                    algorithm_note=note,
                    trust_path=status.trust_path,
                    revocation=status.revocation,
                    revocation_source=status.revocation_source,
                    revocation_detail=status.revocation_detail,
                )
            )
        # The packages name the signed PDFs' digests, so they are signed in a second round (CSC: a second
        # signHash under the same SAD at SCAL 1; a vendor: a second request, confirmed on the phone).
        asics: list[bytes] = []
        for pkg in plan.packages:
            files = {p.name: signed_bytes[p] if p in signed_bytes else p.read_bytes() for p in pkg.request.pdfs}
            write_package(pkg.request, files, cert, _collect(asics), _scratch(pkg.output), now)
            _scratch(pkg.output).unlink(missing_ok=True)
        cades = [remote_sign.cades_signed_attrs(credential, algorithm, asic, now) for asic in asics]
        package_cms = dict(zip(asics, _round(factory, txn_id, rounds, "packages", cades, batch, None), strict=True))
        infos: list[PackageInfo] = []
        for pkg in plan.packages:
            files = {p.name: signed_bytes[p] if p in signed_bytes else p.read_bytes() for p in pkg.request.pdfs}
            part = pkg.output.with_name(pkg.output.name + ".part")
            parts.append(part)
            info = write_package(pkg.request, files, cert, lambda asic: package_cms[asic], part, now)
            infos.append(
                dataclasses.replace(info, path=pkg.output, algorithm=algorithm, algorithm_note=note,
                                    revocation=status.revocation)
            )  # fmt: skip
        for part in parts:  # all made: into place (a failed rename takes back the others)
            part.replace(part.with_name(part.name.removesuffix(".part")))
        parts = []
        done = BatchResult(tuple(signed_results), tuple(infos), cert.subject, cert.serial, (cert,), (status,))
        by_output = {r.output: r for r in done.signed}
        try:
            _record(factory, actor, plan.chosen, plan.members, done, by_output, check, now, plan.signed_dir,
                    source=f"remote:{provider}"[:32])  # fmt: skip
        except NotReadyToSign:
            for r in done.signed:
                r.output.unlink(missing_ok=True)
            for p in done.packages:
                p.path.unlink(missing_ok=True)
            raise
    except KeyError as err:  # a package signature missing: the ASiC manifest changed between the passes
        for part in parts:
            part.unlink(missing_ok=True)
        failure = RemoteSigningFailed(f"a package changed while it was being signed: {type(err).__name__}")
        _fail(factory, settings, txn_id, failure)
        raise failure from err
    except ApplianceError as err:
        for part in parts:
            part.unlink(missing_ok=True)
        _fail(factory, settings, txn_id, err)
        raise
    with db.transaction(factory) as session:
        txn = session.get(RemoteTransaction, txn_id)
        if txn is not None:
            txn.state, txn.finished_at, txn.signed_count = remote_signing.DONE, datetime.now(UTC), len(done.signed)
    shutil.rmtree(settings.data_dir / "remote" / txn_id, ignore_errors=True)
    log.info("remote batch %s signed: %d document(s), %d package(s)", txn_id[:8], len(done.signed), len(infos))
    return Signed(tuple(c.doc_id for c in plan.chosen), tuple(p.package_id for p in infos), cert.subject)


def _round(
    factory: sessionmaker[Session],
    txn_id: str,
    rounds: dict[str, dict[str, Any]],
    stage: str,
    signed_attrs: Sequence[bytes],
    batch: remote_sign.RemoteBatch,
    tsa_url: str | None,
) -> list[bytes]:
    """One round of a remote batch ("documents" or "packages"), stored as it goes so a restart neither
    asks again for what is signed nor sends a request the provider already has: the provider's transaction
    id as soon as the request is sent, then the CMS of each blob (public, like the signed PDFs they go
    into) and when. A round whose blobs differ from what was sent is refused."""
    hashes = [hashlib.sha256(a).hexdigest() for a in signed_attrs]
    state = rounds.setdefault(stage, {})
    if state.get("hashes") not in (None, hashes):
        raise RemoteSigningFailed(f"the {stage} changed while they waited for approval")
    if "cms" in state:
        return [bytes.fromhex(c) for c in state["cms"]]

    def submitted(ref: str) -> None:
        state.update(ref=ref, hashes=hashes)
        _save_rounds(factory, txn_id, rounds, ref)

    cms = batch.sign(stage, signed_attrs, ref=state.get("ref"), submitted=submitted, tsa_url=tsa_url)
    state.update(hashes=hashes, cms=[c.hex() for c in cms], done_at=datetime.now(UTC).isoformat())
    _save_rounds(factory, txn_id, rounds, None)
    return cms


def _save_rounds(
    factory: sessionmaker[Session], txn_id: str, rounds: dict[str, dict[str, Any]], ref: str | None
) -> None:
    with db.transaction(factory) as session:
        txn = session.get(RemoteTransaction, txn_id)
        if txn is None or txn.state != remote_signing.WAITING:
            raise RemoteSigningFailed(f"remote batch {txn_id[:8]} is no longer waiting")
        txn.plan = {**txn.plan, "rounds": json.loads(json.dumps(rounds))}
        if ref is not None:
            txn.provider_ref = ref[:200]


def _collect(into: list[bytes]) -> Callable[[bytes], bytes]:
    """A `sign` for `write_package` that only keeps what would be signed (the first pass)."""

    def sign(asic: bytes) -> bytes:
        into.append(asic)
        return b""

    return sign


def _scratch(output: Path) -> Path:
    return output.with_name(output.name + ".dry")


def resume_remote(factory: sessionmaker[Session], settings: Settings) -> list[str]:
    """At start-up: continue every batch still waiting (a restart does not lose the officer's approval
    request); returns the ids handled. Errors end their batch (recorded) and are logged, not raised."""
    with db.transaction(factory) as session:
        ids = [t.id for t in remote_signing.pending(session)]
    for txn_id in ids:
        try:
            continue_remote(factory, settings, txn_id)
        except ApplianceError as err:
            log.warning("remote batch %s could not be completed: %s", txn_id[:8], err.code)
    return ids


@dataclass(frozen=True, slots=True)
class RemoteState:
    id: str
    state: str  # waiting | done | failed
    documents: int
    seconds_left: int
    error_code: str | None
    provider: str
    confirmations: int = 1  # on the phone for the whole batch: CSC at SCAL 1 one, else two (documents, packages)
    step: int = 1  # which of them the batch waits for


def remote_state(session: Session, *, txn_id: str, username: str) -> RemoteState | None:
    """What the officer's page shows about one of their batches."""
    txn = session.get(RemoteTransaction, txn_id)
    if txn is None or txn.username != username:
        return None
    expires = txn.expires_at if txn.expires_at.tzinfo else txn.expires_at.replace(tzinfo=UTC)
    left = max(0, int((expires - datetime.now(UTC)).total_seconds()))
    confirmations = int(txn.plan.get("confirmations") or 1)
    step = 2 if confirmations > 1 and "cms" in (txn.plan.get("rounds") or {}).get("documents", {}) else 1
    return RemoteState(txn.id, txn.state, len(txn.doc_ids), left, txn.error_code, txn.provider, confirmations, step)
