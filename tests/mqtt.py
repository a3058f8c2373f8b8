"""Test fixtures for the MQTT parts: a private mosquitto on free loopback ports (never the system one on
1883; the transfer and the telemetry listener of provisioning.broker), TLS client certificates from a
throw-away CA, generated ACLs, a throttling TCP proxy, and helpers that run a box sender and province
receivers in threads.

The broker binds every client id to the certificate (CN on the transfer listener, `CN=...` on the
telemetry one), so a test that wants to watch topics next to a running box uses the `monitor` certificate,
never a box's own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioning import broker as broker_cfg
from provisioning.ca import Ca, Issued, issue, make_ca

DEVICES = ("box-001", "box-002", "box-003")  # box-003: only the clean-session telemetry test
RECEIVERS = ("receiver-1", "receiver-2")
MONITOR = "monitor"  # a test's own eyes: reads every device's and the province's topics, writes nothing
MONITOR_ACL = f"\nuser {MONITOR}\ntopic read devices/#\ntopic read province/#\n"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until cond() is truthy (a liveness bound, not a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")


@dataclass(frozen=True)
class Pki:
    ca: Ca
    server: Issued
    clients: dict[str, Issued]
    devices: tuple[str, ...] = DEVICES


def make_pki(directory: Path, devices: tuple[str, ...] = DEVICES) -> Pki:
    ca = make_ca(directory)
    server = issue(ca, "broker", directory, server=True)
    clients = {name: issue(ca, name, directory) for name in (*devices, *RECEIVERS, MONITOR)}
    return Pki(ca, server, clients, devices)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Broker:
    """A private mosquitto; kill / restart keep its ports and its persistence directory."""

    directory: Path
    pki: Pki
    port: int = field(default_factory=free_port)  # transfer: outbox senders, receivers
    telemetry_port: int = field(default_factory=free_port)  # health publishers, telemetry ingest
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        from tests.conftest import need

        need("mosquitto")
        files = broker_cfg.write_broker_config(
            self.directory,
            port=self.port,
            telemetry_port=self.telemetry_port,
            ca=self.pki.ca.cert,
            cert=self.pki.server.cert,
            key=self.pki.server.key,
            receivers=RECEIVERS,
            devices=self.pki.devices,
            run_as_root=os.geteuid() == 0,
        )
        files.acl.write_text(files.acl.read_text() + MONITOR_ACL)
        files.telemetry_acl.write_text(
            files.telemetry_acl.read_text() + MONITOR_ACL.replace(f"user {MONITOR}", f"user CN={MONITOR}")
        )
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(files.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            for port in (self.port, self.telemetry_port):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) != 0:
                        return False
            return True

        wait_for(listening, 10, "mosquitto to listen")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def log(self) -> str:
        p = self.directory / "broker.log"
        return p.read_text(errors="replace") if p.exists() else ""


@pytest.fixture(scope="session")
def broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the tests that do not kill it."""
    b = Broker(tmp_path_factory.mktemp("broker"), pki).start()
    yield b
    b.kill(signal.SIGTERM)


@pytest.fixture
def fresh_broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    """A broker of its own, for fault tests that kill and restart it."""
    b = Broker(tmp_path / "broker", pki).start()
    yield b
    b.kill()


# --- throttling TCP proxy on loopback ---------------------------------------------------------
class ThrottleProxy:
    """Listens on a free loopback port and forwards to `target`, pacing each direction to `rate_bps`
    bytes/s (0 = unlimited). `cut()` drops every open connection (a link cut); `down` refuses new ones.
    Counts the bytes carried upstream (client -> broker)."""

    def __init__(self, target_port: int, rate_bps: float = 0.0, chunk: int = 4096) -> None:
        self.target = target_port
        self.rate = rate_bps
        self.chunk = chunk
        self.port = free_port()
        self.up_bytes = 0
        self.down = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", self.port))
        self._srv.listen(16)
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        start = time.monotonic()
        sent = 0
        try:
            while True:
                data = src.recv(self.chunk)
                if not data:
                    break
                if self.rate > 0:
                    sent += len(data)
                    ahead = sent / self.rate - (time.monotonic() - start)
                    if ahead > 0:
                        time.sleep(ahead)
                    if ahead < -0.5:  # idle for a while: do not let a burst through later
                        start, sent = time.monotonic(), 0
                dst.sendall(data)
                if up:
                    with self._lock:
                        self.up_bytes += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._srv.close()
        self.cut()


