"""rotate-certs.yml run for real against one box: the provincial CA and registry on the controller, the
box's TLS directory in a temporary folder (local connection), `openssl` making the new keys on the "box".

After the new web (LAN HTTPS) certificate is installed and the web UI is up on it, the certificate it
replaced is revoked as superseded and listed in the CRL; when the web UI does not come up, the old pair
is put back and nothing is revoked. The device (MQTT) certificate goes the same way.

Two things cannot be real here: systemd is not PID 1 (a named fake `systemctl` answers for the two
services and logs what it was asked), and the box's `appliance` group does not exist on the test host
(the run happens in a private mount namespace whose /etc/group has it). Needs root and `unshare`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from provisioning import registry, revoke
from provisioning.cli import main as provisioning
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
BIN = Path(sys.executable).parent
BOX = "19999-01"

pytestmark = pytest.mark.slow


def run(argv: list[str]) -> dict[str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert provisioning(argv) == 0, argv
    result: dict[str, str] = json.loads(out.getvalue())
    return result


def fake_systemctl(bin_dir: Path, log: Path, failing: Path) -> None:
    """A `systemctl` for a host without systemd: every unit restarts and is active, except the units
    listed in `failing`, which are reported failed; each call is appended to `log`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        f"""#!/bin/sh
echo "$*" >> {log}
unit=$(printf '%s' "$2" | tr -d "'")
state=active
grep -qx "$unit" {failing} 2>/dev/null && state=failed
case "$1" in
  show) printf 'Id=%s\\nLoadState=loaded\\nActiveState=%s\\nSubState=running\\nUnitFileState=enabled\\n' \
"$unit" "$state" ;;
  is-active) echo "$state" ;;
  is-enabled) echo enabled ;;
esac
exit 0
"""
    )
    script.chmod(0o755)


@dataclass
class Fleet:
    ca_dir: Path
    tls: Path
    work: Path
    old_device: str
    old_web: str
    systemctl_log: Path
    failing: Path

    def serial_on_box(self, name: str) -> str:
        cert = x509.load_pem_x509_certificate((self.tls / name).read_bytes())
        return registry.serial_hex(cert.serial_number)

    def revoked(self) -> dict[str, str | None]:
        with registry.open_registry(self.ca_dir / "registry.db") as con:
            out: dict[str, str | None] = {c.serial: c.reason for c in registry.certificates(con)}
            out.update({c.serial: c.reason for c in registry.service_certificates(con, kind="web")})
        return out

    def rotate(self) -> subprocess.CompletedProcess[str]:
        """ansible-playbook rotate-certs.yml, in a mount namespace whose /etc/group has `appliance`."""
        group = self.work / "group"
        group.write_text(Path("/etc/group").read_text() + "appliance:x:64999:\n")
        argv = [
            str(BIN / "ansible-playbook"),
            "-i", str(self.work / "inventory.yml"),
            "-e", f"tls_dir={self.tls} service_check_retries=2 service_check_delay=0",
            "rotate-certs.yml",
        ]  # fmt: skip
        shell = 'mount --bind "$0" /etc/group && exec "$@"'
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
            "PATH": f"{self.work / 'bin'}:{BIN}:{os.environ['PATH']}",
        }
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", shell, str(group), *argv],
            cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    if os.geteuid() != 0:
        pytest.skip("needs root (a private mount namespace for the box's `appliance` group)")
    need("unshare", "openssl")
    if not (BIN / "ansible-playbook").exists():
        pytest.skip("ansible is not installed in the venv")
    ca_dir, tls, work = tmp_path / "ca", tmp_path / "box" / "tls", tmp_path / "controller"
    base = ["--ca-dir", str(ca_dir), "--json"]
    assert provisioning(["init-ca", "--ca-dir", str(ca_dir)]) == 0
    assert provisioning(["registry", "add", *base, "--commune-code", BOX[:5], "--commune-name", "Xã Một",
                         "--province-code", "44"]) == 0  # fmt: skip
    # the box as enrolment left it: a device certificate due for renewal and a web certificate
    files = ["--key", str(tls / "device.key"), "--csr", str(tls / "device.csr")]
    assert provisioning(["csr", *base, "--device-id", BOX, *files]) == 0
    device = run(["issue", *base, "--device-id", BOX, "--csr", str(tls / "device.csr"), "--out", str(work / "issued"),
                  "--days", "20"])  # fmt: skip
    (tls / "device.crt").write_bytes(Path(device["cert"]).read_bytes())
    files = ["--key", str(tls / "web.key"), "--csr", str(tls / "web.csr")]
    assert provisioning(["csr", *base, "--device-id", BOX, "--web", *files]) == 0
    web = run(["web-cert", *base, "--device-id", BOX, "--csr", str(tls / "web.csr"), "--out", str(work / "web")])
    (tls / "web.crt").write_bytes(Path(web["cert"]).read_bytes())

    # the controller: `python -m provisioning` runs from fleet_repo_dir, crl.yml writes the inventory there
    (work / "repo" / "ansible" / "inventory").mkdir(parents=True)
    (work / "repo" / "provisioning").symlink_to(REPO / "provisioning")
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "device_id": BOX,
            "device_cert_serial": device["serial"]}  # fmt: skip
    fleet_vars = {"fleet_ca_dir": str(ca_dir), "fleet_repo_dir": str(work / "repo"), "fleet_python": sys.executable,
                  "fleet_crl_file": str(ca_dir / "crl.pem"), "ansible_become": False}  # fmt: skip
    inventory = {"all": {"vars": fleet_vars, "children": {"appliances": {"hosts": {BOX: host}}}}}
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "ansible-tmp").mkdir()
    log, failing = work / "systemctl.log", work / "failing-units"
    fake_systemctl(work / "bin", log, failing)
    return Fleet(ca_dir, tls, work, device["serial"], web["serial"], log, failing)


