"""``python -m provisioning``: the provincial CA, device registry and inventory for provincial IT.

  init-ca | server-cert | csr | issue | renew | receiver-cert | web-cert | revoke | crl
  | registry add|list|expiring|set-host | broker-acl [--telemetry] | broker-config | inventory

The CA directory (``--ca-dir``, env PROVISIONING_CA_DIR, default /var/lib/province-ca) holds ca.crt,
ca.key (0600) and registry.db; keep it on the provincial controller only, backed up offline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import yaml

from provisioning import broker, enrol, listener, registry, revoke
from provisioning.ca import Ca, issue, make_ca


def _ca(args: argparse.Namespace) -> Ca:
    ca = Ca(args.ca_dir / "ca.crt", args.ca_dir / "ca.key")
    if not ca.cert.exists() or not ca.key.exists():
        raise SystemExit(f"error: no CA in {args.ca_dir} (run init-ca first)")
    return ca


def _registry_path(args: argparse.Namespace) -> Path:
    return Path(args.registry) if args.registry else args.ca_dir / "registry.db"


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--ca-dir", type=Path, default=Path(os.environ.get("PROVISIONING_CA_DIR", "/var/lib/province-ca"))
    )
    common.add_argument(
        "--registry", default=os.environ.get("PROVISIONING_REGISTRY"), help="default: CA_DIR/registry.db"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = argparse.ArgumentParser(prog="python -m provisioning", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init-ca", parents=[common], help="create the provincial device CA (refuses to overwrite)")
    s.add_argument("--name", default="Provincial device CA")

    s = sub.add_parser("server-cert", parents=[common], help="a TLS server certificate for the broker")
    s.add_argument("--name", required=True)
    s.add_argument("--host", action="append", required=True, help="DNS name or IP (repeatable)")
    s.add_argument("--out", type=Path, required=True)

    s = sub.add_parser(
        "csr",
        parents=[common],
        help="(where the key lives) make a key and a CSR: a box's (CN = device id), its web server's "
        "(--web: CN = box-DEVICE_ID) or a receiver's (--receiver NAME)",
    )
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--device-id")
    who.add_argument("--receiver", metavar="NAME", help="a province receiver, e.g. receiver-1")
    s.add_argument("--web", action="store_true", help="with --device-id: the box's web server key and CSR")
    s.add_argument("--key", type=Path, required=True)
    s.add_argument("--csr", type=Path, required=True)
    s.add_argument("--overwrite", action="store_true")

    for name, text in (("issue", "sign an enrolled box's CSR"), ("renew", "sign a renewal CSR (new key)")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("--device-id", required=True)
        s.add_argument("--csr", type=Path, required=True)
        s.add_argument("--out", type=Path, required=True, help="directory for DEVICE_ID.crt")
        s.add_argument("--days", type=int, default=397)
        if name == "renew":
            s.add_argument("--revoke-previous", action="store_true", help="revoke older certificates as superseded")

    s = sub.add_parser(
        "receiver-cert",
        parents=[common],
        help="a receiver's client certificate (CN = NAME, for the broker's receiver ACL entries); from its CSR "
        "(`csr --receiver NAME` on the receiver host), or with --new-key a key made here in --out (0600)",
    )
    s.add_argument("--name", required=True, help="receiver name, e.g. receiver-1")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--csr", type=Path)
    g.add_argument("--new-key", action="store_true", help="make the key here (copy it to the receiver host)")
    s.add_argument("--out", type=Path, required=True, help="directory for NAME.crt (and NAME.key)")
    s.add_argument("--days", type=int, default=397)

    s = sub.add_parser(
        "web-cert",
        parents=[common],
        help="a box's web server certificate (serverAuth; SANs box-DEVICE_ID, box-DEVICE_ID.local, its IPs) "
        "from the CSR made on the box (`csr --device-id ID --web`)",
    )
    s.add_argument("--device-id", required=True)
    s.add_argument("--csr", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="directory for DEVICE_ID-web.crt")
    s.add_argument("--ip", action="append", default=[], help="an IP address of the box on the LAN (repeatable)")
    s.add_argument("--dns", action="append", default=[], help="another DNS name of the box (repeatable)")
    s.add_argument("--days", type=int, default=397, help="at most 397: browsers refuse longer server certificates")

    s = sub.add_parser(
        "revoke",
        parents=[common],
        help="revoke a certificate (by serial), a whole device, or (--superseded-by) every certificate that a new "
        "one replaces",
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--serial")
    g.add_argument("--device-id")
    g.add_argument(
        "--superseded-by",
        metavar="SERIAL",
        help="once the certificate SERIAL is installed: revoke every other unrevoked certificate of its holder (the "
        "same box's device or web certificates, or the same receiver's) with reason superseded",
    )
    s.add_argument("--reason", default=None, choices=sorted(revoke.REASONS))
    s.add_argument("--crl", type=Path, help="also write the new CRL here")

    s = sub.add_parser("crl", parents=[common], help="write the CRL (PEM)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--days", type=int, default=35)

    r = sub.add_parser("registry", help="the device registry")
    rs = r.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = rs.add_parser("add", parents=[common], help="register a box")
    a.add_argument("--commune-code", required=True, help="5-digit administrative-unit code (2025)")
    a.add_argument("--commune-name", required=True)
    a.add_argument("--province-code", required=True)
    a.add_argument("--box", type=int, default=1)
    a.add_argument("--host", help="address Ansible uses (IP or DNS name)")
    a.add_argument("--old-codes", default="", help="pre-2025 unit code(s), comma-separated")
    rs.add_parser("list", parents=[common], help="every registered box with its certificate")
    e = rs.add_parser("expiring", parents=[common], help="boxes whose certificate ends within --days")
    e.add_argument("--days", type=int, default=45)
    h = rs.add_parser("set-host", parents=[common], help="change the address Ansible uses")
    h.add_argument("--device-id", required=True)
    h.add_argument("--host", required=True)

    s = sub.add_parser(
        "broker-acl",
        parents=[common],
        help="print a mosquitto ACL: the transfer listener's (default) or, with --telemetry, the telemetry "
        "listener's, which names every registered box (regenerate after enrolling)",
    )
    s.add_argument("--receiver", action="append", default=[], help="receiver certificate CN (repeatable)")
    s.add_argument("--telemetry", action="store_true", help="the telemetry listener's ACL, from the registry")

    s = sub.add_parser(
        "broker-config",
        parents=[common],
        help="print the province broker's whole mosquitto.conf (two TLS listeners, CRL, persistence); the files "
        "it names are in --conf-dir: ca.crt server.crt server.key crl.pem acl acl-telemetry",
    )
    s.add_argument("--conf-dir", type=Path, default=Path("/etc/mosquitto/province"))
    s.add_argument("--data-dir", type=Path, default=Path("/var/lib/mosquitto"), help="persistence database")
    s.add_argument("--log-file", type=Path, default=Path("/var/log/mosquitto/mosquitto.log"))
    s.add_argument("--pid-file", type=Path, default=Path("/run/mosquitto/mosquitto.pid"))
    s.add_argument("--port", type=int, default=8883, help="transfer listener")
    s.add_argument("--telemetry-port", type=int, default=8884, help="telemetry listener")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--max-packet-size", type=int, default=300 * 1024)
    s.add_argument("--no-crl", action="store_true", help="no crlfile (only for a broker without revocation)")
    s.add_argument("--run-as-root", action="store_true", help="throw-away test brokers only")

    s = sub.add_parser("inventory", parents=[common], help="write the Ansible inventory from the registry")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--province-name", action="append", default=[], help="CODE=NAME (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (registry.RegistryError, enrol.EnrolError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2


def _run(args: argparse.Namespace) -> int:  # noqa: C901 - one branch per command
    cmd = args.command
    if cmd == "init-ca":
        if (args.ca_dir / "ca.key").exists():
            raise SystemExit(f"error: {args.ca_dir}/ca.key exists; refusing to replace the CA")
        ca = make_ca(args.ca_dir, args.name)
        with registry.open_registry(_registry_path(args)):
            pass
        _out(str(ca.cert))
        return 0
    if cmd == "server-cert":
        out = issue(_ca(args), args.name, args.out, server=True, hosts=tuple(args.host))
        _out(str(out.cert))
        return 0
    if cmd == "csr":
        if args.receiver:
            cn = enrol.check_receiver_name(args.receiver)
        elif args.web:
            cn = enrol.web_name(args.device_id)
        else:
            cn = registry.check_device_id(args.device_id)
        enrol.make_key_and_csr(args.device_id or cn, args.key, args.csr, overwrite=args.overwrite, common_name=cn)
        _out(str(args.csr))
        return 0
    if cmd in ("receiver-cert", "web-cert"):
        return _service_cert(args)
    if cmd in ("issue", "renew"):
        ca = _ca(args)
        with registry.open_registry(_registry_path(args)) as con:
            before = [c.serial for c in registry.certificates(con, args.device_id) if c.revoked_at is None]
            signed = enrol.enrol(ca, con, args.csr.read_bytes(), args.device_id, args.out, days=args.days)
            if cmd == "renew" and args.revoke_previous:
                for serial in before:
                    revoke.revoke(con, serial, "superseded")
        result = {"cert": str(signed.cert), "serial": signed.serial, "not_after": signed.not_after.isoformat()}
        _out(json.dumps(result) if args.json else f"{signed.cert} serial {signed.serial} until {result['not_after']}")
        return 0
    if cmd == "revoke":
        ca = _ca(args)
        with registry.open_registry(_registry_path(args)) as con:
            if args.serial:
                serials = [revoke.revoke_serial(con, args.serial, args.reason or "unspecified")]
            elif args.superseded_by:
                if args.reason not in (None, "superseded"):
                    raise registry.RegistryError("--superseded-by always revokes with reason superseded")
                serials = revoke.supersede(con, args.superseded_by)
            else:
                serials = revoke.revoke_device(con, args.device_id, args.reason or "cessation_of_operation")
            if args.crl:
                revoke.write_crl(ca, con, args.crl)
        _out(json.dumps({"revoked": serials}) if args.json else "revoked: " + " ".join(serials))
        return 0
    if cmd == "crl":
        ca = _ca(args)
        with registry.open_registry(_registry_path(args)) as con:
            revoke.write_crl(ca, con, args.out, days=args.days)
        _out(str(args.out))
        return 0
    if cmd == "registry":
        with registry.open_registry(_registry_path(args)) as con:
            if args.action == "add":
                d = registry.add_device(
                    con,
                    commune_code=args.commune_code,
                    commune_name=args.commune_name,
                    province_code=args.province_code,
                    box_no=args.box,
                    host=args.host,
                    old_unit_codes=args.old_codes,
                )
                _out(json.dumps(asdict(d), ensure_ascii=False) if args.json else d.device_id)
                return 0
            if args.action == "set-host":
                registry.set_host(con, args.device_id, args.host)
                return 0
            devices = registry.list_devices(con) if args.action == "list" else registry.expiring(con, args.days)
        if args.json:
            _out(json.dumps([asdict(d) for d in devices], ensure_ascii=False))
        else:
            for d in devices:
                _out(
                    f"{d.device_id}\t{d.commune_name}\t{d.host or '-'}\t"
                    f"{d.cert_serial or 'no certificate'}\t{d.cert_not_after or '-'}"
                )
        return 0
    if cmd == "broker-acl":
        if not args.telemetry:
            _out(broker.acl_text(args.receiver))
            return 0
        with registry.open_registry(_registry_path(args)) as con:
            device_ids = listener.registered_devices(con)
        _out(broker.telemetry_acl_text(device_ids, args.receiver))
        return 0
    if cmd == "broker-config":
        _out(
            broker.province_conf(
                args.conf_dir,
                data_dir=args.data_dir,
                port=args.port,
                telemetry_port=args.telemetry_port,
                bind=args.bind,
                crl=not args.no_crl,
                max_packet_size=args.max_packet_size,
                log_file=args.log_file,
                pid_file=args.pid_file,
                run_as_root=args.run_as_root,
            )
        )
        return 0
    if cmd == "inventory":
        names = dict(item.split("=", 1) for item in args.province_name)
        with registry.open_registry(_registry_path(args)) as con:
            inv = registry.inventory(registry.list_devices(con), province_names=names)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        header = "# generated by `python -m provisioning inventory` from the device registry: do not edit\n"
        args.out.write_text(header + yaml.safe_dump(inv, allow_unicode=True, sort_keys=True))
        _out(str(args.out))
        return 0
    raise AssertionError(cmd)


def _service_cert(args: argparse.Namespace) -> int:
    """`receiver-cert` and `web-cert`: sign the CSR (or, for a receiver, a key made here) and record it."""
    ca = _ca(args)
    with registry.open_registry(_registry_path(args)) as con:
        if args.command == "web-cert":
            signed = enrol.issue_web(
                ca,
                con,
                args.csr.read_bytes(),
                args.device_id,
                args.out,
                addresses=tuple(args.ip),
                names=tuple(args.dns),
                days=args.days,
            )
        else:
            name = enrol.check_receiver_name(args.name)
            csr = args.csr
            if args.new_key:
                csr = args.out / f"{name}.csr"
                enrol.make_key_and_csr(name, args.out / f"{name}.key", csr, common_name=name)
            signed = enrol.issue_receiver(ca, con, csr.read_bytes(), name, args.out, days=args.days)
        record = registry.service_certificate(con, signed.serial)
    result = {"cert": str(signed.cert), "serial": signed.serial, "not_after": signed.not_after.isoformat()}
    if record is not None and record.hosts:
        result["hosts"] = record.hosts
    _out(json.dumps(result) if args.json else f"{signed.cert} serial {signed.serial} until {result['not_after']}")
    return 0