# --- box and receivers in threads -------------------------------------------------------------
def box_settings(data_dir: Path, pki: Pki, port: int, device: str = "box-001", **outbox: Any) -> Any:
    from appliance.settings import load_settings

    client = pki.clients[device]
    o: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "ca_file": pki.ca.cert,
        "cert_file": client.cert,
        "key_file": client.key,
        "response_timeout_s": 5.0,
        "backoff_base_s": 0.2,
        "backoff_max_s": 1.0,
    }
    o.update(outbox)
    return load_settings(data_dir=data_dir, device_id=device, outbox=o)


def receiver_config(
    data_dir: Path, pki: Pki, port: int, name: str = "receiver-1", trust: tuple[Path, ...] = (), **kw: Any
) -> Any:
    from province.receiver import ReceiverConfig

    client = pki.clients[name]
    return ReceiverConfig(
        host="127.0.0.1",
        port=port,
        name=name,
        data_dir=data_dir,
        ca_file=pki.ca.cert,
        cert_file=client.cert,
        key_file=client.key,
        trust_roots=trust,
        **kw,
    )


class Running:
    """A Sender or Receiver running in a daemon thread until stop()."""

    def __init__(self, obj: Any, **run_kw: Any) -> None:
        self.obj = obj
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

        def target() -> None:
            try:
                obj.run(self.stop_event, **run_kw)
            except BaseException as err:  # noqa: BLE001 - reported by stop()
                self.error = err

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)
        if self.error is not None:
            raise self.error


# --- real signed packages (SoftHSM) ----------------------------------------------------------
@dataclass(frozen=True)
class Pkg:
    path: Path
    package_id: str
    size: int


def padded_pdf(path: Path, size: int, seed: int) -> Path:
    """A small PDF made ~`size` bytes by an incompressible stream hung off the catalogue."""
    import random

    import pikepdf

    from tests.softhsm import simple_pdf

    simple_pdf(path, text=f"Ho so {seed}")
    if size > 4000:
        with pikepdf.open(path, allow_overwriting_input=True) as pdf:
            blob = random.Random(seed).randbytes(size - 3000)
            pdf.Root.Padding = pdf.make_stream(blob)
            pdf.save(path)
    return path


def build_packages(directory: Path, token: Any, sizes: list[int], *, first_seed: int = 0) -> list[Pkg]:
    """Sign one PDF per size (one token login) and wrap each in its own ASiC-E package."""
    from appliance.sign.batch import SignJob, sign_batch
    from appliance.sign.package import PackageRequest, build_package
    from tests.softhsm import MODULE

    directory.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(token.conf)
    try:
        jobs = [
            SignJob(
                padded_pdf(directory / f"in{first_seed + i}.pdf", n, first_seed + i),
                directory / f"doc{first_seed + i}.pdf",
                "officer",
            )
            for i, n in enumerate(sizes)
        ]
        sign_batch(jobs, token.pin, module=MODULE, serial=token.serial)

        def one(i: int) -> Pkg:
            info = build_package(
                PackageRequest(
                    pdfs=(jobs[i].output,),
                    category="component",
                    dossier_code=f"000.00.19.H12-230412-{first_seed + i:04d}",
                    commune_code="19999" if i % 2 == 0 else "19888",
                    agency_code="000.00.19.H12",
                ),
                directory / f"pkg{first_seed + i}.asice",
                token.pin,
                module=MODULE,
                serial=token.serial,
            )
            return Pkg(info.path, info.package_id, info.bytes)

        return [one(i) for i in range(len(sizes))]  # SoftHSM's file store does not take parallel logins
    finally:
        if old is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = old


def queue_packages(settings: Any, pkgs: list[Pkg]) -> Any:
    from appliance import db
    from appliance.outbox import store
    from appliance.outbox.sender import open_factory

    factory = open_factory(settings)
    with db.transaction(factory) as s:
        for p in pkgs:
            store.enqueue(s, path=p.path, package_id=p.package_id)
    return factory


def outbox_rows(factory: Any) -> dict[str, Any]:
    from appliance import db
    from appliance.outbox import store

    with db.transaction(factory) as s:
        return {i.package_id: i for i in store.list_items(s, limit=10_000)}


def catalogue_rows(data_dir: Path) -> list[Any]:
    from province import catalogue

    factory = catalogue.open_catalogue(f"sqlite:///{data_dir / 'catalogue.db'}")
    with factory() as s:
        return catalogue.list_packages(s)
