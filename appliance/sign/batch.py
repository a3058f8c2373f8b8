"""What one PIN entry does: sign PDFs and the packages made of them, in one worker process, one login.

`sign_and_package(jobs, packages, pin, ...)` is the whole batch: one `python -m appliance.sign.worker`
process, one token session (exactly one C_Login). The worker signs every PDF (PAdES), then builds each
ASiC-E package from the signed bytes and signs its ASiCManifest.xml (CAdES) in the same session.
`sign_batch` (PDFs only), `sign_detached` (one CMS) and `package.build_package` (one package from
already-signed PDFs) are the same call with fewer parts.

Before the PIN is used at all the worker refuses what it can know without it: no token, an ambiguous
token, a certificate missing, expired, not yet valid or without non-repudiation (for the PDFs and for
each package signer), an unreadable input, a malformed package request.

All-or-nothing: every file is written as `<destination>.part` and renamed by this process only after the
worker said "done" (all documents and packages made, session closed). After a wrong PIN, a removed token,
a crashed or hung vendor module or a failed package nothing appears at any destination, every `.part` is
deleted and the inputs are untouched, so the documents stay queued unsigned. A wrong PIN is never retried.

The request types live here because this module is the client of the worker; `appliance.sign.package`
(the format) re-exports `PackageRequest` and `PackageInfo`. The caller drops the PIN after the call; it is
sent to the worker over a pipe only.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import (
    ApplianceError,
    InputError,
    PackageError,
    SignerCrashed,
    SignError,
    TokenAmbiguous,
    TokenNotFound,
    all_error_classes,
)
from appliance.sign.policy import CertStatus, SignPolicy
from appliance.sign.token import CertInfo, PinState, TokenInfo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0  # per event; a vendor module that hangs longer is killed


@dataclass(frozen=True, slots=True)
class SignJob:
    input: Path
    output: Path
    role: str  # "officer" | "organisation"
    signer_name: str | None = None  # officer: the digitizer; organisation: who converted it
    organisation: str | None = None  # organisation mark: the organisation's name
    copy_form: str = "SAO Y"
    cert_id: str | None = None  # CKA_ID (hex) to force a certificate
    reason: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class SignResult:
    output: Path
    field_name: str
    level: str
    signing_time: str
    mark: tuple[str, ...]
    box: tuple[float, float, float, float]
    cert_sha256: str
    cert_subject: str
    bytes_added: int
    cert_serial: str = ""  # hex
    # Circular 15/2025 (appliance.sign.policy), for the audit trail and the document page:
    algorithm: str = ""  # "rsassa-pss-sha256" | "rsa-pkcs1v15-sha256" | "ecdsa-sha256"
    algorithm_note: str = ""  # "" | "token_without_pss" | "legacy_policy": a PKCS#1 v1.5 fallback
    trust_path: tuple[str, ...] = ()  # signer -> root (common names); () when no policy was given
    revocation: str = "not_checked"  # "good" | "unknown" (signed under revocation_unknown = warn)
    revocation_source: str = ""  # "ocsp" | "crl" | "ocsp-cache" | "crl-cache" (comma-joined) | ""
    revocation_detail: str = ""  # English: which answer, or why none (offline ...)

    @property
    def algorithm_fallback(self) -> bool:
        """True when the signature is PKCS#1 v1.5 instead of RSASSA-PSS (show it, record it)."""
        return bool(self.algorithm_note)


@dataclass(frozen=True, slots=True)
class PackageRequest:
    """What goes into one ASiC-E package (see appliance.sign.package for the format).

    `pdfs`: signed PDFs; a path equal to a `SignJob.output` of the same `sign_and_package` call takes that
    job's freshly signed bytes, any other path is read as it is (an already-signed PDF)."""

    pdfs: tuple[Path, ...]
    category: str
    dossier_code: str
    tthc_code: str | None = None
    result_code: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # PDF file name -> {number, symbol, ...}
    role: str = "organisation"  # which certificate signs the manifest
    cert_id: str | None = None
    commune_code: str = ""
    agency_code: str = ""
    supersedes: str | None = None  # package_id of the package this one corrects
    audit: tuple[dict[str, Any], ...] = ()  # audit trail events: {at, actor, action, document_id, detail}
    deciding_agency: str | None = None  # Decree 118/2025: whose warehouse stores it (None: commune_code's)


@dataclass(frozen=True, slots=True)
class PackageInfo:
    path: Path
    package_id: str
    bytes: int
    manifest: dict[str, Any]
    signer_sha256: str
    algorithm: str = ""  # of the package's CAdES signature (see SignResult.algorithm)
    algorithm_note: str = ""
    revocation: str = "not_checked"


