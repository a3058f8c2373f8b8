"""The `province` command (also `python -m province`): `serve` and `packages [--json]` (per receiving
commune and per deciding agency).

Options come from flags, else PROVINCE_* environment variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from province import catalogue


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"PROVINCE_{name}", default)


def _path(name: str) -> Path | None:
    v = _env(name)
    return Path(v) if v else None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path(_env("DATA_DIR", "var/province") or "var/province"))
    common.add_argument("--db-url", default=_env("DB_URL"), help="catalogue URL (default: sqlite in --data-dir)")
    p = argparse.ArgumentParser(prog="province", description="Provincial warehouse side of the appliance fleet.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", parents=[common], help="receive packages over MQTT, verify, store, send receipts")
    s.add_argument("--host", default=_env("MQTT_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(_env("MQTT_PORT", "8883") or 8883))
    s.add_argument("--name", default=_env("NAME", "receiver-1"), help="client id = certificate CN")
    s.add_argument("--group", default=_env("GROUP", "province"), help="shared-subscription group")
    s.add_argument("--ca", type=Path, default=_path("CA"))
    s.add_argument("--cert", type=Path, default=_path("CERT"))
    s.add_argument("--key", type=Path, default=_path("KEY"))
    s.add_argument("--trust", type=Path, action="append", default=None, help="trusted signer root (repeatable)")
    s.add_argument("--no-verify", action="store_true", help="store without verifying (transport benchmarks only)")
    s.add_argument("-v", "--verbose", action="store_true")
    k = sub.add_parser("packages", parents=[common], help="what was received, per commune")
    k.add_argument("--json", action="store_true")
    from province.dashboard import service  # telemetry ingest + readiness dashboard

    service.add_serve_options(s)
    service.register(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "handler", None) is not None:
        return int(args.handler(args))
    if args.command == "serve":
        return _serve(args)
    return _packages(args)


def _serve(args: argparse.Namespace) -> int:
    from province.receiver import ReceiverConfig, serve

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    trust = args.trust or [Path(p) for p in (_env("TRUST") or "").split(os.pathsep) if p]
    cfg = ReceiverConfig(
        host=args.host,
        port=args.port,
        name=args.name,
        group=args.group,
        data_dir=args.data_dir,
        db_url=args.db_url,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        trust_roots=tuple(trust),
        verify=not args.no_verify,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from province.dashboard import service

    service.start(args, stop)
    serve(cfg, stop)
    return 0


def _packages(args: argparse.Namespace) -> int:
    url = args.db_url or f"sqlite:///{args.data_dir / 'catalogue.db'}"
    factory = catalogue.open_catalogue(url)
    with factory() as s:
        rows = catalogue.list_packages(s)
        rejections = catalogue.list_rejections(s)
    communes: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        communes.setdefault(r.commune_code or "?", []).append(
            {
                "package_id": r.package_id,
                "warehouse_id": r.warehouse_id,
                "device_id": r.device_id,
                "dossier_code": r.dossier_code,
                "deciding_agency": r.deciding_agency or r.commune_code,
                "category": r.category,
                "size": r.size,
                "sha256": r.sha256,
                "received_at": r.received_at.isoformat() if r.received_at else None,
            }
        )
    agencies: dict[str, int] = {}  # Decree 118/2025: per deciding agency (whose warehouse), beside per commune
    for r in rows:
        key = r.deciding_agency or r.commune_code or "?"
        agencies[key] = agencies.get(key, 0) + 1
    if args.json:
        out = {
            "communes": communes,
            "deciding_agencies": agencies,
            "total": len(rows),
            "rejections": [
                {"package_id": j.package_id, "device_id": j.device_id, "reason": j.reason} for j in rejections
            ],
        }
        _out(json.dumps(out, ensure_ascii=False))
        return 0
    _out(f"{len(rows)} package(s) stored, {len(rejections)} rejection(s)")
    for code, items in sorted(communes.items()):
        total = sum(int(str(i["size"])) for i in items)
        _out(f"commune {code}: {len(items)} package(s), {total} bytes")
        for i in items:
            _out(f"  {i['warehouse_id']} {i['dossier_code'] or '-'} {i['category'] or '-'} from {i['device_id']}")
    for code, n in sorted(agencies.items()):
        _out(f"deciding agency {code}: {n} package(s)")
    return 0


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
