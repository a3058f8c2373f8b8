"""CLI subcommands of the outbox part: `appliance outbox status|add|run|retry`."""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from appliance.errors import OutboxError
from appliance.settings import Settings


def register(sub: Any) -> None:
    """Add `outbox` to the `appliance` parser. Each parser sets `handler`."""
    o = sub.add_parser("outbox", help="packages waiting for / sent to the province")
    osub = o.add_subparsers(dest="outbox_action", required=True, metavar="ACTION")
    st = osub.add_parser("status", help="what is queued, sending, transferred, receipted or rejected")
    st.add_argument("--json", action="store_true", help="one JSON object")
    st.add_argument("--limit", type=int, default=50)
    st.set_defaults(handler=_status)
    add = osub.add_parser("add", help="queue an existing package (ASiC-E) for the province")
    add.add_argument("package", type=Path, metavar="PKG.asice")
    add.add_argument("--priority", type=int, default=2, help="0 status, 1 receipts, 2 packages (default), 3 bulk")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=_add)
    run = osub.add_parser("run", help="the sender: move queued packages to the province (Ctrl-C stops)")
    run.add_argument("--until-empty", action="store_true", help="exit once nothing is waiting for a receipt")
    run.set_defaults(handler=_run)
    rt = osub.add_parser("retry", help="put a rejected package back in the queue (after correcting it)")
    rt.add_argument("item_id", type=int)
    rt.set_defaults(handler=_retry)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _factory(settings: Settings) -> Any:
    from appliance.outbox.sender import open_factory

    return open_factory(settings)


def package_facts(path: Path) -> tuple[str, str | None]:
    """(package_id, dossier_code) from the package's manifest.json."""
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
        return str(manifest["package_id"]), manifest.get("dossier_code")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise OutboxError(f"{path} is not a package with a manifest.json: {err}") from err


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import db
    from appliance.outbox import store

    package_id, dossier = package_facts(args.package)
    with db.transaction(_factory(settings)) as s:
        item = store.enqueue(
            s, path=args.package.resolve(), package_id=package_id, dossier_code=dossier, priority=args.priority
        )
        out = {"id": item.id, "package_id": item.package_id, "state": item.state, "size": item.size}
    _out(json.dumps(out) if args.json else f"queued #{out['id']} {package_id[:16]}… ({out['size']} bytes)")
    return 0


def _iso(when: Any) -> str | None:
    from appliance.outbox import store

    value = store.aware(when)
    return value.isoformat() if value is not None else None


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import db
    from appliance.outbox import store

    with db.transaction(_factory(settings)) as s:
        count, oldest = store.depth(s)
        items: list[dict[str, Any]] = [
            {
                "id": i.id,
                "package_id": i.package_id,
                "dossier_code": i.dossier_code,
                "state": i.state,
                "reason": i.reason,
                "priority": i.priority,
                "size": i.size,
                "bytes_acked": i.bytes_acked,
                "attempts": i.attempts,
                "next_try_at": _iso(i.next_try_at),
                "warehouse_id": i.warehouse_id,
                "created_at": _iso(i.created_at),
            }
            for i in store.list_items(s, limit=args.limit)
        ]
    if args.json:
        _out(json.dumps({"unsent": count, "oldest_unsent": oldest.isoformat() if oldest else None, "items": items}))
        return 0
    _out(f"{count} package(s) not yet receipted" + (f", oldest queued {oldest:%Y-%m-%d %H:%M} UTC" if oldest else ""))
    for i in items:
        pct = 100 * i["bytes_acked"] // i["size"] if i["size"] else 100
        line = f"#{i['id']} {i['package_id'][:16]}… {i['state']} {pct}% of {i['size']} bytes"
        if i["warehouse_id"]:
            line += f" -> {i['warehouse_id']}"
        if i["reason"]:
            line += f" [{i['reason']}]"
        _out(line)
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.outbox.sender import run_sender

    run_sender(settings, until_empty=args.until_empty)
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import db
    from appliance.outbox import store

    with db.transaction(_factory(settings)) as s:
        item = store.retry(s, item_id=args.item_id)
        _out(f"#{item.id} queued again")
    return 0