@dataclass(frozen=True, slots=True)
class PackageJob:
    request: PackageRequest
    output: Path  # where the .asice goes


@dataclass(frozen=True, slots=True)
class BatchResult:
    signed: tuple[SignResult, ...]
    packages: tuple[PackageInfo, ...]
    cert_subject: str  # subject (RFC 4514) of the certificate used; "; "-joined when several were
    cert_serial: str  # its hex serial number; "; "-joined in the same order when several
    certificates: tuple[CertInfo, ...] = ()  # every certificate used (PDFs, then package signers), once each
    checks: tuple[CertStatus, ...] = ()  # what was checked before signing, same order as `certificates`


@dataclass(frozen=True, slots=True)
class CmsSignature:
    der: bytes
    cert_sha256: str
    cert_subject: str
    signing_time: str
    algorithm: str = ""


def _error(event: dict[str, Any]) -> ApplianceError:
    classes = {cls.code: cls for cls in all_error_classes()}
    cls = classes.get(str(event.get("code")), SignError)
    detail = str(event.get("detail", ""))
    state = event.get("pin_state")
    if state and state != "unknown":
        detail = f"{detail}; PIN state now: {state}"
    params = {k: str(v) for k, v in event.items() if k not in {"event", "code", "detail"}}
    return cls(detail, **params)