def test_rotation_revokes_the_replaced_web_certificate_once_the_new_one_serves(fleet: Fleet) -> None:
    old_web_pem = (fleet.tls / "web.crt").read_bytes()
    res = fleet.rotate()
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]

    new_web, new_device = fleet.serial_on_box("web.crt"), fleet.serial_on_box("device.crt")
    assert new_web != fleet.old_web and new_device != fleet.old_device
    assert (fleet.tls / "web.crt").read_bytes() != old_web_pem
    with registry.open_registry(fleet.ca_dir / "registry.db") as con:
        assert registry.service_certificate(con, new_web) is not None  # the box serves what the CA recorded
    reasons = fleet.revoked()
    assert reasons[fleet.old_web] == "superseded"
    assert reasons[new_web] is None
    assert reasons[fleet.old_device] == "superseded" and reasons[new_device] is None

    crl = revoke.revoked_serials((fleet.ca_dir / "crl.pem").read_bytes())
    assert crl == {fleet.old_web: "superseded", fleet.old_device: "superseded"}
    calls = fleet.systemctl_log.read_text().splitlines()
    assert "restart appliance-web.service" in calls

    # a second run (nothing due any more) revokes nothing new and leaves the box as it is
    res = fleet.rotate()
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert fleet.serial_on_box("web.crt") == new_web
    assert fleet.revoked()[new_web] is None


def test_web_ui_that_does_not_come_up_gets_its_old_certificate_back_and_nothing_is_revoked(fleet: Fleet) -> None:
    old_pem, old_key = (fleet.tls / "web.crt").read_bytes(), (fleet.tls / "web.key").read_bytes()
    fleet.failing.write_text("appliance-web.service\n")
    res = fleet.rotate()
    assert res.returncode != 0
    assert "the renewed web certificate did not work" in res.stdout

    assert (fleet.tls / "web.crt").read_bytes() == old_pem and (fleet.tls / "web.key").read_bytes() == old_key
    reasons = fleet.revoked()
    assert reasons[fleet.old_web] is None  # the certificate still in use stays valid
    calls = fleet.systemctl_log.read_text().splitlines()
    starts = [c for c in calls if c in ("start appliance-web.service", "restart appliance-web.service")]
    assert len(starts) == 2  # on the new pair, then back on the old one
