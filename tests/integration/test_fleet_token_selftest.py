"""`appliance token selftest`: one PIN entry, sign a throwaway PDF with a real SoftHSM2 token, verify it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.sign.token import PinState
from tests.softhsm import MODULE, SPY, SoftToken

pytestmark = pytest.mark.slow


def _run(*args: str, pin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "token", "selftest", *args],
        input=pin + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )


def _env(tok: SoftToken, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in tok.env.items() if not k.startswith("APPLIANCE_")}
    return env | {"APPLIANCE_DATA_DIR": str(tmp_path / "data")} | extra


def test_selftest_signs_and_verifies_against_the_tokens_ca(hsm: SoftToken, tmp_path: Path) -> None:
    done = _run(
        "--module", str(MODULE), "--token", hsm.serial, "--trust", str(hsm.ca.pem), "--json",
        pin=hsm.pin, env=_env(hsm, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] is True and out["code"] == "ok" and out["trusted"] is True
    assert out["problems"] == [] and out["role"] == "officer"
    assert out["signer"]  # the officer certificate's subject
    assert "token dùng được" in out["message"]
    assert hsm.pin not in done.stdout + done.stderr


def test_selftest_organisation_key_in_vietnamese_without_trust_roots(hsm: SoftToken, tmp_path: Path) -> None:
    done = _run("--module", str(MODULE), "--token", hsm.serial, "--role", "organisation",
                pin=hsm.pin, env=_env(hsm, tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ĐẠT" in done.stdout and "KHÔNG ĐẠT" not in done.stdout
    assert "chưa kiểm tra chuỗi chứng thư" in done.stdout


def test_wrong_pin_is_one_attempt_and_a_clear_message(
    fresh_hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.sign.batch import token_status

    if not SPY.exists():
        pytest.skip("OpenSC pkcs11-spy missing")
    spy_log = tmp_path / "spy.log"
    env = _env(fresh_hsm, tmp_path, PKCS11SPY=str(MODULE), PKCS11SPY_OUTPUT=str(spy_log))
    done = _run("--module", str(SPY), "--token", fresh_hsm.serial, pin="999999", env=env)
    assert done.returncode == 1
    assert "KHÔNG ĐẠT" in done.stdout and "Mã PIN không đúng" in done.stdout
    assert spy_log.read_text().count("C_Login") == 1  # one attempt, no retry
    done = _run("--module", str(MODULE), "--token", fresh_hsm.serial, "--json", pin="999999",
                env=_env(fresh_hsm, tmp_path))  # fmt: skip
    assert json.loads(done.stdout)["code"] == "pin_incorrect"
    monkeypatch.setenv("SOFTHSM2_CONF", str(fresh_hsm.conf))
    assert token_status(MODULE, fresh_hsm.serial)[0].pin_state is PinState.COUNT_LOW