class _Worker:
    """One worker process, JSON lines both ways, with a deadline on every read."""

    command: tuple[str, ...] = ("-m", "appliance.sign.worker")  # after the interpreter

    def __init__(self, env: dict[str, str] | None, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(
            [sys.executable, *self.command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._buf = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as err:
            raise self._crashed() from err

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise SignerCrashed(f"the signing worker did not answer within {self.timeout_s:.0f} s")
            ready, _w, _x = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._crashed()
            self._buf += chunk
        line, _sep, self._buf = self._buf.partition(b"\n")
        event: dict[str, Any] = json.loads(line)
        return event

    def _crashed(self) -> ApplianceError:
        code = self.proc.wait(timeout=10)
        stderr = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
        log.warning("signing worker exited with %s", code)
        return SignerCrashed(f"the signing worker exited with code {code}: {stderr.strip()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # stdin of a dead worker: its buffer cannot be flushed
                    stream.close()
        self.kill()


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("APPLIANCE_PIN", None)  # never hand a PIN over through the environment
    env.update(extra or {})
    return env


def token_status(module: Path, serial: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[TokenInfo]:
    """Tokens present, their PIN flags and certificates (no login)."""
    worker = _Worker(_env(None), timeout_s)
    try:
        worker.send(json.dumps({"op": "status", "module": str(module), "serial": serial}))
        event = worker.read()
    finally:
        worker.close()
    if event.get("event") == "error":
        raise _error(event)
    return [_token(t) for t in event["tokens"]]


def token_certificates(
    module: Path, serial: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[CertInfo]:
    """The certificates of the token a batch would use (the one with `serial`, else the only one present),
    read without a PIN: the signing page's check before the PIN is typed. Choose and check one with
    `token.choose_cert(certs, role)` and `token.check_cert_usable(cert, now)`."""
    tokens = token_status(module, serial, timeout_s=timeout_s)
    if not tokens:
        raise TokenNotFound("no token present")
    if len(tokens) > 1:
        raise TokenAmbiguous(f"{len(tokens)} tokens present; choose one by serial")
    return list(tokens[0].certificates)


def _cert(c: dict[str, Any]) -> CertInfo:
    return CertInfo(
        **{
            **c,
            "not_before": dt.datetime.fromisoformat(c["not_before"]),
            "not_after": dt.datetime.fromisoformat(c["not_after"]),
            "key_usage": tuple(c["key_usage"]),
        }
    )


def _token(d: dict[str, Any]) -> TokenInfo:
    certs = tuple(_cert(c) for c in d["certificates"])
    return TokenInfo(**{**d, "pin_state": PinState(d["pin_state"]), "certificates": certs})


@dataclass(frozen=True, slots=True)
class _Detached:
    data: bytes
    role: str
    cert_id: str | None
    expect_sha256: str | None


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _request(
    jobs: Sequence[SignJob],
    packages: Sequence[PackageJob],
    detached: Sequence[_Detached],
    *,
    module: Path,
    serial: str | None,
    tsa_url: str | None,
    policy: SignPolicy | None,
) -> dict[str, Any]:
    """The worker's request, without the PIN. Destinations must be distinct."""
    destinations = [j.output for j in jobs] + [p.output for p in packages]
    seen: set[Path] = set()
    for dest in destinations:
        if dest.resolve() in seen:
            raise InputError(f"{dest} is the destination of two documents or packages in one batch")
        seen.add(dest.resolve())
    outputs = {j.output.resolve(): i for i, j in enumerate(jobs)}
    package_requests = []
    for pkg in packages:
        sources = [{"path": str(pdf), "job": outputs.get(pdf.resolve())} for pdf in pkg.request.pdfs]
        facts = {k: v for k, v in dataclasses.asdict(pkg.request).items() if k != "pdfs"}
        facts["audit"] = list(pkg.request.audit)
        try:
            json.dumps(facts)
        except (TypeError, ValueError) as err:
            raise PackageError(f"the package facts for {pkg.output.name} are not JSON: {err}") from err
        package_requests.append(
            {"output": str(pkg.output), "part": str(_part(pkg.output)), "sources": sources, **facts}
        )
    return {
        "op": "batch",
        "module": str(module),
        "serial": serial,
        "tsa_url": tsa_url,
        "policy": policy.to_json() if policy is not None else None,
        "jobs": [
            {
                "input": str(j.input),
                "output": str(j.output),
                "part": str(_part(j.output)),
                "role": j.role,
                "signer_name": j.signer_name,
                "organisation": j.organisation,
                "copy_form": j.copy_form,
                "cert_id": j.cert_id,
                "reason": j.reason,
                "location": j.location,
            }
            for j in jobs
        ],
        "packages": package_requests,
        "detached": [
            {
                "data": base64.b64encode(d.data).decode(),
                "role": d.role,
                "cert_id": d.cert_id,
                "expect_sha256": d.expect_sha256,
            }
            for d in detached
        ],
    }


def _run(
    jobs: Sequence[SignJob],
    packages: Sequence[PackageJob],
    detached: Sequence[_Detached],
    pin: str,
    *,
    module: Path,
    serial: str | None,
    tsa_url: str | None,
    timeout_s: float,
    on_signed: Callable[[int], bool] | None,
    policy: SignPolicy | None = None,
) -> tuple[BatchResult, list[CmsSignature]]:
    """One worker, one login: the PDFs, then the packages, then the detached signatures; then rename."""
    request = _request(jobs, packages, detached, module=module, serial=serial, tsa_url=tsa_url, policy=policy)
    parts = [_part(j.output) for j in jobs] + [_part(p.output) for p in packages]
    signed: list[SignResult] = []
    built: list[PackageInfo] = []
    cms: list[CmsSignature] = []
    worker = _Worker(_env(None), timeout_s)
    done = False
    try:
        worker.send(json.dumps({**request, "pin": pin}, ensure_ascii=False))
        del request
        while True:
            event = worker.read()
            kind = event.get("event")
            if kind == "error":
                raise _error(event)
            if kind == "signed":
                index = int(event["index"])
                signed.append(_sign_result(jobs[index].output, event))
                go_on = on_signed(index) if on_signed is not None else True
                worker.send("next" if go_on else "stop")
            elif kind == "package":
                index = int(event["index"])
                built.append(
                    PackageInfo(
                        path=packages[index].output,
                        package_id=event["package_id"],
                        bytes=int(event["bytes"]),
                        manifest=event["manifest"],
                        signer_sha256=event["signer_sha256"],
                        algorithm=event.get("algorithm", ""),
                        algorithm_note=event.get("algorithm_note", ""),
                        revocation=event.get("revocation", "not_checked"),
                    )
                )
            elif kind == "cms":
                cms.append(
                    CmsSignature(
                        base64.b64decode(event["der"]),
                        event["cert_sha256"],
                        event["cert_subject"],
                        event["signing_time"],
                        event.get("algorithm", ""),
                    )
                )
            elif kind == "done":
                break
            else:
                raise SignError(f"unexpected worker event {kind!r}")
        if (len(signed), len(built), len(cms)) != (len(jobs), len(packages), len(detached)):
            raise SignerCrashed(
                f"the worker made {len(signed)}/{len(jobs)} documents, {len(built)}/{len(packages)} packages"
            )
        certs = tuple(_cert(c) for c in event.get("certificates", []))
        checks = tuple(
            CertStatus(
                **{**c, "trust_path": tuple(c.get("trust_path", ())), "chain_pem": tuple(c.get("chain_pem", ()))}
            )
            for c in event.get("checks", [])
        )
        _publish(parts, [j.output for j in jobs] + [p.output for p in packages])
        done = True
    finally:
        worker.close()
        if not done:
            for part in parts:  # a failed batch leaves nothing behind
                part.unlink(missing_ok=True)
    result = BatchResult(
        signed=tuple(signed),
        packages=tuple(built),
        cert_subject="; ".join(c.subject for c in certs),
        cert_serial="; ".join(c.serial for c in certs),
        certificates=certs,
        checks=checks,
    )
    return result, cms


def _publish(parts: list[Path], destinations: list[Path]) -> None:
    """Rename every `.part` to its destination; if one rename fails, take back the ones already made."""
    moved: list[Path] = []
    try:
        for part, dest in zip(parts, destinations, strict=True):
            part.replace(dest)
            moved.append(dest)
    except OSError as err:
        for dest in moved:
            dest.unlink(missing_ok=True)
        raise SignError(f"cannot move a signed file into place: {err}") from err


def _sign_result(output: Path, event: dict[str, Any]) -> SignResult:
    return SignResult(
        output=output,
        field_name=event["field_name"],
        level=event["level"],
        signing_time=event["signing_time"],
        mark=tuple(event["mark"]),
        box=(event["box"][0], event["box"][1], event["box"][2], event["box"][3]),
        cert_sha256=event["cert_sha256"],
        cert_subject=event["cert_subject"],
        bytes_added=int(event["bytes_added"]),
        cert_serial=event.get("cert_serial", ""),
        algorithm=event.get("algorithm", ""),
        algorithm_note=event.get("algorithm_note", ""),
        trust_path=tuple(event.get("trust_path", ())),
        revocation=event.get("revocation", "not_checked"),
        revocation_source=event.get("revocation_source", ""),
        revocation_detail=event.get("revocation_detail", ""),
    )


def sign_and_package(
    jobs: Sequence[SignJob],
    packages: Sequence[PackageJob],
    pin: str,
    *,
    module: Path,
    serial: str | None = None,
    tsa_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_signed: Callable[[int], bool] | None = None,
    policy: SignPolicy | None = None,
) -> BatchResult:
    """Sign every job and build every package with one worker process and one token login.

    A package's `request.pdfs` may name outputs of `jobs` (their signed bytes are used) or PDFs signed
    before. The package signer certificate (`request.role` / `request.cert_id`) is chosen and checked in
    the same worker before the login and named in manifest.json (`package_signer`).
    `on_signed(i)` runs after document i; returning False stops the batch (nothing is written).
    `policy` (`appliance.sign.policy.sign_policy(settings)`): Circular 15/2025 before the PIN is used —
    RSASSA-PSS per `signature_policy`, key sizes, the trust path to a pinned root, revocation. Without it
    only the algorithm and key rules apply and every result says `trust_path=()`, `revocation="not_checked"`.
    Raises the ApplianceError of the first failure; then no destination was written.
    """
    if not jobs and not packages:
        return BatchResult((), (), "", "")
    result, _cms = _run(
        jobs,
        packages,
        (),
        pin,
        module=module,
        serial=serial,
        tsa_url=tsa_url,
        timeout_s=timeout_s,
        on_signed=on_signed,
        policy=policy,
    )
    return result


def sign_batch(
    jobs: Sequence[SignJob],
    pin: str,
    *,
    module: Path,
    serial: str | None = None,
    tsa_url: str | None = None,
    on_signed: Callable[[int], bool] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    policy: SignPolicy | None = None,
) -> list[SignResult]:
    """Sign every job with one login (`sign_and_package` without packages)."""
    if not jobs:
        return []
    result = sign_and_package(
        jobs,
        (),
        pin,
        module=module,
        serial=serial,
        tsa_url=tsa_url,
        timeout_s=timeout_s,
        on_signed=on_signed,
        policy=policy,
    )
    return list(result.signed)


def sign_detached(
    data: bytes,
    pin: str,
    *,
    role: str,
    module: Path,
    serial: str | None = None,
    cert_id: str | None = None,
    expect_sha256: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    policy: SignPolicy | None = None,
) -> CmsSignature:
    """A CAdES detached signature over `data` made with the token, in the worker process.

    With `expect_sha256` the worker refuses (before the PIN is used) unless the chosen certificate has
    that fingerprint."""
    _result, (cms,) = _run(
        (),
        (),
        (_Detached(data, role, cert_id, expect_sha256),),
        pin,
        module=module,
        serial=serial,
        tsa_url=None,
        timeout_s=timeout_s,
        on_signed=None,
        policy=policy,
    )
    return cms
