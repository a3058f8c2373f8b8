"""A real CSC API v1 server on loopback for the remote-signing tests: `certomancer-csc-dummy` (the CSC test
server taken from pyHanko's own integration tests) serving a Certomancer PKI whose CA is the tests' CA
(tests.softhsm), so remotely made signatures verify with the same trust (pyHanko, pdfsig's NSS db).

The app runs in a thread of the test process (aiohttp), behind one middleware that counts the calls per
endpoint and can play the officer's phone: hold the approval (`credentials/authorize`) until released, or
answer it as rejected / expired the way a CSC provider does (HTTP 400 with an OAuth-style error).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.softhsm import OFFICER, CertSpec, TestCa, issue


@dataclass
class Phone:
    """What the officer does when the approval request arrives."""

    answer: str = "approve"  # approve | reject | expire
    hold: threading.Event = field(default_factory=threading.Event)  # set = answer now

    def __post_init__(self) -> None:
        self.hold.set()


@dataclass
class CscServer:
    url: str
    credential_id: str
    cert: x509.Certificate
    calls: Counter[str]
    phone: Phone
    expired_cert: x509.Certificate | None = None

    def count(self, endpoint: str) -> int:
        return self.calls[f"/csc/v1/{endpoint}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S+0000")


def certomancer_config(
    directory: Path, ca: TestCa, specs: dict[str, CertSpec]
) -> tuple[Any, dict[str, x509.Certificate]]:
    """A Certomancer config whose root is `ca` and whose end-entity certificates are issued by it (as files,
    so Certomancer serves exactly these), one RSA-2048 key each."""
    from certomancer.registry import CertomancerConfig

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "root.key.pem").write_bytes(_pem_key(ca.key))
    (directory / "root.cert.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    keys = {"root": {"path": "root.key.pem"}}
    entities: dict[str, Any] = {"root": {"common-name": "Test CA for the appliance"}}
    certs: dict[str, Any] = {
        "root": {
            "subject": "root",
            "issuer": "root",
            "validity": {
                "valid-from": _stamp(ca.cert.not_valid_before_utc),
                "valid-to": _stamp(ca.cert.not_valid_after_utc),
            },
            "certificate-file": "root.cert.pem",
            "extensions": [{"id": "basic_constraints", "critical": True, "value": {"ca": True}}],
        }
    }
    issued: dict[str, x509.Certificate] = {}
    for label, spec in specs.items():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = issue(ca, key.public_key(), spec)
        issued[label] = cert
        (directory / f"{label}.key.pem").write_bytes(_pem_key(key))
        (directory / f"{label}.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        keys[label] = {"path": f"{label}.key.pem"}
        entities[label] = {"common-name": spec.common_name}
        certs[label] = {
            "subject": label,
            "issuer": "root",
            "validity": {"valid-from": _stamp(cert.not_valid_before_utc), "valid-to": _stamp(cert.not_valid_after_utc)},
            "certificate-file": f"{label}.cert.pem",
        }
    config = {
        "keysets": {"box": {"path-prefix": str(directory), "keys": keys}},
        "pki-architectures": {
            "box": {"keyset": "box", "entity-defaults": {"country-name": "VN"}, "entities": entities, "certs": certs}
        },
    }
    return CertomancerConfig(config, key_search_dir=str(directory), config_search_dir=str(directory)), issued


@pytest.fixture
def csc_server(tmp_path: Path, shared_token: Any) -> Iterator[CscServer]:
    """A CSC server (SCAL 1: one SAD for the batch) with the officer's credential `box/officer`."""
    from aiohttp import web
    from csc_dummy.csc_dummy_server import CSCWithCertomancer, DummyServiceParams

    ca: TestCa = shared_token.ca
    expiring = CertSpec(cka_id="09", label="expiring", common_name=OFFICER.common_name, not_after_days=10)
    config, issued = certomancer_config(tmp_path / "csc-pki", ca, {"officer": OFFICER, "expiring": expiring})
    calls: Counter[str] = Counter()
    phone = Phone()
    app_holder = CSCWithCertomancer(
        config, service_params=DummyServiceParams(hash_pinning_required=False, multisign=50)
    )
    app_holder.register_routes()

    @web.middleware
    async def officer_phone(request: web.Request, handler: Any) -> web.StreamResponse:
        calls[request.path] += 1
        if request.path.endswith("credentials/authorize"):
            while not phone.hold.is_set():
                await asyncio.sleep(0.05)
            if phone.answer == "reject":
                return web.json_response(
                    {"error": "access_denied", "error_description": "The user rejected"}, status=400
                )
            if phone.answer == "expire":
                return web.json_response({"error": "expired_token", "error_description": "expired"}, status=400)
        response: web.StreamResponse = await handler(request)
        return response

    app_holder.app.middlewares.append(officer_phone)
    port = _free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app_holder.app)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield CscServer(f"http://127.0.0.1:{port}", "box/officer", issued["officer"], calls, phone, issued["expiring"])
    finally:
        phone.hold.set()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
