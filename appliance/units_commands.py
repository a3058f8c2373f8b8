"""`appliance units load|list|lookup`: the administrative-unit table on the box (appliance.units), for the
deciding-agency list on the open-dossier form, the statistics' unit names and old results' units."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.settings import Settings

if TYPE_CHECKING:  # the database side is imported when a units command runs, not by every command's parser
    from appliance import units


def register(sub: Any) -> None:
    u = sub.add_parser(
        "units",
        help="administrative units: load a CSV (a new version), list today's, look up an old unit",
        description="Units files: appliance/data/units/README.md. Loading closes changed or missing units "
        "and adds their new periods; the same file twice changes nothing.",
    )
    u.add_argument("action", choices=["load", "list", "lookup"])
    u.add_argument("file", nargs="?", default="", help="load: the units CSV; lookup: the unit as printed")
    u.add_argument("--mapping", type=Path, default=None, help="load: the old -> new mapping CSV")
    u.add_argument("--version", default="", help="load: a label for this version (default: the file name)")
    u.add_argument("--from", dest="effective", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default today)")
    u.add_argument("--province", default="", help="list: one province code")
    u.add_argument("--json", action="store_true")
    u.set_defaults(handler=_units)


def _units(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import db, units

    engine = db.make_engine(settings.db_url)
    try:
        db.upgrade(engine)
        factory = db.session_factory(engine)
        with db.transaction(factory) as session:
            if args.action == "load":
                if not args.file:
                    raise SystemExit("error: units load needs the CSV file")
                path = Path(args.file)
                try:
                    rows = units.read_units(path)
                    mapping = units.read_mapping(args.mapping) if args.mapping else []
                except (OSError, units.UnitFileError) as err:
                    raise SystemExit(f"error: {err}") from err
                result = units.load(
                    session,
                    rows,
                    mappings=mapping,
                    version=args.version or path.stem,
                    effective=args.effective or date.today(),
                    source=path.name,
                )
                _out(args, _fields(result), _loaded(result))
            elif args.action == "list":
                found = units.current_units(session, province_code=args.province or None)
                data: Any = [
                    {"code": u.code, "name": u.name, "kind": u.kind, "province": u.province_code} for u in found
                ]
                _out(args, data, "\n".join(f"{u.code}\t{units.label(u)}" for u in found))
            else:
                now = units.today_for(session, args.file)
                data = {
                    "printed": now.printed,
                    "today": [{"code": u.code, "name": units.label(u)} for u in now.today],
                }
                text = ", ".join(f"{u.code} {units.label(u)}" for u in now.today) or "không tìm thấy đơn vị hiện nay"
                _out(args, data, f"{now.printed} -> {text}")
    finally:
        engine.dispose()
    return 0


def _fields(result: units.LoadResult) -> dict[str, int]:
    return {"added": result.added, "closed": result.closed, "unchanged": result.unchanged, "mappings": result.mappings}


def _loaded(result: units.LoadResult) -> str:
    return (
        f"{result.added} unit period(s) added, {result.closed} closed, {result.unchanged} unchanged, "
        f"{result.mappings} mapping row(s)"
    )


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    sys.stdout.write((json.dumps(data, ensure_ascii=False) if args.json else text) + "\n")
