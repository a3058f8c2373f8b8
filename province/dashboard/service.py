"""Running ingest + dashboard: inside `province serve` (threads next to the receiver), or alone with
`province dashboard`; `province units FILE.csv` loads the administrative units the province expects,
`province rollout FILE.csv` the rollout deadlines, and
`province devices FILE` the device registry (which commune each box is registered for),
`province officers FILE.csv` the officers expected per unit (province.roster), and
`province accounts add|passwd|disable|list|dev` the provincial IT accounts that may sign in."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from appliance.csvfile import read_csv
from province.dashboard import auth
from province.dashboard.readiness import DashboardConfig
from province.telemetry import (
    AlertPolicy,
    IngestConfig,
    load_deadlines,
    load_registry,
    load_units,
    open_telemetry,
    run_ingest,
)

log = logging.getLogger(__name__)


def _env(name: str, default: str) -> str:
    return os.environ.get(f"PROVINCE_{name}", default)


def add_serve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("telemetry and dashboard")
    g.add_argument("--dashboard-host", default=_env("DASHBOARD_HOST", "127.0.0.1"))
    g.add_argument("--dashboard-port", type=int, default=int(_env("DASHBOARD_PORT", "8090")), help="0: no dashboard")
    g.add_argument("--no-telemetry", action="store_true", help="do not ingest telemetry in this process")
    g.add_argument(
        "--telemetry-port",
        type=int,
        default=int(_env("MQTT_TELEMETRY_PORT", "8884")),
        help="the broker's telemetry listener (provisioning.broker), where the ingest connects",
    )
    g.add_argument("--lost-after-h", type=float, default=float(_env("LOST_AFTER_H", "24")))
    g.add_argument("--outbox-alert-h", type=float, default=float(_env("OUTBOX_ALERT_H", "48")))
    g.add_argument("--alert-webhook", default=os.environ.get("PROVINCE_ALERT_WEBHOOK"))
    g.add_argument(
        "--metrics-token-file",
        type=Path,
        default=Path(v) if (v := _env("METRICS_TOKEN_FILE", "")) else None,
        help="file holding the bearer token /metrics wants (default: /metrics answers loopback clients only)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    d = sub.add_parser(
        "dashboard",
        parents=[common],
        help="telemetry ingest + readiness dashboard only (no package receiver)",
    )
    d.add_argument("--host", default=_env("MQTT_HOST", "127.0.0.1"))
    d.add_argument("--port", type=int, default=int(_env("MQTT_PORT", "8883")))
    d.add_argument("--name", default=_env("NAME", "receiver-1"), help="certificate CN")
    d.add_argument("--group", default=_env("GROUP", "province"))
    for flag in ("ca", "cert", "key"):
        d.add_argument(f"--{flag}", type=Path, default=Path(v) if (v := _env(flag.upper(), "")) else None)
    add_serve_options(d)
    d.add_argument("-v", "--verbose", action="store_true")
    d.set_defaults(handler=_dashboard)
    u = sub.add_parser(
        "units",
        parents=[common],
        help="load (reload) the units CSV: code,name,kind,province_code,province_name (appliance/data/units/README.md)",
        description="The file's units become the current ones of the provinces it covers: units it no longer "
        "lists are removed. Two levels: xã / phường / đặc khu, and the provincial agencies and centre.",
    )
    u.add_argument("csv", type=Path)
    u.set_defaults(handler=_units)
    o = sub.add_parser(
        "rollout",
        parents=[common],
        help="set the rollout deadlines from a CSV: scope,deadline[,campaign] (scope: unit code, kind or level)",
    )
    o.add_argument("csv", type=Path)
    o.set_defaults(handler=_rollout)
    r = sub.add_parser(
        "devices",
        parents=[common],
        help="load the device registry: registry.db, or the JSON of `python -m provisioning registry list --json`",
        description="Replaces the province's copy of the registry. A registered box's telemetry is recorded at "
        "its registered commune; a box that reports another commune is logged and flagged.",
    )
    r.add_argument("registry", type=Path)
    r.set_defaults(handler=_devices)
    f = sub.add_parser(
        "officers",
        parents=[common],
        help="load (reload) the officers expected per unit: commune_code,full_name[,username][,position]",
        description="Each officer listed is looked for on the rosters of the unit's boxes (by username when "
        "given, else by the certificate's name); one no box has seen is listed as 'chưa thấy ký'. A file replaces "
        "the lists of the units it names; a bad line stops the load and nothing is stored. Lines starting with # "
        "are skipped.",
    )
    f.add_argument("csv", type=Path)
    f.add_argument("--replace-all", action="store_true", help="the file is the whole list: other units' lists go")
    f.set_defaults(handler=_officers)
    a = sub.add_parser(
        "accounts",
        parents=[common],
        help="dashboard accounts: add / passwd / disable / list, or dev (a development account, printed)",
        description="Passwords are read from standard input when it is not a terminal, else prompted twice.",
    )
    a.add_argument("action", choices=["add", "passwd", "disable", "list", "dev"])
    a.add_argument("username", nargs="?", default="")
    a.add_argument("--full-name", default="", help="for add: the person's name, shown on what they mark handled")
    a.add_argument(
        "--role",
        choices=["operator", "viewer"],
        default=None,
        help="for add: operator (default for a new account; may mark incidents handled) or viewer (reads only)",
    )
    a.set_defaults(handler=_accounts)


def _url(args: argparse.Namespace) -> str:
    return str(args.db_url or f"sqlite:///{args.data_dir / 'catalogue.db'}")


def start(args: argparse.Namespace, stop: threading.Event) -> list[threading.Thread]:
    """Ingest and dashboard threads for `province serve` / `province dashboard` (both stop with `stop`)."""
    url = _url(args)
    threads: list[threading.Thread] = []
    rows_config = DashboardConfig(lost_after_s=args.lost_after_h * 3600)
    if not args.no_telemetry:
        cfg = IngestConfig(
            host=args.host,
            port=args.telemetry_port,
            name=args.name,
            group=args.group,
            db_url=url,
            ca_file=args.ca,
            cert_file=args.cert,
            key_file=args.key,
            policy=AlertPolicy(lost_after_s=args.lost_after_h * 3600, outbox_age_s=args.outbox_alert_h * 3600),
            webhook_url=args.alert_webhook,
            rows_config=rows_config,
        )
        threads.append(threading.Thread(target=run_ingest, args=(cfg, stop), name="telemetry-ingest", daemon=True))
    if args.dashboard_port:
        import uvicorn

        from province.dashboard.app import create_app

        token = args.metrics_token_file.read_text().strip() if args.metrics_token_file else None
        app = create_app(open_telemetry(url), rows_config, metrics_token=token)
        server = uvicorn.Server(
            uvicorn.Config(app, host=args.dashboard_host, port=args.dashboard_port, log_level="warning")
        )

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threads.append(threading.Thread(target=server.run, name="dashboard", daemon=True))
        threads.append(threading.Thread(target=watch, daemon=True))
    for t in threads:
        t.start()
    return threads


def _dashboard(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = start(args, stop)
    stop.wait()
    for t in threads:
        t.join(10)
    return 0


def _units(args: argparse.Namespace) -> int:
    from appliance.units import UnitFileError, read_units

    try:
        records = read_units(args.csv)
    except (OSError, UnitFileError) as err:
        raise SystemExit(f"error: {args.csv}: {err}") from err
    n = load_units(open_telemetry(_url(args)), records)
    print(f"{n} unit(s) loaded")  # noqa: T201
    return 0


def _rollout(args: argparse.Namespace) -> int:
    try:
        table = read_csv(args.csv)
    except (OSError, UnicodeDecodeError) as err:
        raise SystemExit(f"error: {args.csv}: {err}") from err
    try:
        rows = [r.cells for r in table.rows]
        n = load_deadlines(open_telemetry(_url(args)), rows, lines=[r.line for r in table.rows])
    except ValueError as err:
        raise SystemExit(f"error: {args.csv}: {err}") from err
    print(f"{n} deadline(s) set")  # noqa: T201
    return 0


def registry_rows(path: Path) -> list[dict[str, Any]]:
    """The devices of a registry file: the provisioning SQLite registry itself, or its JSON listing."""
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    if path.read_bytes()[:16] == b"SQLite format 3\x00":
        from dataclasses import asdict

        from provisioning import registry

        with registry.open_registry(path) as con:
            return [asdict(d) for d in registry.list_devices(con, include_retired=True)]
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise SystemExit(f"error: {path}: expected a JSON list of devices")
    return rows


def _devices(args: argparse.Namespace) -> int:
    n = load_registry(open_telemetry(_url(args)), registry_rows(args.registry))
    print(f"{n} device(s) loaded")  # noqa: T201
    return 0


def _officers(args: argparse.Namespace) -> int:
    from province.roster import ExpectedFileError, load_expected, read_expected

    try:
        records = read_expected(args.csv)
        n = load_expected(open_telemetry(_url(args)), records, replace_all=args.replace_all)
    except OSError as err:
        raise SystemExit(f"error: {args.csv}: {err.strerror or err}") from err
    except ExpectedFileError as err:
        raise SystemExit(f"error: {args.csv}: {err}") from err
    units = len({r.commune_code for r in records})
    print(f"{n} officer(s) of {units} unit(s) loaded")  # noqa: T201
    return 0


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Mật khẩu / password: ")
    if getpass.getpass("Nhập lại / again: ") != first:
        raise SystemExit("error: the passwords differ")
    return first


def _accounts(args: argparse.Namespace) -> int:
    factory = open_telemetry(_url(args))
    try:
        if args.action == "list":
            for name, full_name, active in auth.list_accounts(factory):
                print(f"{name}\t{full_name}\t{'active' if active else 'disabled'}")  # noqa: T201
        elif args.action == "dev":
            name, password = auth.dev_account(factory)
            print(f"development dashboard account: {name} / {password}")  # noqa: T201
        elif not args.username:
            raise SystemExit(f"error: accounts {args.action} needs a username")
        elif args.action == "disable":
            auth.disable_account(factory, args.username)
        elif args.action == "passwd" and args.username not in {n for n, _, _ in auth.list_accounts(factory)}:
            raise SystemExit(f"error: no account {args.username!r}")
        else:
            role = args.role if args.action == "add" else None
            auth.set_account(factory, username=args.username, full_name=args.full_name, password=_password(), role=role)
    except auth.AccountError as err:
        raise SystemExit(f"error: {err}") from err
    return 0
