"""Outbox transfer benchmark: goodput over a shaped link, link-cut resend, protocol overhead, receiver
throughput with 1 and 2 receiver processes, sender RSS on a big package.

    .venv/bin/python -m bench.outbox_bench [--link-mb 20] [--cut-mb 5] [--rss-mb 200] [--rx-boxes 8]
        [--skip link,cut,rx,rss]

Defaults take about 4 minutes: the 20 MB goodput run alone needs 160 s at 1 Mbit/s, so the link-cut run
(which measures bytes sent twice, not goodput) uses 5 MB.

Everything runs on loopback: a private mosquitto (TLS, ACL) and a throttling TCP proxy (tests/mqtt.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from appliance import db
from appliance.outbox import store
from appliance.outbox.sender import Sender, open_factory
from province.receiver import Receiver
from tests.mqtt import Broker, Running, ThrottleProxy, box_settings, make_pki, receiver_config, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _raw(d: Path, size: int, seed: int) -> tuple[Path, str]:
    import hashlib

    h = hashlib.sha256()
    path = d / f"raw{seed}.bin"
    with path.open("wb") as f:
        left = size
        block = os.urandom(1 << 20)
        i = 0
        while left > 0:
            chunk = (block[i % 251 :] + block[: i % 251])[: min(left, 1 << 20)]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return path, h.hexdigest()


def _queue(settings: object, items: list[tuple[Path, str]]) -> object:
    factory = open_factory(settings)  # type: ignore[arg-type]
    with db.transaction(factory) as s:
        for path, pid in items:
            store.enqueue(s, path=path, package_id=pid)
    return factory


def link(d: Path, pki: object, broker: Broker, size: int, cut: bool) -> dict[str, float]:
    """1 Mbit/s shaped link through the proxy; optionally one link cut at 40 %."""
    rate = 1_000_000 / 8
    proxy = ThrottleProxy(broker.port, rate_bps=rate)
    pkg = _raw(d, size, 1 if not cut else 2)
    settings = box_settings(d / f"box-link-{cut}", pki, proxy.port, response_timeout_s=20)  # type: ignore[arg-type]
    factory = _queue(settings, [pkg])
    rx = Running(Receiver(receiver_config(d / f"rx-link-{cut}", pki, broker.port, verify=False)))  # type: ignore[arg-type]
    sender = Sender(settings, factory)  # type: ignore[arg-type]
    t0 = time.monotonic()
    box = Running(sender, until_empty=True)
    if cut:
        wait_for(lambda: rx.obj.stats.bytes >= 0.4 * size, 600, "40 %")
        proxy.cut()
    box.thread.join(3600)
    elapsed = time.monotonic() - t0
    rx.stop()
    proxy.close()
    return {
        "package_mb": size / 1e6,
        "seconds": round(elapsed, 1),
        "goodput_of_link": round(size / elapsed / rate, 3),
        "wire_over_package": round(proxy.up_bytes / size, 4),
        "resent_bytes": sender.stats.resent_bytes,
        "receiver_bytes_twice": rx.obj.stats.bytes - size,
    }


def _box_env(pki: object, box_dir: Path, device: str, port: int) -> dict[str, str]:
    c = pki.clients[device]  # type: ignore[attr-defined]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({"APPLIANCE_DATA_DIR": str(box_dir), "APPLIANCE_DEVICE_ID": device, "APPLIANCE_LOG_LEVEL": "WARNING",
                "APPLIANCE_OUTBOX__PORT": str(port), "APPLIANCE_OUTBOX__CA_FILE": str(pki.ca.cert),  # type: ignore[attr-defined]
                "APPLIANCE_OUTBOX__CERT_FILE": str(c.cert), "APPLIANCE_OUTBOX__KEY_FILE": str(c.key),
                "APPLIANCE_OUTBOX__BACKOFF_BASE_S": "0.2", "APPLIANCE_OUTBOX__BACKOFF_MAX_S": "1"})  # fmt: skip
    return env


def receivers(
    d: Path, pki: object, broker: Broker, n_rx: int, n_boxes: int, per_box: int, size: int
) -> dict[str, float]:
    """`n_boxes` boxes (each its own `appliance outbox run` process) send `per_box` packages each at once;
    `n_rx` `province serve` processes share the subscription, the spool/store directory and the catalogue.
    Throughput is taken from the catalogue: packages stored between the first and the last commit."""
    from province import catalogue

    rx_dir = d / f"rx-{n_rx}"
    procs = []
    for i in range(n_rx):
        c = pki.clients[f"receiver-{i + 1}"]  # type: ignore[attr-defined]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "province",
                    "serve",
                    "--no-verify",
                    "--port",
                    str(broker.port),
                    "--name",
                    f"receiver-{i + 1}",
                    "--ca",
                    str(pki.ca.cert),
                    "--cert",
                    str(c.cert),  # type: ignore[attr-defined]
                    "--key",
                    str(c.key),
                    "--data-dir",
                    str(rx_dir),
                    "--dashboard-port",
                    "0",
                    "--no-telemetry",
                ],
                cwd=ROOT,
            )  # fmt: skip
        )
    time.sleep(3)  # both receivers subscribed
    envs = []
    for b in range(n_boxes):
        device = f"box-{b + 1:03d}"
        box_dir = d / f"box-{n_rx}-{device}"
        items = [_raw(d, size, 10_000 * n_rx + 100 * b + i) for i in range(per_box)]
        _queue(box_settings(box_dir, pki, broker.port, device=device), items)  # type: ignore[arg-type]
        envs.append(_box_env(pki, box_dir, device, broker.port))
    t0 = time.monotonic()
    boxes = [
        subprocess.Popen([sys.executable, "-m", "appliance", "outbox", "run", "--until-empty"], cwd=ROOT, env=env)
        for env in envs
    ]
    codes = [p.wait(3600) for p in boxes]
    wall = time.monotonic() - t0
    for p in procs:
        p.terminate()
        p.wait(20)
    factory = catalogue.open_catalogue(f"sqlite:///{rx_dir / 'catalogue.db'}")
    with factory() as s:
        rows = catalogue.list_packages(s)
    stamps = sorted(r.received_at.timestamp() for r in rows)
    n = len(rows)
    span = stamps[-1] - stamps[0] if n > 1 else float("nan")
    return {"receivers": n_rx, "boxes": n_boxes, "packages": n, "package_kb": size // 1000,
            "box_exit_codes_ok": all(c == 0 for c in codes), "wall_seconds": round(wall, 2),
            "packages_per_s": round((n - 1) / span, 2), "mb_per_s": round((n - 1) * size / 1e6 / span, 2)}  # fmt: skip


def rss(d: Path, pki: object, broker: Broker, size: int) -> dict[str, float]:
    """The sender as its own process (`appliance outbox run`) sending one big package: peak RSS."""
    pkg = _raw(d, size, 7)
    box_dir = d / "box-rss"
    settings = box_settings(box_dir, pki, broker.port)  # type: ignore[arg-type]
    _queue(settings, [pkg])
    rx = Running(Receiver(receiver_config(d / "rx-rss", pki, broker.port, verify=False, fsync_segments=False)))  # type: ignore[arg-type]
    c = pki.clients["box-001"]  # type: ignore[attr-defined]
    env = dict(os.environ)
    env.update({"APPLIANCE_DATA_DIR": str(box_dir), "APPLIANCE_DEVICE_ID": "box-001",
                "APPLIANCE_OUTBOX__PORT": str(broker.port), "APPLIANCE_OUTBOX__CA_FILE": str(pki.ca.cert),  # type: ignore[attr-defined]
                "APPLIANCE_OUTBOX__CERT_FILE": str(c.cert), "APPLIANCE_OUTBOX__KEY_FILE": str(c.key)})  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "outbox", "run", "--until-empty"], cwd=ROOT, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    rx.stop()
    return {"package_mb": size / 1e6, "peak_rss_mb": round(peak / 2**20, 1), "seconds": round(elapsed, 1),
            "exit": proc.returncode}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--link-mb", type=float, default=20.0, help="goodput run at 1 Mbit/s (20 MB: ~2 min 50 s)")
    ap.add_argument("--cut-mb", type=float, default=5.0, help="link-cut run at 1 Mbit/s")
    ap.add_argument("--rss-mb", type=float, default=200.0)
    ap.add_argument("--rx-boxes", type=int, default=8)
    ap.add_argument("--rx-per-box", type=int, default=6)
    ap.add_argument("--rx-size-kb", type=int, default=1000)
    ap.add_argument("--skip", default="", help="comma list of: link,cut,rx,rss")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pki = make_pki(d / "pki", tuple(f"box-{b + 1:03d}" for b in range(max(args.rx_boxes, 2))))
        broker = Broker(d / "broker", pki).start()
        try:
            if "link" not in skip:
                out["link_1mbit"] = link(d, pki, broker, int(args.link_mb * 1e6), cut=False)
            if "cut" not in skip:
                out["link_1mbit_one_cut"] = link(d, pki, broker, int(args.cut_mb * 1e6), cut=True)
            if "rx" not in skip:
                for n_rx in (1, 2):
                    out[f"receiver_{n_rx}"] = receivers(
                        d, pki, broker, n_rx, args.rx_boxes, args.rx_per_box, args.rx_size_kb * 1000
                    )
            if "rss" not in skip:
                out["sender_rss"] = rss(d, pki, broker, int(args.rss_mb * 1e6))
        finally:
            broker.kill()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
