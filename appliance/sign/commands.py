"""CLI subcommands of the signing part: `token`, `sign`, `verify`, `package`."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from appliance.errors import InputError, PinRequired
from appliance.settings import Settings


def register(sub: Any) -> None:
    """Add this part's subcommands to the `appliance` parser. Each parser sets `handler`."""
    t = sub.add_parser(
        "token",
        help="PKCS#11 tokens: list them, show one token's PIN state and certificates, or self-test one",
        description="selftest: ONE PIN entry (stdin when not a terminal), signs a throwaway one-page PDF "
        "and verifies it; never retries. Exit 0 when it signed and verified.",
    )
    t.add_argument("action", choices=["list", "status", "selftest"])
    t.add_argument("--role", choices=["officer", "organisation"], default="officer", help="selftest: which key")
    t.add_argument("--trust", type=Path, action="append", default=None, help="selftest: trusted root (repeatable)")
    t.add_argument("--module", type=Path, default=None, help="PKCS#11 module (default: settings.sign)")
    t.add_argument("--token", default=None, metavar="SERIAL", help="token serial (default: settings.sign)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(handler=_token)

    s = sub.add_parser(
        "sign",
        help="sign PDFs with the token (PAdES, visible mark per role); one PIN entry per batch",
        description="Sign one or more PDFs with one PIN entry. The PIN is read from stdin when stdin is not "
        "a terminal, else prompted. Several inputs need -o to be a directory.",
    )
    s.add_argument("inputs", nargs="+", type=Path, metavar="IN.pdf")
    s.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.pdf|DIR")
    s.add_argument("--role", choices=["officer", "organisation"], required=True)
    s.add_argument("--module", type=Path, default=None)
    s.add_argument("--token", default=None, metavar="SERIAL")
    s.add_argument("--signer-name", default=None, help="digitizer (officer) / who converted it (organisation)")
    s.add_argument("--cert-id", default=None, help="CKA_ID (hex) of the certificate to use")
    s.add_argument("--copy-form", default="SAO Y", help="organisation mark: SAO Y | SAO LỤC | TRÍCH SAO")
    s.add_argument("--result-code", default=None, help="result code (from the result's QR or the officer)")
    s.add_argument("--result-seq", type=int, default=None, help="generate the result code from the template")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_sign)

    v = sub.add_parser(
        "verify",
        help="verify a signed PDF or an ASiC-E package; exit 0 only if all holds",
        description="Per signature: signer, organisation, signing time (+07:00), integrity, trust path, "
        "revocation status and algorithm, in Vietnamese (English with --lang en). Exit 0 only if all holds.",
    )
    v.add_argument("file", type=Path)
    v.add_argument(
        "--trust",
        type=Path,
        action="append",
        default=None,
        help="trusted root certificate, taken as given (repeatable); default: settings.sign.trust_roots, "
        "where a root counts only when its SHA-256 is pinned (national roots, sign.trusted_root_sha256)",
    )
    v.add_argument("--lang", choices=["vi", "en"], default="vi", help="language of the text (default vi)")
    v.add_argument("--report", type=Path, default=None, metavar="OUT.pdf", help="also write a one-page report PDF")
    v.add_argument("--json", action="store_true")
    v.set_defaults(handler=_verify)

    p = sub.add_parser("package", help="ASiC-E packages for the warehouse")
    psub = p.add_subparsers(dest="package_action", required=True)
    b = psub.add_parser("build", help="signed PDFs + manifest.json + CAdES signature -> PKG.asice")
    b.add_argument("pdfs", nargs="+", type=Path)
    b.add_argument("-o", "--output", type=Path, required=True, metavar="PKG.asice")
    b.add_argument("--category", choices=["result", "processing", "component"], required=True)
    b.add_argument("--dossier", required=True, metavar="CODE")
    b.add_argument("--tthc", default=None, metavar="CODE")
    b.add_argument("--result-code", default=None)
    b.add_argument("--fields", type=Path, default=None, help="JSON file with document fields per PDF name")
    b.add_argument("--supersedes", default=None, metavar="PACKAGE_ID", help="the package this one corrects")
    b.add_argument(
        "--role",
        choices=["officer", "organisation"],
        default="organisation",
        help="which certificate signs the manifest",
    )
    b.add_argument("--module", type=Path, default=None)
    b.add_argument("--token", default=None, metavar="SERIAL")
    b.add_argument("--cert-id", default=None)
    b.add_argument("--json", action="store_true")
    b.set_defaults(handler=_package_build)
    _ = argparse


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def read_pin(prompt: str = "PIN của token: ") -> str:
    """From stdin when it is not a terminal (one line), else a hidden prompt. Never logged."""
    if sys.stdin is None:
        raise PinRequired("no stdin to read the PIN from")
    pin = sys.stdin.readline().rstrip("\r\n") if not sys.stdin.isatty() else getpass.getpass(prompt)
    if not pin:
        raise PinRequired("empty PIN")
    return pin


