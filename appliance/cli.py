"""The `appliance` command (also `python -m appliance`).

Exit code 0 on success; on failure a non-zero code and one clear line on stderr:
the officer's Vietnamese sentence, then the error code and the technical detail.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appliance import logs, memory
from appliance.errors import ApplianceError, InputError, NoPages
from appliance.messages_vi import message_for
from appliance.settings import Settings, load_settings

log = logging.getLogger("appliance.cli")

EXIT_ERROR = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="appliance",
        description="Commune digitization appliance: capture, clean, Vietnamese OCR, searchable PDF/A-2b.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser(
        "digitize",
        help="image/PDF files -> one searchable PDF/A-2b (each image is a page, in order)",
        description="Run imaging -> OCR -> assembly on files. Each input image is one page, in the given "
        "order; an unsigned PDF contributes all its pages. A PDF that already carries digital "
        "signatures is kept byte for byte and its signatures are reported (it must be the only input).",
    )
    d.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_PDF")
    d.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.pdf")
    d.add_argument("--json", action="store_true", help="print one JSON object with pages, fields, text, timings")
    d.add_argument("--photo", action="store_true", help="treat images as camera photos (find and flatten the page)")
    d.add_argument("--workers", type=int, default=None, help="pages processed in parallel (default: settings)")
    d.add_argument("--digitizer", default=None, help="name of the officer, recorded in the metadata")

    s = sub.add_parser(
        "scan",
        help="scan from a SANE scanner into the same pipeline",
        description="Scan pages from a SANE device (flatbed page or ADF batch), keep the lossless originals, "
        "record the document in the database, then digitize it into a PDF/A-2b.",
    )
    s.add_argument("--device", default=None, help="SANE device name, e.g. test:0 (default: settings / first found)")
    s.add_argument("--list", action="store_true", help="list scanners and their options, then exit")
    s.add_argument("--resolution", type=int, default=None, help="dpi (default: settings, 300)")
    s.add_argument("--mode", default=None, help="colour mode as the device names it, e.g. Color, Gray")
    s.add_argument("--source", default=None, help="source as the device names it, or 'adf' / 'duplex'")
    s.add_argument(
        "--batch",
        action="store_true",
        help="take pages until the feeder is empty; QR separator sheets (text starting TACH) split it into documents",
    )
    s.add_argument("--dossier", default=None, metavar="CODE", help="the dossier the documents belong to")
    s.add_argument("-o", "--output", type=Path, default=None, metavar="OUT.pdf", help="also write the PDF here")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--digitizer", default=None, help="name of the officer, recorded in the metadata")

    r = sub.add_parser("resume", help="finish documents interrupted by a power cut or crash")
    r.add_argument("--json", action="store_true")

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"], help="upgrade: apply schema migrations (idempotent)")

    sub.add_parser("settings", help="print the effective settings as JSON (no secrets)")

    # Subcommands contributed by other parts register themselves: each sets `handler`.
    from appliance.sign import commands as sign_commands

    sign_commands.register(sub)
    from appliance.web import commands as web_commands

    web_commands.register(sub)
    from appliance.outbox import commands as outbox_commands

    outbox_commands.register(sub)
    from appliance import doctor

    doctor.register(sub)
    from appliance import units_commands

    units_commands.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    memory.limit_heap_growth()
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except Exception as err:  # noqa: BLE001 - a broken config file must give one clear line
        print(f"error [bad_config]: cannot read settings: {err}".replace("\n", " "), file=sys.stderr)
        return EXIT_USAGE
    # Services log at the configured level (JSON lines to journald); one-shot commands keep stderr
    # to their one line unless -v asks for progress.
    service = args.command in {"serve", "province"} or getattr(args, "outbox_action", None) == "run"
    logs.setup(
        level="INFO" if args.verbose else settings.log_level if service else "ERROR",
        fmt=settings.log_format if service or args.verbose else "text",
        stream=sys.stdout if service else sys.stderr,
    )
    try:
        return int(_dispatch(args, settings))
    except ApplianceError as err:
        log.warning("command failed", extra={"code": err.code}, exc_info=args.verbose)
        print(f"lỗi: {message_for(err)} [{err.code}: {err.detail}]", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: still one line for the person, the traceback in the log
        log.exception("unexpected failure in %s", args.command)
        detail = f"{type(err).__name__}: {err}".replace("\n", " ")[:300]
        print(f"lỗi: {message_for(err)} [internal_error: {detail}]", file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args, settings))
    if args.command == "digitize":
        return _digitize(args, settings)
    if args.command == "scan":
        return _scan(args, settings)
    if args.command == "resume":
        return _resume(args, settings)
    if args.command == "db":
        from appliance import db

        db.upgrade(db.make_engine(settings.db_url))
        print(f"database at {settings.db_url} is up to date")
        return 0
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    raise AssertionError(args.command)


# --- digitize ---------------------------------------------------------------------------------
def _options(settings: Settings, args: argparse.Namespace) -> Any:
    from appliance.pipeline import options_from

    return options_from(
        settings, photo=True if getattr(args, "photo", False) else None, workers=getattr(args, "workers", None)
    )


def _file_pages(paths: Sequence[Path]) -> Iterator[Any]:
    from appliance.capture import files

    for path in paths:
        yield from files.iter_file(path)


def _digitize(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import pipeline
    from appliance.capture import files
    from appliance.model import DocumentMeta
    from appliance.originals import write_atomic

    for path in args.inputs:
        if not path.is_file():
            from appliance.errors import UnreadableFile

            raise UnreadableFile(f"{path}: no such file")
    signed = [p for p in args.inputs if p.suffix.lower() == ".pdf" and files.inspect_pdf(p).signed]
    if signed:
        if len(args.inputs) != 1:
            raise InputError(f"{signed[0]} carries digital signatures: digitize it alone, it is kept byte for byte")
        return _keep_signed(signed[0], args)

    result = pipeline.digitize(
        _file_pages(args.inputs), _options(settings, args), DocumentMeta(digitizer=args.digitizer)
    )
    write_atomic(args.output, result.pdf)
    _report(result, args.output, args.json)
    return 0


def _keep_signed(path: Path, args: argparse.Namespace) -> int:
    from appliance.capture import files
    from appliance.originals import write_atomic

    data = path.read_bytes()
    reports = files.validate_signatures(path)
    write_atomic(args.output, data)
    info = files.inspect_pdf(path)
    out = {
        "output": str(args.output),
        "kept_byte_for_byte": True,
        "signed": True,
        "page_count": info.pages,
        "signatures": [_jsonable(asdict(r)) for r in reports],
        "bytes": len(data),
    }
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        ok = all(r.intact and r.valid for r in reports)
        print(
            f"{args.output}: signed PDF kept byte for byte; {len(reports)} signature(s), "
            f"{'all intact' if ok else 'NOT all intact'}"
        )
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _summary(result: Any, output: Path | None) -> dict[str, Any]:
    return {
        "output": str(output) if output else None,
        "bytes": len(result.pdf),
        "page_count": len(result.pages),
        "pages": [
            {
                "index": p.index,
                "label": p.label,
                "dpi": round(p.dpi, 1),
                "width": p.width,
                "height": p.height,
                "rotation": p.rotation,
                "skew": round(p.skew, 2),
                "flags": sorted(str(f) for f in p.flags),
                "colour": p.colour,
                "perspective": p.perspective,
                "mean_confidence": round(p.ocr.mean_conf, 1),
                "encoding": str(p.encoded.encoding),
                "encoded_bytes": p.encoded.size,
                "qr": [c.text for c in p.qr],
                "timings": {k: round(v, 3) for k, v in p.timings.items()},
            }
            for p in result.pages
        ],
        "fields": [
            {
                "name": f.name,
                "value": f.value,
                "confidence": round(f.confidence, 3),
                "source": f.source,
                "valid": f.valid,
                "problem": f.problem,
            }
            for f in result.fields
        ],
        "metadata": _jsonable(asdict(result.meta)),
        "text": result.text,
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
    }


def _report(result: Any, output: Path | None, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    summary: dict[str, Any] = _summary(result, output) | (extra or {})
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    print(
        f"{output}: {summary['page_count']} page(s), {summary['bytes'] // 1024} KB, {summary['timings']['total']:.1f} s"
    )
    for page in summary["pages"]:
        flags = ", ".join(page["flags"]) or "ok"
        print(
            f"  page {page['index'] + 1}: {page['encoding']}, rotated {page['rotation']}°, "
            f"skew {page['skew']}°, confidence {page['mean_confidence']}, {flags}"
        )
    for f in summary["fields"]:
        print(f"  {f['name']}: {f['value']}")


# --- scan -------------------------------------------------------------------------------------
def _scan(args: argparse.Namespace, settings: Settings) -> int:
    from appliance.capture import ScanRequest, find_source
    from appliance.capture.sane import SaneScanner

    scanner = SaneScanner(lock_timeout_s=settings.scanner.lock_timeout_s)
    if args.list:
        listing: list[dict[str, Any]] = [
            {"device": asdict(dev), "options": [_jsonable(asdict(o)) for o in scanner.options(dev.name)]}
            for dev in scanner.devices()
        ]
        if args.json:
            print(json.dumps(listing, ensure_ascii=False))
        else:
            for entry in listing:
                dev = entry["device"]
                print(f"{dev['name']}: {dev['vendor']} {dev['model']} ({dev['type']})")
        return 0

    device = args.device or settings.scanner.device
    if device is None:
        found = scanner.devices()
        if not found:
            from appliance.errors import NoScanner

            raise NoScanner("no SANE device found")
        device = found[0].name
    source = args.source or settings.scanner.source
    if source and source.lower() in {"adf", "duplex"}:
        options = scanner.options(device)
        source = find_source(options, duplex=source.lower() == "duplex") or source
    request = ScanRequest(
        device=device,
        resolution=args.resolution or settings.scanner.resolution,
        mode=args.mode or settings.scanner.mode,
        source=source,
        batch=args.batch,
    )
    from appliance import pipeline
    from appliance.workflow import Actor

    # the same capture path as the web: separator sheets split the batch into documents
    captured = pipeline.capture(
        scanner.scan(request),
        pipeline.storage(settings),
        source="scanner",
        actor=Actor("cli", args.digitizer or ""),
        dossier_code=args.dossier,
        split_prefixes=pipeline.SEPARATOR_PREFIXES if args.batch else (),
    )
    ids = captured.document_ids
    archived = []
    first: Any = None
    for doc_id in ids:
        result, pdf_path = pipeline.run_document(doc_id, settings, _options(settings, args))
        archived.append({"document_id": doc_id, "archived": str(pdf_path), "pages": len(result.pages)})
        first = first or (result, pdf_path)
    result, pdf_path = first
    if args.output:  # the first document (the only one unless separator sheets split the batch)
        from appliance.originals import write_atomic

        write_atomic(args.output, result.pdf)
    extra = {"document_id": ids[0], "archived": str(pdf_path), "documents": archived}
    _report(result, args.output or pdf_path, args.json, extra)
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    from appliance import pipeline

    done = pipeline.resume(settings, _options(settings, args))
    if args.json:
        print(json.dumps({"resumed": list(done.finished), "failed": [list(f) for f in done.failed]}))
    else:
        print(f"resumed {len(done.finished)} document(s)")
        for item, code in done.failed:
            sys.stderr.write(f"could not finish {item}: {code} (marked failed; the others went on)\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "NoPages"]
