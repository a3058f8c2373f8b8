"""`make run`: the whole loop on one machine, with development defaults.

Starts, under ``$APPLIANCE_DATA_DIR`` (default ./var), and stops together on Ctrl-C:
  - a development SoftHSM2 token with an officer and an organisation certificate (unless a real
    token is configured with APPLIANCE_SIGN__TOKEN_SERIAL), made once and reused;
  - a provincial device CA, a broker certificate and this box's client certificate (CN = device id);
  - a private mosquitto (TLS, client certificates, per-device ACLs, client ids bound to the certificates)
    on two loopback ports: transfer (outbox, receiver) and telemetry (health publisher, ingest);
  - the province receiver (`province serve`), trusting the development token's CA;
  - the box's outbox sender (`appliance outbox run`) and health publisher (`appliance telemetry run`);
  - the province's readiness dashboard (started by `province serve`, http://127.0.0.1:8090/), with a
    development provincial IT account (printed, a new password on every run);
  - the officers' web UI (`appliance serve --dev`), which prints the development accounts.
Development tooling only: a box in a commune gets its token, certificates and broker from Ansible.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioning import broker as broker_cfg  # noqa: E402
from provisioning.ca import Ca, issue, make_ca  # noqa: E402

DEVICE = os.environ.get("APPLIANCE_DEVICE_ID", "box-dev-01")
RECEIVER = "receiver-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_token(data: Path) -> dict[str, str]:
    """Environment for a development SoftHSM token, created on the first run."""
    if os.environ.get("APPLIANCE_SIGN__TOKEN_SERIAL"):
        return {}
    from tests.softhsm import make_token  # the same token the tests use

    directory = data / "softhsm"
    state = directory / "token.json"
    if not state.exists():
        token = make_token(directory, label="dev-token")
        state.write_text(json.dumps({"conf": str(token.conf), "serial": token.serial, "ca": str(token.ca.pem)}))
        print(f"development token created (serial {token.serial}, PIN 123456)")
    info = json.loads(state.read_text())
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    root = x509.load_pem_x509_certificate(Path(info["ca"]).read_bytes()).fingerprint(hashes.SHA256()).hex()
    return {
        "SOFTHSM2_CONF": info["conf"],
        "APPLIANCE_SIGN__TOKEN_SERIAL": info["serial"],
        "APPLIANCE_SIGN__TRUST_ROOTS": json.dumps([info["ca"]]),
        # the development CA is pinned like a real root (Circular 15/2025 checks before signing);
        # it has no CRL or OCSP: revocation is "unknown" and, under the default "warn", shown as such
        "APPLIANCE_SIGN__TRUSTED_ROOT_SHA256": json.dumps([root]),
        "DEV_TOKEN_CA": info["ca"],
    }


def pki(data: Path) -> tuple[Ca, Path]:
    directory = data / "pki"
    ca = Ca(directory / "ca.crt", directory / "ca.key")
    if not ca.cert.exists():
        ca = make_ca(directory, name="Development device CA")
        issue(ca, "broker", directory, server=True)
        for name in (DEVICE, RECEIVER):
            issue(ca, name, directory)
    return ca, directory


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # runs main's `finally`, which stops the services it started


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    data = Path(os.environ.get("APPLIANCE_DATA_DIR", ROOT / "var")).resolve()
    data.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data), "APPLIANCE_DEVICE_ID": DEVICE}
    env.update(dev_token(data))
    ca, certs = pki(data)

    port, telemetry_port = free_port(), free_port()
    files = broker_cfg.write_broker_config(
        data / "broker",
        port=port,
        telemetry_port=telemetry_port,
        ca=ca.cert,
        cert=certs / "broker.crt",
        key=certs / "broker.key",
        receivers=[RECEIVER],
        devices=[DEVICE],
        run_as_root=os.geteuid() == 0,
    )
    env.update(
        {
            "APPLIANCE_OUTBOX__HOST": "127.0.0.1",
            "APPLIANCE_OUTBOX__PORT": str(port),
            "APPLIANCE_OUTBOX__TELEMETRY_PORT": str(telemetry_port),
            "APPLIANCE_OUTBOX__CA_FILE": str(ca.cert),
            "APPLIANCE_OUTBOX__CERT_FILE": str(certs / f"{DEVICE}.crt"),
            "APPLIANCE_OUTBOX__KEY_FILE": str(certs / f"{DEVICE}.key"),
        }
    )
    py = sys.executable
    children: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str]) -> None:
        log = (data / f"{name}.log").open("ab")
        children.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        print(f"started {name} (log: {data / (name + '.log')})")

    start("mosquitto", ["mosquitto", "-c", str(files.conf)])
    time.sleep(0.5)
    receiver = [py, "-m", "province", "serve", "--port", str(port), "--telemetry-port", str(telemetry_port)]
    receiver += ["--name", RECEIVER]
    receiver += [
        "--ca",
        str(ca.cert),
        "--cert",
        str(certs / f"{RECEIVER}.crt"),
        "--key",
        str(certs / f"{RECEIVER}.key"),
    ]
    receiver += ["--data-dir", str(data / "province")]
    account = subprocess.run(
        [py, "-m", "province", "accounts", "dev", "--data-dir", str(data / "province")],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    dashboard_account = account.stdout.strip()
    if "DEV_TOKEN_CA" in env:
        receiver += ["--trust", env["DEV_TOKEN_CA"]]
    start("province", receiver)
    start("outbox", [py, "-m", "appliance", "outbox", "run"])
    start("telemetry", [py, "-m", "appliance", "telemetry", "run"])

    host = os.environ.get("APPLIANCE_WEB__HOST", "127.0.0.1")
    web_port = os.environ.get("APPLIANCE_WEB__PORT", "8080")
    print(f"broker on 127.0.0.1:{port} (telemetry {telemetry_port})")
    print(f"province catalogue: {py} -m province packages --data-dir {data / 'province'}")
    dashboard_port = os.environ.get("PROVINCE_DASHBOARD_PORT", "8090")
    print(f"province dashboard: http://127.0.0.1:{dashboard_port}/ ({dashboard_account})")
    web = subprocess.Popen(
        [py, "-m", "appliance", "serve", "--dev", "--host", host, "--port", web_port], env=env, cwd=ROOT
    )
    children.append(web)
    try:
        return web.wait()
    except KeyboardInterrupt:
        web.send_signal(signal.SIGINT)
        return web.wait()
    finally:  # Ctrl-C, SIGTERM (a service manager, `kill`) or the web UI ending: stop every service
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()


if __name__ == "__main__":
    sys.exit(main())
