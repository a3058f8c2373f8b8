"""The Ansible tree is clean for `ansible-playbook --syntax-check` and `ansible-lint` (production profile),
and the rolling-upgrade play keeps the batch shape and failure budget the fleet depends on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent
PLAYBOOKS = ("site.yml", "upgrade.yml", "rollback.yml", "rotate-certs.yml", "enrol.yml", "crl.yml", "local.yml")


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed in the venv")
        pytest.skip(f"{name} is not installed in the venv")
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{BIN}:{os.environ['PATH']}"}  # fmt: skip


def test_syntax_check() -> None:
    res = subprocess.run(
        [str(_tool("ansible-playbook")), "--syntax-check", *PLAYBOOKS],
        cwd=ANSIBLE, capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("playbook: ") == len(PLAYBOOKS)


@pytest.mark.slow
def test_ansible_lint_production_profile() -> None:
    res = subprocess.run(
        [str(_tool("ansible-lint")), "--offline", "--profile", "production", "--nocolor"],
        cwd=ANSIBLE, capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "0 failure(s), 0 warning(s)" in res.stdout + res.stderr


def test_upgrade_is_rolling_health_gated_and_skips_offline_boxes() -> None:
    plays = yaml.safe_load((ANSIBLE / "upgrade.yml").read_text())
    assert plays[0]["ansible.builtin.import_playbook"] == "reachable.yml"
    rolling = plays[1]
    assert rolling["serial"] == [1, "10%", "25%", "100%"]
    assert 0 < rolling["max_fail_percentage"] < 50
    assert rolling["hosts"] == "appliances:&online"
    reach = yaml.safe_load((ANSIBLE / "reachable.yml").read_text())[0]["tasks"]
    assert reach[0]["ignore_unreachable"] is True
    assert any(t.get("ansible.builtin.meta") == "clear_host_errors" for t in reach)
    release = yaml.safe_load((ANSIBLE / "roles/appliance/tasks/release.yml").read_text())
    gate = next(t for t in release if "rescue" in t)
    rescue_names = " ".join(t["name"] for t in gate["rescue"])
    assert "back" in rescue_names and any("ansible.builtin.fail" in t for t in gate["rescue"])


def test_only_the_first_receiver_serves_the_dashboard() -> None:
    import jinja2

    role = ANSIBLE / "roles" / "province"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    template = jinja2.Template((role / "templates" / "receiver.env.j2").read_text())
    ctx = {**defaults, "ansible_managed": "x", "province_receivers": ["receiver-1", "receiver-2"]}
    env = {
        name: dict(ln.split("=", 1) for ln in template.render(ctx, item=name).splitlines() if "=" in ln)
        for name in ctx["province_receivers"]
    }
    assert env["receiver-1"]["PROVINCE_DASHBOARD_PORT"] == "8090"
    assert env["receiver-1"]["PROVINCE_DASHBOARD_HOST"] == "127.0.0.1"
    assert env["receiver-2"]["PROVINCE_DASHBOARD_PORT"] == "0"
    assert "PROVINCE_ALERT_WEBHOOK" not in env["receiver-1"]
