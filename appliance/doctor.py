"""`appliance doctor [--json] [--lang en]` and `appliance telemetry run|once|report|show`.

The readiness rules themselves live in `appliance.readiness` (pure, shared with the province's ingest);
this module collects a reading, applies them and prints the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from appliance.readiness import LEVEL_RANK, LEVEL_WORD, Check, Thresholds, checks, verdict
from appliance.settings import Settings

__all__ = ["LEVEL_RANK", "LEVEL_WORD", "Check", "Thresholds", "checks", "register", "verdict"]


# --- commands -----------------------------------------------------------------------------------
def register(sub: Any) -> None:
    d = sub.add_parser(
        "doctor",
        help="readiness check of this box: scanner, camera, link to the province, certificates, token, disk, "
        "clock, outbox, fleet",
        description="The directive's equipment list, one item each: scanner, camera, link (broadband to the "
        "province: broker reachable, round trip, recent throughput, last delivery), organisation_certificate, "
        "officer_certificates (the roster: officers per verdict, naming whose certificate needs action), token, "
        "disk, clock, outbox, fleet; plus certificate, temperature, power and memory items. Every item is ok / "
        "warning / failing with the reason and what to do; one that cannot be read says so. Exit 0 when "
        "nothing is failing, 1 otherwise.",
    )
    d.add_argument("--json", action="store_true", help="one JSON object: verdict, items (with detail where known)")
    d.add_argument("--lang", choices=["vi", "en"], default="vi")
    d.add_argument("--no-tokens", action="store_true", help="skip the token reading")
    d.set_defaults(handler=_doctor)

    t = sub.add_parser("telemetry", help="health telemetry to the province over MQTT")
    t.add_argument(
        "telemetry_action",
        choices=["run", "once", "report", "show"],
        help="run: the service loop; "
        "once: one reading and exit; report TEXT: 'Báo sự cố'; show: print one reading as JSON",
    )
    t.add_argument("text", nargs="?", default="", help="for report: what is wrong")
    t.add_argument("--reporter", default="", help="for report: the officer's name")
    t.add_argument("--interval", type=float, default=60.0, help="seconds between readings (run)")
    t.set_defaults(handler=_telemetry)


def _collector(settings: Settings, *, tokens: bool = True) -> Any:
    from appliance.telemetry.collector import Collector

    return Collector(settings, with_tokens=tokens)


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    reading = _collector(settings, tokens=not args.no_tokens).collect()
    items = checks(reading, lang=args.lang)
    overall = verdict(items)
    if args.json:
        listed = [{k: v for k, v in asdict(c).items() if k != "detail" or v is not None} for c in items]
        out = {"device_id": reading.device_id, "verdict": overall, "items": listed}
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        words = LEVEL_WORD[args.lang]
        head = "Thiết bị" if args.lang == "vi" else "Box"
        sys.stdout.write(f"{head} {reading.device_id}: {words[overall]}\n")
        for c in sorted(items, key=lambda c: -LEVEL_RANK[c.level]):
            sys.stdout.write(f"  [{words[c.level]}] {c.reason}\n")
            if c.action and c.level != "ok":
                sys.stdout.write(f"      -> {c.action}\n")
    return 0 if overall != "failing" else 1


def _telemetry(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from appliance.telemetry.publisher import Publisher, PublisherOptions, buffer_for, report_incident

    if args.telemetry_action == "show":
        sys.stdout.write(_collector(settings).collect().model_dump_json(indent=2) + "\n")
        return 0
    if args.telemetry_action == "report":
        if not args.text.strip():
            sys.stderr.write("cần nội dung sự cố / a text is required\n")
            return 2
        inc = report_incident(
            settings, reporter=args.reporter or "?", text=args.text, snapshot=_collector(settings).collect()
        )
        sys.stdout.write(f"{inc.incident_id}\n")
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pub = Publisher(settings, _collector(settings), buffer_for(settings), PublisherOptions(interval_s=args.interval))
    once = args.telemetry_action == "once"
    if not once:
        from appliance.telemetry.publisher import run_service

        run_service(pub, stop)  # READY=1 + watchdog under systemd
    else:
        pub.run(stop, rounds=1, wait_connected_s=10.0)
    sys.stdout.write(json.dumps({"sent": pub.sent, "buffered": pub.buffered, "waiting": len(pub.buffer)}) + "\n")
    return 0
