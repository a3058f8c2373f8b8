"""The officers' page over TLS with the box's certificate from the provincial CA: a client that trusts only
the province CA connects to a real `appliance serve` (by the box's IP SAN, and by its mDNS name), every
answer carries HSTS; plain HTTP beyond loopback is refused unless explicitly asked for."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from appliance.settings import load_settings
from appliance.web.commands import plain_http_refusal
from provisioning.cli import main as provisioning
from tests.mqtt import free_port

REPO = Path(__file__).resolve().parents[2]
BOX = "19999-01"


def _cli(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert provisioning(argv) == 0


@dataclass(frozen=True)
class BoxTls:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def box_tls(tmp_path_factory: pytest.TempPathFactory) -> BoxTls:
    """The enrolment path: CA and registry on the controller, key + CSR on the box, web-cert signs it."""
    root = tmp_path_factory.mktemp("tls")
    base = ["--ca-dir", str(root / "ca")]
    _cli(["init-ca", *base])
    _cli(["registry", "add", *base, "--commune-code", BOX[:5], "--commune-name", "Xã Một", "--province-code", "44"])
    box = root / "box"
    _cli(["csr", *base, "--device-id", BOX, "--web", "--key", str(box / "web.key"), "--csr", str(box / "web.csr")])
    _cli(["web-cert", *base, "--device-id", BOX, "--csr", str(box / "web.csr"), "--out", str(box), "--ip", "127.0.0.1"])
    return BoxTls(root / "ca" / "ca.crt", box / f"{BOX}-web.crt", box / "web.key")


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "appliance.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    return env | {
        "APPLIANCE_CONFIG": str(data_dir / "appliance.toml"),  # never the system's file
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_LOG_FORMAT": "text",
        **extra,
    }


@pytest.fixture
def tls_server(box_tls: BoxTls, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    env = _env(
        tmp_path / "data", APPLIANCE_WEB__HTTPS_CERT=str(box_tls.cert), APPLIANCE_WEB__HTTPS_KEY=str(box_tls.key)
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", "--no-scanner", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"not listening:\n{log.read_text()}"
            time.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_a_client_trusting_only_the_province_ca_connects_and_gets_hsts(box_tls: BoxTls, tls_server: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # hostname checking and CERT_REQUIRED, no system roots
    ctx.load_verify_locations(cafile=str(box_tls.ca))
    # by the box's IP (SAN 127.0.0.1 here, the LAN address on a box)
    r = httpx.get(f"https://127.0.0.1:{tls_server}/login", verify=ctx, timeout=10)
    assert r.status_code == 200
    assert r.headers["strict-transport-security"] == "max-age=31536000"
    assert "Đăng nhập" in r.text or "đăng nhập" in r.text.lower()
    # by its names: the TLS handshake checks box-19999-01.local and box-19999-01 against the SANs
    for name in (f"box-{BOX}.local", f"box-{BOX}"):
        with (
            socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.getpeercert() is not None
    # a name the certificate does not carry is refused by the same client
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="box-19888-01.local"),
    ):
        pass
    # and a client trusting only the system's roots does not trust the box (a private CA, installed by IT)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{tls_server}/login", verify=ssl.create_default_context(), timeout=10)


def test_plain_http_beyond_loopback_is_refused_without_the_flag(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    cmd = [sys.executable, "-m", "appliance", "serve", "--no-scanner", "--host", "0.0.0.0", "--port", str(free_port())]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing plain HTTP on 0.0.0.0"), done.stderr
    # the rule itself: loopback is fine, another address needs --insecure-http or the setting
    settings = load_settings(data_dir=tmp_path / "data")
    for host in ("127.0.0.1", "::1", "localhost"):
        assert plain_http_refusal(settings, host) is None
    assert plain_http_refusal(settings, "192.168.1.20") is not None
    assert plain_http_refusal(settings, "192.168.1.20", insecure_http=True) is None
    settings.web.insecure_http = True
    assert plain_http_refusal(settings, "0.0.0.0") is None
