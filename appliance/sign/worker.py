"""The signing worker: `python -m appliance.sign.worker`, one short-lived process per batch.

It is the only process that loads the token's PKCS#11 module. The parent (appliance.sign.batch) writes
one JSON request line on stdin (the PIN travels only there, never in argv, environment or files) and
reads JSON event lines from stdout. After each signed document the worker waits for "next" or "stop",
so the parent can cancel between documents. Signed files are written next to their destination as
`<output>.part`; the parent renames them only when the whole batch succeeded.

Events: {"event": "tokens", "tokens": [...]}, {"event": "signed", "index": i, ...}, {"event": "done"},
{"event": "error", "code": ..., "detail": ..., "pin_state": ...}.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import IO, Any

from appliance.errors import ApplianceError, PdfSignFailed, SignError
from appliance.sign.token import CertInfo, check_cert_usable, choose_cert, pin_state

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


def _sign(req: dict[str, Any], inp: IO[str], out: IO[str]) -> None:
    from appliance.sign import pades, pkcs11

    pin: str | None = req.pop("pin", None) or None
    module = Path(req["module"])
    serial = req.get("serial")
    jobs: list[dict[str, Any]] = req["jobs"]
    lib = pkcs11.load(module)
    now = dt.datetime.now(dt.UTC)
    token = pkcs11.find_token(lib, serial)
    on_token = pkcs11.certificates(token, now)
    infos = [c for c, _der in on_token]
    ders = {c.cka_id: der for c, der in on_token}
    chain = [der for c, der in on_token if c.is_ca]
    chosen: list[CertInfo] = []
    for job in jobs:  # every refusal happens before the PIN is used
        cert = choose_cert(infos, job["role"], job.get("cert_id"))
        check_cert_usable(cert, now)
        chosen.append(cert)
    inputs = []
    for job in jobs:
        try:
            inputs.append(Path(job["input"]).read_bytes())
        except OSError as err:
            raise PdfSignFailed(f"cannot read {job['input']}: {err.strerror}") from err
    if pin is None:
        from appliance.errors import PinRequired

        raise PinRequired("no PIN given")
    try:
        with pkcs11.login(lib, serial, pin) as session:
            pin = None  # one attempt made; the PIN is not kept
            signers: dict[str, Any] = {}
            for cert in chosen:
                if cert.cka_id not in signers:
                    pkcs11.has_private_key(session, cert.cka_id)
                    signers[cert.cka_id] = pkcs11.make_signer(session, ders[cert.cka_id], cert.cka_id, chain)
            for index, (job, cert, data) in enumerate(zip(jobs, chosen, inputs, strict=True)):
                when = dt.datetime.now(dt.UTC)
                mark = _mark(job, cert, infos, when)
                try:
                    signed = pades.sign_pdf(
                        data,
                        signers[cert.cka_id],
                        mark,
                        when=when,
                        tsa_url=req.get("tsa_url"),
                        reason=job.get("reason"),
                        location=job.get("location"),
                        signer_name=cert.common_name,
                    )
                except ApplianceError:
                    raise
                except Exception as err:  # noqa: BLE001 - token errors surface from inside pyHanko
                    raise pkcs11.translate(err) from err
                part = Path(job["output"] + ".part")
                part.write_bytes(signed.data)
                _send(
                    out,
                    {
                        "event": "signed",
                        "index": index,
                        "part": str(part),
                        "field_name": signed.field_name,
                        "level": signed.level,
                        "signing_time": pades.iso_vn(signed.signing_time),
                        "mark": list(signed.mark.lines),
                        "box": list(signed.box),
                        "cert_sha256": cert.sha256,
                        "cert_subject": cert.subject,
                        "bytes_added": len(signed.data) - len(data),
                    },
                )
                if inp.readline().strip() != "next":
                    raise SignError("batch stopped by the caller")
    except ApplianceError as err:
        flags = pkcs11.current_flags(lib, serial)
        err.params["pin_state"] = pin_state(flags).value if flags is not None else "unknown"
        raise
    _send(out, {"event": "done"})


def _cms(req: dict[str, Any], out: IO[str]) -> None:
    """A CAdES detached signature (CMS, DER) over the given bytes, e.g. an ASiC manifest."""
    import asyncio
    import base64

    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    from appliance.errors import PinRequired
    from appliance.sign import pkcs11

    pin: str | None = req.pop("pin", None) or None
    serial = req.get("serial")
    lib = pkcs11.load(Path(req["module"]))
    now = dt.datetime.now(dt.UTC)
    on_token = pkcs11.certificates(pkcs11.find_token(lib, serial), now)
    cert = choose_cert([c for c, _d in on_token], req["role"], req.get("cert_id"))
    check_cert_usable(cert, now)
    expected = req.get("expect_sha256")
    if expected and cert.sha256 != expected:
        raise SignError(f"the token's certificate {cert.sha256[:16]}... is not the expected {expected[:16]}...")
    ders = {c.cka_id: der for c, der in on_token}
    chain = [der for c, der in on_token if c.is_ca]
    data = base64.b64decode(req["data"])
    if pin is None:
        raise PinRequired("no PIN given")
    try:
        with pkcs11.login(lib, serial, pin) as session:
            pin = None
            pkcs11.has_private_key(session, cert.cka_id)
            signer = pkcs11.make_signer(session, ders[cert.cka_id], cert.cka_id, chain)
            try:
                signed = asyncio.run(
                    signer.async_sign_general_data(
                        data,
                        "sha256",
                        detached=True,
                        use_cades=True,
                        signed_attr_settings=PdfCMSSignedAttributes(signing_time=now),
                    )
                )
            except Exception as err:  # noqa: BLE001 - token errors surface from inside pyHanko
                raise pkcs11.translate(err) from err
    except ApplianceError as err:
        flags = pkcs11.current_flags(lib, serial)
        err.params["pin_state"] = pin_state(flags).value if flags is not None else "unknown"
        raise
    _send(
        out,
        {
            "event": "cms",
            "der": base64.b64encode(signed.dump()).decode(),
            "cert_sha256": cert.sha256,
            "cert_subject": cert.subject,
            "signing_time": now.isoformat(),
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
        elif req.get("op") == "sign":
            _sign(req, sys.stdin, sys.stdout)
        elif req.get("op") == "cms":
            _cms(req, sys.stdout)
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