def _module(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.module or settings.sign.pkcs11_module)


def _serial(args: argparse.Namespace, settings: Settings) -> str | None:
    value = args.token or settings.sign.token_serial
    return str(value) if value else None


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _selftest(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.sign.selftest import run_selftest

    serial = _serial(args, settings)
    pin = read_pin()  # exactly one entry; a wrong PIN is reported, never retried
    try:
        result = run_selftest(
            pin, module=_module(args, settings), serial=serial, role=args.role, trust_roots=_trust(args, settings)
        )
    finally:
        del pin
    if args.json:
        _out(json.dumps(_jsonable(result), ensure_ascii=False))
    else:
        _out(f"Tự kiểm tra token {serial or ''} ({args.role}): {'ĐẠT' if result.ok else 'KHÔNG ĐẠT'}")
        _out(f"  {result.message}")
        if result.signer:
            _out(f"  Người ký: {result.signer}")
        for p in result.problems:
            _out(f"  {p}")
    return 0 if result.ok else 1


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.sign.batch import token_status

    if args.action == "selftest":
        return _selftest(args, settings)

    serial = _serial(args, settings) if args.action == "status" else args.token
    tokens = token_status(_module(args, settings), serial)
    if args.json:
        _out(json.dumps(_jsonable(tokens), ensure_ascii=False))
        return 0
    if not tokens:
        _out("no token present")
    for tok in tokens:
        _out(f"token {tok.serial} ({tok.label}, {tok.manufacturer} {tok.model}): PIN {tok.pin_state.value}")
        if args.action == "status":
            for c in tok.certificates:
                nr = "non-repudiation" if c.non_repudiation else "NO non-repudiation"
                ids = "".join(f"; {v}" for v in (c.subject_uid, c.subject_serial_number) if v)
                _out(
                    f"  [{c.cka_id}] {c.role}: {c.subject}{ids}; issuer {c.issuer}; serial {c.serial}; "
                    f"valid {c.not_before:%Y-%m-%d}..{c.not_after:%Y-%m-%d} ({c.days_to_expiry} days left); "
                    f"{', '.join(c.key_usage)}; {nr}"
                )
    return 0


def _result_code(args: argparse.Namespace, settings: Settings) -> str | None:
    from appliance.sign.resultcode import check_result_code, make_result_code

    if args.result_code:
        return check_result_code(args.result_code, settings.sign.result_code_pattern)
    if args.result_seq is not None:
        return make_result_code(
            settings.sign.result_code_template,
            settings.sign.result_code_pattern,
            agency=settings.sign.agency_code,
            seq=args.result_seq,
        )
    return None


def _sign(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.sign.batch import SignJob, sign_batch
    from appliance.sign.policy import sign_policy
    from appliance.sign.report import algorithm_label

    for path in args.inputs:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    if len(args.inputs) > 1:
        if not args.output.is_dir():
            raise InputError(f"{args.output}: several inputs need -o to be an existing directory")
        outputs = [args.output / p.name for p in args.inputs]
    else:
        outputs = [args.output / args.inputs[0].name if args.output.is_dir() else args.output]
    code = _result_code(args, settings)
    if args.role == "officer":
        reason = "Số hóa thành phần hồ sơ TTHC"
    else:
        reason = f"{args.copy_form}: chuyển đổi từ văn bản giấy" + (f"; mã kết quả {code}" if code else "")
    jobs = [
        SignJob(
            input=src,
            output=dst,
            role=args.role,
            signer_name=args.signer_name,
            organisation=settings.sign.organisation_name,
            copy_form=args.copy_form,
            cert_id=args.cert_id,
            reason=reason,
            location=settings.sign.organisation_name,
        )
        for src, dst in zip(args.inputs, outputs, strict=True)
    ]
    pin = read_pin()
    try:
        results = sign_batch(
            jobs,
            pin,
            module=_module(args, settings),
            serial=_serial(args, settings),
            tsa_url=settings.sign.tsa_url,
            policy=sign_policy(settings),
        )
    finally:
        del pin
    if args.json:
        _out(json.dumps({"result_code": code, "signed": _jsonable(results)}, ensure_ascii=False))
    else:
        for r in results:
            _out(f"{r.output}: signed ({r.level}, field {r.field_name}, +{r.bytes_added} bytes)")
            _out(f"  signing time {r.signing_time}")
            fallback = f" — FALLBACK ({r.algorithm_note})" if r.algorithm_fallback else ""
            _out(f"  algorithm {algorithm_label(r.algorithm)}{fallback}")
            _out(f"  trust path {' -> '.join(r.trust_path)}; revocation {r.revocation} ({r.revocation_detail})")
        if code:
            _out(f"result code: {code}")
    return 0


def _trust(args: argparse.Namespace, settings: Settings) -> list[Path]:
    return list(args.trust or settings.sign.trust_roots)


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from appliance.errors import UnreadableFile
    from appliance.sign.policy import sign_policy
    from appliance.sign.report import verification_lines, write_report_pdf

    if not args.file.is_file():
        raise UnreadableFile(f"{args.file}: no such file")
    data = args.file.read_bytes()
    policy = sign_policy(settings)
    trust = None if args.trust else policy.store(dt.datetime.now(dt.UTC))  # --trust: roots as given
    options = policy.revocation_options()
    report: Any
    if data[:4] == b"PK\x03\x04":
        from appliance.sign.package import verify_package

        report = verify_package(data, args.trust or [], name=str(args.file), trust=trust, revocation=options)
    else:
        from appliance.sign.verify import verify_pdf

        report = verify_pdf(data, args.trust or [], name=str(args.file), trust=trust, revocation=options)
    if args.report:
        write_report_pdf(report, args.report, args.lang)
    if args.json:
        _out(json.dumps(_jsonable(report) | {"ok": report.ok}, ensure_ascii=False))
    else:
        for line in verification_lines(report, args.lang):
            _out(line)
    return 0 if report.ok else 1


def _package_build(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.sign.package import PackageRequest, build_package
    from appliance.sign.policy import sign_policy

    fields: dict[str, Any] = json.loads(args.fields.read_text()) if args.fields else {}
    code = None
    if args.category == "result":
        from appliance.sign.resultcode import check_result_code

        if args.result_code:
            code = check_result_code(args.result_code, settings.sign.result_code_pattern)
    request = PackageRequest(
        pdfs=tuple(args.pdfs),
        category=args.category,
        dossier_code=args.dossier,
        tthc_code=args.tthc,
        result_code=code,
        fields=fields,
        role=args.role,
        cert_id=args.cert_id,
        commune_code=settings.commune_code,
        agency_code=settings.sign.agency_code,
        supersedes=args.supersedes,
    )
    pin = read_pin()
    try:
        info = build_package(
            request,
            args.output,
            pin,
            module=_module(args, settings),
            serial=_serial(args, settings),
            policy=sign_policy(settings),
        )
    finally:
        del pin
    if args.json:
        _out(json.dumps(_jsonable(info), ensure_ascii=False))
    else:
        _out(f"{args.output}: package {info.package_id}, {len(args.pdfs)} PDF(s), {info.bytes} bytes")
    return 0
