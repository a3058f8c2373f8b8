"""A real converge of the `appliance` role on a fresh Debian 12 root (debootstrap, cached as a tarball),
through the community.general.chroot connection: first run installs, second run reports changed=0,
an upgrade switches `current`, a broken upgrade is rolled back by the health gate, and rollback.yml
puts the previous release back in `current`. Services are not started (no systemd as PID 1 here):
`appliance_manage_services=false`; the health gate runs the installed release's `appliance settings`.

Needs root (chroot), debootstrap (first run only, ~90 s + network) and ansible in the venv."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
CACHE = Path(os.environ.get("APPLIANCE_TEST_CACHE", "/tmp/appliance-test-cache"))
ROOT_TAR = CACHE / "bookworm-minbase.tar"
# dependency wheels, keyed by pyproject.toml so a changed dependency list rebuilds them
DEPS = CACHE / f"wheelhouse-deps-{hashlib.sha256((REPO / 'pyproject.toml').read_bytes()).hexdigest()[:12]}"
HOST = "19999-01"
INCLUDE = "python3,python3-venv,python3-apt,systemd,udev,ca-certificates"

pytestmark = pytest.mark.slow


def _mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm", text, re.M
        )
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def _bookworm_tar() -> Path:
    if ROOT_TAR.exists():
        return ROOT_TAR
    need("debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / "bookworm-build"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(build), _mirror()],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(["tar", "-C", str(build), "-cf", str(ROOT_TAR) + ".tmp", "."], check=True)
    Path(str(ROOT_TAR) + ".tmp").replace(ROOT_TAR)
    shutil.rmtree(build, ignore_errors=True)
    return ROOT_TAR


def _wheel(version: str, work: Path, out: Path, *, broken: bool = False) -> None:
    """The real appliance package built as `version` (broken: its CLI exits 3, so the health gate fails)."""
    src = work / f"src-{version}"
    shutil.copytree(REPO / "appliance", src / "appliance", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "README.md", src / "README.md")
    text = (REPO / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(re.sub(r'(?m)^version = "[^"]+"', f'version = "{version}"', text, count=1))
    if broken:
        cli = src / "appliance" / "cli.py"
        cli.write_text(cli.read_text() + "\n\ndef main(argv=None):  # noqa\n    raise SystemExit(3)\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    need("chroot")
    if shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("ansible-core is not installed in the venv")
    tar = _bookworm_tar()
    work = tmp_path_factory.mktemp("converge")
    root = work / "root"
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(tar)], check=True)
    if not DEPS.exists():  # dependency wheels, built once (the wheelhouse a Pi gets is built on arm64)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(DEPS) + ".tmp", str(REPO)], check=True,
            capture_output=True,
        )  # fmt: skip
        for w in Path(str(DEPS) + ".tmp").glob("appliance-*.whl"):
            w.unlink()
        Path(str(DEPS) + ".tmp").replace(DEPS)
    wheels = work / "wheelhouse"
    wheels.mkdir()
    for w in DEPS.glob("*.whl"):
        os.link(w, wheels / w.name)
    for version in ("0.1.0", "0.2.0"):
        _wheel(version, work, wheels)
    _wheel("0.3.0", work, wheels, broken=True)
    inventory = {
        "all": {
            "children": {
                "appliances": {
                    "children": {
                        "province_44": {
                            "children": {
                                "commune_19999": {
                                    "vars": {"commune_code": "19999", "commune_name": "Xã Mẫu"},
                                    "hosts": {
                                        HOST: {
                                            "ansible_connection": "community.general.chroot",
                                            "ansible_host": str(root),
                                            "ansible_python_interpreter": "/usr/bin/python3",
                                            "device_id": HOST,
                                        }
                                    },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (work / "vars.yml").write_text(
        yaml.safe_dump(
            {
                "appliance_wheelhouse": str(wheels),
                "fleet_build_dir": str(work / "build"),
                "appliance_apt_update": False,
                "appliance_apt_packages": ["python3", "python3-venv"],
                "appliance_manage_services": False,
            }
        )
    )
    return {"root": root, "work": work}


def _play(box: dict[str, Path], playbook: str, *extra: str, ok: bool = True) -> dict[str, int]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(box["work"] / "ansible-tmp"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    res = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(box["work"] / "inventory.yml"),
         "-e", f"@{box['work'] / 'vars.yml'}", *extra, str(ANSIBLE / playbook)],
        cwd=ANSIBLE, capture_output=True, text=True, env=env,
    )  # fmt: skip
    (box["work"] / f"{playbook}.log").write_text(res.stdout + res.stderr)
    m = re.search(
        rf"^{re.escape(HOST)}\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", res.stdout, re.M
    )
    assert m, res.stdout[-3000:] + res.stderr[-2000:]
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))
    assert (res.returncode == 0) is ok, res.stdout[-4000:]
    return recap


def _installed_version(box: dict[str, Path]) -> str:
    res = subprocess.run(
        ["chroot", str(box["root"]), "/opt/appliance/current/bin/python", "-c",
         "import importlib.metadata as m; print(m.version('appliance'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return res.stdout.strip()


def _link(box: dict[str, Path], name: str) -> str:
    return str((box["root"] / "opt" / "appliance" / name).readlink())


def test_converge_is_idempotent_and_upgrade_rollback_keep_current_right(box: dict[str, Path]) -> None:
    first = _play(box, "site.yml")
    assert first["changed"] > 0 and first["failed"] == 0
    assert _link(box, "current") == "/opt/appliance/releases/0.1.0"
    assert _installed_version(box) == "0.1.0"
    root = box["root"]
    conf = (root / "etc/appliance/appliance.toml").read_text()
    assert 'device_id = "19999-01"' in conf and 'commune_code = "19999"' in conf
    assert (root / "etc/systemd/system/multi-user.target.wants/appliance-web.service").is_symlink()
    assert (root / "etc/udev/rules.d/60-appliance-scanner.rules").exists()
    assert (root / "etc/appliance/tls/web.key").stat().st_mode & 0o077 == 0o040  # group appliance reads it
    assert (root / "etc/polkit-1/rules.d/50-appliance-pcscd.rules").exists()
    assert "Storage=volatile" in (root / "etc/systemd/journald.conf.d/appliance.conf").read_text()
    groups = (root / "etc/group").read_text()
    assert re.search(r"^scanner:x:\d+:.*appliance", groups, re.M) and re.search(
        r"^plugdev:x:\d+:.*appliance", groups, re.M
    )

    second = _play(box, "site.yml")
    assert second["changed"] == 0 and second["failed"] == 0, "second converge must be idempotent"

    # the installed units verify against the box's own root (real paths, real systemd unit tree)
    res = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}",
         "appliance-web.service", "appliance-outbox.service", "appliance-telemetry.service"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0 and "appliance" not in res.stderr, res.stderr

    up = _play(box, "upgrade.yml", "-e", "appliance_version=0.2.0")
    assert up["changed"] > 0
    assert _link(box, "current") == "/opt/appliance/releases/0.2.0"
    assert _link(box, "previous") == "/opt/appliance/releases/0.1.0"
    assert _installed_version(box) == "0.2.0"

    broken = _play(box, "upgrade.yml", "-e", "appliance_version=0.3.0", ok=False)
    assert broken["failed"] == 1
    assert _link(box, "current") == "/opt/appliance/releases/0.2.0", "the health gate must switch back"
    assert _installed_version(box) == "0.2.0"
    failure = (root / "var/lib/appliance/fleet-last-failure.json").read_text()
    assert '"failed_version": "0.3.0"' in failure

    back = _play(box, "rollback.yml")
    assert back["failed"] == 0
    assert _link(box, "current") == "/opt/appliance/releases/0.1.0"
    assert _link(box, "previous") == "/opt/appliance/releases/0.2.0"
    assert _installed_version(box) == "0.1.0"
    assert '"result": "ok"' in (root / "var/lib/appliance/fleet-last-run.json").read_text()
