"""The ansible-pull path refuses unsigned and wrongly signed commits and applies one signed by the province.

Real gpg (throwaway GNUPGHOMEs), a local bare git repository as the "provincial mirror" (file://, no
network) and real `ansible-pull` run with the exact command line of systemd/appliance-pull.service; the
box's keyring is filled the way the role's handler does it (`gpg --import` of appliance_pull_gpg_keys)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PULL = Path(sys.executable).parent / "ansible-pull"
DEVICE = "19999-01"

pytestmark = pytest.mark.slow


def _gpg(home: Path, *args: str, stdin: str | None = None) -> str:
    res = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", "", *args],
        input=stdin, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return res.stdout


def _keyring(home: Path, uid: str) -> str:
    home.mkdir(mode=0o700)
    _gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
    listing = _gpg(home, "--with-colons", "--list-secret-keys")
    return next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[dict[str, Path | str]]:
    need("gpg", "git", "gpg-agent", "gpgconf")
    if not ANSIBLE_PULL.exists():
        pytest.skip("ansible-pull not installed in the venv")
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")  # short paths: gpg-agent socket limit
    import tempfile

    with tempfile.TemporaryDirectory(dir=base, prefix="pull-") as short:
        province, rogue, box = Path(short, "p"), Path(short, "r"), Path(short, "b")
        fp_province = _keyring(province, "Province IT <it@province.invalid>")
        fp_rogue = _keyring(rogue, "Someone <x@invalid>")
        box.mkdir(mode=0o700)
        keys = tmp_path / "keys.asc"  # what the role writes from appliance_pull_gpg_keys
        keys.write_text(_gpg(province, "--armor", "--export", fp_province))
        subprocess.run(
            ["gpg", "--batch", "--homedir", str(box), "--import", str(keys)], capture_output=True, check=True
        )
        try:
            yield {"province": province, "rogue": rogue, "box": box, "fp_province": fp_province, "fp_rogue": fp_rogue}
        finally:
            for home in (province, rogue, box):
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=base | (env or {})
    ).stdout


def _commit(work: Path, marker: Path, value: str, *, key: str | None, home: Path | None) -> None:
    playbook = f"""---
- name: Test configuration
  hosts: all
  gather_facts: false
  tasks:
    - name: Marker
      ansible.builtin.copy:
        content: "{value}/{{{{ box }}}}"
        dest: "{marker}"
        mode: "0644"
"""
    (work / "ansible" / "local.yml").write_text(playbook)
    _git(work, "add", "-A")
    args = ["-c", "user.name=Province IT", "-c", "user.email=it@province.invalid", "commit", "-q", "-m", value]
    if key is not None:
        args = ["-c", f"user.signingkey={key}", *args, f"-S{key}"]
    _git(work, *args, env={"GNUPGHOME": str(home)} if home else None)
    _git(work, "push", "-q", "origin", "HEAD:main")


def _unit_command(url: str, checkout: Path) -> list[str]:
    """ExecStart of systemd/appliance-pull.service with the box's paths replaced by the test's."""
    text = (ROOT / "systemd" / "appliance-pull.service").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    cmd = line.removeprefix("ExecStart=")
    cmd = cmd.replace("/opt/appliance-pull/bin/ansible-pull", str(ANSIBLE_PULL))
    cmd = cmd.replace("${PULL_URL}", url).replace("${PULL_BRANCH}", "main").replace("${DEVICE_ID}", DEVICE)
    cmd = cmd.replace("/var/lib/appliance-pull/checkout", str(checkout))
    assert "${" not in cmd and "--verify-commit" in cmd and "--inventory localhost," in cmd
    return shlex.split(cmd)


def test_pull_applies_only_commits_signed_by_the_province(homes: dict[str, Path | str], tmp_path: Path) -> None:
    bare, work, checkout, marker = tmp_path / "mirror.git", tmp_path / "work", tmp_path / "checkout", tmp_path / "m"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    _git(work, "remote", "add", "origin", str(bare))
    inventory = work / "ansible" / "inventory"  # the layout of the real repository: registry + host_vars
    (inventory / "host_vars").mkdir(parents=True)
    (inventory / "registry.yml").write_text(
        f"all:\n  children:\n    appliances:\n      hosts:\n        '{DEVICE}':\n          ansible_host: 192.0.2.10\n"
    )
    (inventory / "host_vars" / f"{DEVICE}.yml").write_text(f"ansible_python_interpreter: {sys.executable}\nbox: here\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")},
        "GNUPGHOME": str(homes["box"]),  # Environment=GNUPGHOME=/etc/appliance/pull/gnupg
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "atmp"),
        "ANSIBLE_HOME": str(tmp_path / "ahome"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,  # the unit sets /usr/bin/python3
    }
    cmd = _unit_command(f"file://{bare}", checkout)

    def pull() -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    province, rogue = Path(homes["province"]), Path(homes["rogue"])
    _commit(work, marker, "signed-1", key=str(homes["fp_province"]), home=province)
    done = pull()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert marker.read_text() == "signed-1/here"

    _commit(work, marker, "unsigned", key=None, home=None)
    done = pull()
    assert done.returncode != 0
    assert "Failed to verify GPG signature" in done.stdout + done.stderr, done.stdout[-2000:]
    assert marker.read_text() == "signed-1/here"  # the playbook of the unsigned commit never ran

    _commit(work, marker, "rogue", key=str(homes["fp_rogue"]), home=rogue)
    done = pull()
    assert done.returncode != 0
    assert "Failed to verify GPG signature" in done.stdout + done.stderr, done.stdout[-2000:]
    assert marker.read_text() == "signed-1/here"

    _commit(work, marker, "signed-2", key=str(homes["fp_province"]), home=province)
    done = pull()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert marker.read_text() == "signed-2/here"
