"""provisioning/firstboot.sh on a fresh Debian 12 root (the debootstrap tarball of the converge test), in
its own UTS namespace so the host's hostname is never touched: the box ends enrolment-ready, and a second
run changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import need
from tests.integration.test_fleet_converge import _bookworm_tar

SCRIPT = Path(__file__).resolve().parents[2] / "provisioning" / "firstboot.sh"
WATCHED = ("etc/hostname", "etc/hosts", "etc/passwd", "etc/group", "etc/ssh/sshd_config.d/50-appliance.conf",
           "etc/sudoers.d/90-appliance-provision", "etc/appliance/device-id", "boot/firmware/config.txt",
           "var/lib/appliance-firstboot/done", "home/provision/.ssh/authorized_keys")  # fmt: skip


def _digest(root: Path) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in WATCHED}


@pytest.mark.slow
def test_firstboot_makes_an_enrolment_ready_box_and_is_idempotent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    need("unshare")
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(_bookworm_tar())], check=True)
    boot = root / "boot" / "firmware"
    boot.mkdir(parents=True)
    (boot / "appliance-device-id").write_text("19999-01\n")
    (boot / "appliance-admin.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest provincial-it\n")
    (boot / "config.txt").write_text("[all]\n")
    shutil.copy(SCRIPT, boot / "appliance-firstboot.sh")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")  # minbase lacks sudo: first-boot installs it

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--uts", "chroot", str(root), "bash", "/boot/firmware/appliance-firstboot.sh"],
            capture_output=True, text=True,
        )  # fmt: skip

    first = run()
    assert first.returncode == 0, first.stderr
    assert "ready for enrolment" in first.stderr
    assert (root / "etc/hostname").read_text().strip() == "box-19999-01"
    assert "dtparam=watchdog=on" in (boot / "config.txt").read_text()
    assert "PasswordAuthentication no" in (root / "etc/ssh/sshd_config.d/50-appliance.conf").read_text()
    groups = (root / "etc/group").read_text().splitlines()
    for g in ("scanner", "plugdev", "video"):
        assert any(line.startswith(f"{g}:") and "appliance" in line.split(":")[3] for line in groups), g
    assert (root / "home/provision/.ssh/authorized_keys").stat().st_mode & 0o077 == 0
    before = _digest(root)

    second = run()
    assert second.returncode == 0, second.stderr
    assert "ready for enrolment" not in second.stderr
    assert _digest(root) == before

    (boot / "appliance-device-id").write_text("not-an-id\n")
    bad = run()
    assert bad.returncode != 0 and "must look like 19999-01" in bad.stderr
