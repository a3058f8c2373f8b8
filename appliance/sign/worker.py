"""The signing worker: `python -m appliance.sign.worker`, one short-lived process per PIN entry.

It is the only process that loads the token's PKCS#11 module. The parent (appliance.sign.batch) writes
one JSON request line on stdin (the PIN travels only there, never in argv, environment or files) and
reads JSON event lines from stdout.

Requests: {"op": "status", "module", "serial"} -> {"event": "tokens", "tokens": [...]} (no login), and
{"op": "batch", "module", "serial", "tsa_url", "policy", "pin", "jobs": [...], "packages": [...],
"detached": [...]}:
 1. without the PIN: the token, every certificate (documents, package signers, detached signers) chosen
    and checked usable; Circular 15/2025 (appliance.sign.policy): key size, the algorithm the token's
    mechanism list allows under the policy (RSASSA-PSS preferred), the trust path to a pinned root and
    revocation; every package request checked, every input read; any refusal ends here;
 2. exactly one C_Login (flags checked fresh first; never retried); every private key looked up;
 3. per document: PAdES into `<output>.part`, {"event": "signed", "index": i, ...}, then the worker waits
    for "next" or "stop" on stdin, so the parent can cancel between documents;
 4. per package: manifest.json and ASiCManifest.xml over the signed bytes (a source is {"path", "job": i}
    for a document of this batch, {"path"} for a PDF signed before), the CAdES signature with the package
    signer's key in the same session, the container into `<output>.part`, {"event": "package", ...};
 5. per detached item: {"event": "cms", "der": base64, ...};
 6. session closed (logout), {"event": "done", "certificates": [every certificate used]}.
Any failure: {"event": "error", "code": ..., "detail": ..., "pin_state": ...} and exit 1; the parent
deletes every `.part` and renames them only after "done".
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
import logging
import sys
from pathlib import Path
from typing import IO, Any

from appliance.errors import ApplianceError, PdfSignFailed, SignError
from appliance.sign.policy import Algorithm, CertStatus, SignPolicy, check_certificate, choose_algorithm
from appliance.sign.token import CertInfo, check_cert_usable, choose_cert, pin_state
from appliance.sign.trust import TrustStore

log = logging.getLogger(__name__)


def _send(out: IO[str], event: dict[str, Any]) -> None:
    out.write(json.dumps(event, ensure_ascii=False, default=_jsonable) + "\n")
    out.flush()


def _jsonable(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _status(req: dict[str, Any], out: IO[str]) -> None:
    from appliance.sign import pkcs11

    tokens = pkcs11.list_tokens(Path(req["module"]), req.get("serial"))
    _send(out, {"event": "tokens", "tokens": [dataclasses.asdict(t) for t in tokens]})


def _mark(job: dict[str, Any], cert: CertInfo, certs: list[CertInfo], when: dt.datetime) -> Any:
    from appliance.sign import pades

    if job["role"] == "officer":
        return pades.officer_mark(job.get("signer_name") or cert.common_name, when)
    person = job.get("signer_name") or next((c.common_name for c in certs if c.role == "officer" and not c.is_ca), "")
    organisation = job.get("organisation") or cert.organisation or cert.common_name
    return pades.organisation_mark(organisation, person or organisation, when, job.get("copy_form") or "SAO Y")


def _usable(certs: list[CertInfo], role: str, cert_id: str | None, now: dt.datetime) -> CertInfo:
    cert = choose_cert(certs, role, cert_id)
    check_cert_usable(cert, now)
    return cert


def _read(path: str, error: type[ApplianceError]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise error(f"cannot read {path}: {err.strerror}") from err


def _cms(signer: Any, data: bytes, when: dt.datetime | None = None) -> bytes:
    """A CAdES detached signature (CMS, DER) over `data`, e.g. an ASiC manifest; signing time `when` or now."""
    import asyncio

    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    from appliance.sign import pkcs11

    try:
        signed = asyncio.run(
            signer.async_sign_general_data(
                data,
                "sha256",
                detached=True,
                use_cades=True,
                signed_attr_settings=PdfCMSSignedAttributes(signing_time=when or dt.datetime.now(dt.UTC)),
            )
        )
    except Exception as err:  # noqa: BLE001 - token errors surface from inside pyHanko
        raise pkcs11.translate(err) from err
    der: bytes = signed.dump()
    return der


def _sign_pdf(
    job: dict[str, Any], cert: CertInfo, data: bytes, signer: Any, certs: list[CertInfo], tsa_url: str | None
) -> tuple[bytes, dict[str, Any]]:
    """One PAdES signature with its mark: the signed bytes and the facts the parent reports."""
    from appliance.sign import pades, pkcs11

    when = dt.datetime.now(dt.UTC)
    mark = _mark(job, cert, certs, when)
    try:
        signed = pades.sign_pdf(
            data,
            signer,
            mark,
            when=when,
            tsa_url=tsa_url,
            reason=job.get("reason"),
            location=job.get("location"),
            signer_name=cert.common_name,
        )
    except ApplianceError:
        raise
    except Exception as err:  # noqa: BLE001 - token errors surface from inside pyHanko
        raise pkcs11.translate(err) from err
    facts = {
        "field_name": signed.field_name,
        "level": signed.level,
        "signing_time": pades.iso_vn(signed.signing_time),
        "mark": list(signed.mark.lines),
        "box": list(signed.box),
        "cert_sha256": cert.sha256,
        "cert_subject": cert.subject,
        "cert_serial": cert.serial,
        "bytes_added": len(signed.data) - len(data),
    }
    return signed.data, facts


def _presign_checks(
    certs: list[CertInfo], token: Any, on_token: list[tuple[CertInfo, bytes]], policy: SignPolicy, now: dt.datetime
) -> tuple[dict[str, Algorithm], dict[str, CertStatus]]:
    """Circular 15/2025 before the PIN: key size and the algorithm the token can make under the policy
    (mechanism list, no login), then the trust path and revocation of every certificate to be used."""
    from appliance.sign import pkcs11

    unique = list({c.sha256: c for c in certs}.values())
    if not unique:
        return {}, {}
    offered = pkcs11.mechanisms(token)
    algorithms = {c.sha256: choose_algorithm(c, offered, policy.signature_policy) for c in unique}
    ders = {c.sha256: der for c, der in on_token}
    store = policy.store(now) if policy.check_trust else TrustStore()
    token_ders = [der for _c, der in on_token]
    statuses = {c.sha256: check_certificate(ders[c.sha256], token_ders, policy, store, now) for c in unique}
    return algorithms, statuses


def _chain_ders(status: CertStatus) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return [
        x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        for pem in status.chain_pem
    ]


def _unique(ders: list[bytes]) -> list[bytes]:
    return list(dict.fromkeys(ders))


def _recorded(algorithm: Algorithm, status: CertStatus) -> dict[str, Any]:
    """What every signature reports about its algorithm and the checks made before it."""
    return {
        "algorithm": algorithm.name,
        "algorithm_note": algorithm.note,
        "trust_path": list(status.trust_path),
        "revocation": status.revocation,
        "revocation_source": status.revocation_source,
        "revocation_detail": status.revocation_detail,
    }


def _package_request(spec: dict[str, Any]) -> Any:
    from appliance.sign.package import PackageRequest

    return PackageRequest(
        pdfs=tuple(Path(s["path"]) for s in spec["sources"]),
        category=spec["category"],
        dossier_code=spec["dossier_code"],
        tthc_code=spec.get("tthc_code"),
        result_code=spec.get("result_code"),
        fields=spec.get("fields") or {},
        role=spec.get("role") or "organisation",
        cert_id=spec.get("cert_id"),
        commune_code=spec.get("commune_code") or "",
        agency_code=spec.get("agency_code") or "",
        supersedes=spec.get("supersedes"),
        audit=tuple(spec.get("audit") or ()),
        deciding_agency=spec.get("deciding_agency"),
    )


def _batch(req: dict[str, Any], inp: IO[str], out: IO[str]) -> None:
    """PDFs, then packages over their signed bytes, then detached signatures: one login for all."""
    from appliance.errors import PackageError, PinRequired
    from appliance.sign import pkcs11
    from appliance.sign.package import check_request, write_package

    pin: str | None = req.pop("pin", None) or None
    serial = req.get("serial")
    jobs: list[dict[str, Any]] = req.get("jobs") or []
    packages: list[dict[str, Any]] = req.get("packages") or []
    detached: list[dict[str, Any]] = req.get("detached") or []
    lib = pkcs11.load(Path(req["module"]))
    now = dt.datetime.now(dt.UTC)
    token = pkcs11.find_token(lib, serial)
    on_token = pkcs11.certificates(token, now)
    infos = [c for c, _der in on_token]
    ders = {c.cka_id: der for c, der in on_token}
    chain = [der for c, der in on_token if c.is_ca]

    # Every refusal that needs no PIN happens here, before the login.
    chosen = [_usable(infos, job["role"], job.get("cert_id"), now) for job in jobs]
    requests = [_package_request(spec) for spec in packages]
    for request in requests:
        check_request(request, [p.name for p in request.pdfs])
    package_certs = [_usable(infos, r.role, r.cert_id, now) for r in requests]
    detached_certs = []
    for item in detached:
        cert = _usable(infos, item["role"], item.get("cert_id"), now)
        expected = item.get("expect_sha256")
        if expected and cert.sha256 != expected:
            raise SignError(f"the token's certificate {cert.sha256[:16]}... is not the expected {expected[:16]}...")
        detached_certs.append(cert)
    algorithms, statuses = _presign_checks(
        [*chosen, *package_certs, *detached_certs], token, on_token, SignPolicy.from_json(req.get("policy")), now
    )
    inputs = [_read(job["input"], PdfSignFailed) for job in jobs]
    given = [
        {i: _read(s["path"], PackageError) for i, s in enumerate(spec["sources"]) if s.get("job") is None}
        for spec in packages
    ]
    if pin is None:
        raise PinRequired("no PIN given")
    try:
        with pkcs11.login(lib, serial, pin) as session:
            pin = None  # one attempt made; the PIN is not kept
            signers: dict[str, Any] = {}
            for cert in [*chosen, *package_certs, *detached_certs]:  # every key is found before any signature
                if cert.cka_id not in signers:
                    pkcs11.has_private_key(session, cert.cka_id)
                    algorithm = algorithms[cert.sha256]
                    path = _chain_ders(statuses[cert.sha256])  # intermediates from the configuration too
                    signers[cert.cka_id] = pkcs11.make_signer(
                        session,
                        ders[cert.cka_id],
                        cert.cka_id,
                        _unique([*chain, *path]),
                        algorithm.name,
                        raw=algorithm.raw,
                    )
            signed_pdfs: list[bytes] = []
            for index, (job, cert, data) in enumerate(zip(jobs, chosen, inputs, strict=True)):
                signed, facts = _sign_pdf(job, cert, data, signers[cert.cka_id], infos, req.get("tsa_url"))
                facts.update(_recorded(algorithms[cert.sha256], statuses[cert.sha256]))
                Path(job["part"]).write_bytes(signed)
                signed_pdfs.append(signed)
                _send(out, {"event": "signed", "index": index, "part": job["part"], **facts})
                if inp.readline().strip() != "next":
                    raise SignError("batch stopped by the caller")
            for index, (spec, request, cert) in enumerate(zip(packages, requests, package_certs, strict=True)):
                files = {
                    Path(s["path"]).name: signed_pdfs[s["job"]] if s.get("job") is not None else given[index][i]
                    for i, s in enumerate(spec["sources"])
                }
                sign = functools.partial(_cms, signers[cert.cka_id])
                info = write_package(request, files, cert, sign, Path(spec["part"]), dt.datetime.now(dt.UTC))
                _send(
                    out,
                    {
                        "event": "package",
                        "index": index,
                        "part": spec["part"],
                        "package_id": info.package_id,
                        "bytes": info.bytes,
                        "manifest": info.manifest,
                        "signer_sha256": info.signer_sha256,
                        **_recorded(algorithms[cert.sha256], statuses[cert.sha256]),
                    },
                )
            for item, cert in zip(detached, detached_certs, strict=True):
                when = dt.datetime.now(dt.UTC)
                der = _cms(signers[cert.cka_id], base64.b64decode(item["data"]), when)
                _send(
                    out,
                    {
                        "event": "cms",
                        "der": base64.b64encode(der).decode(),
                        "cert_sha256": cert.sha256,
                        "cert_subject": cert.subject,
                        "signing_time": when.isoformat(),
                        **_recorded(algorithms[cert.sha256], statuses[cert.sha256]),
                    },
                )
    except ApplianceError as err:
        flags = pkcs11.current_flags(lib, serial)
        err.params["pin_state"] = pin_state(flags).value if flags is not None else "unknown"
        raise
    used = list({c.sha256: c for c in [*chosen, *package_certs, *detached_certs]}.values())
    _send(
        out,
        {
            "event": "done",
            "certificates": [dataclasses.asdict(c) for c in used],
            "checks": [dataclasses.asdict(statuses[c.sha256]) for c in used],
        },
    )


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    line = sys.stdin.readline()
    try:
        req = json.loads(line)
        line = ""  # the request carried the PIN
        if req.get("op") == "status":
            _status(req, sys.stdout)
        elif req.get("op") == "batch":
            _batch(req, sys.stdin, sys.stdout)
        else:
            raise SignError(f"unknown worker request {req.get('op')!r}")
    except ApplianceError as err:
        _send(sys.stdout, {"event": "error", "code": err.code, "detail": err.detail, **err.params})
        return 1
    except Exception as err:  # noqa: BLE001 - anything else is reported, never a traceback with secrets
        _send(sys.stdout, {"event": "error", "code": "sign_failed", "detail": f"{type(err).__name__}: {err}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
