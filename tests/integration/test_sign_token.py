"""Token access and PIN safety with a real SoftHSM2 token (and OpenSC's pkcs11-spy to count logins)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.errors import (
    CertificateExpired,
    CertificateNoNonRepudiation,
    PinFinalTry,
    PinIncorrect,
    PinLocked,
    TokenModuleError,
    TokenNotFound,
    TokenRemoved,
)
from appliance.sign.batch import SignJob, sign_batch, token_status
from appliance.sign.token import (
    CKF_LOGIN_REQUIRED,
    CKF_TOKEN_INITIALIZED,
    CKF_USER_PIN_COUNT_LOW,
    CKF_USER_PIN_FINAL_TRY,
    CKF_USER_PIN_INITIALIZED,
    CKF_USER_PIN_LOCKED,
    CKF_USER_PIN_TO_BE_CHANGED,
    PinState,
    check_login_allowed,
    pin_state,
)
from tests.softhsm import (
    MODULE,
    SPY,
    SoftToken,
    simple_pdf,
    write_conf,
)

pytestmark = pytest.mark.slow

HEALTHY = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED | 0x1 | 0x200  # 1069 on SoftHSM


# --- the flag rules, as a pure function of the flags (SoftHSM never sets FINAL_TRY or LOCKED) -------
@pytest.mark.parametrize(
    ("flags", "state"),
    [
        (HEALTHY, PinState.OK),
        (HEALTHY | CKF_USER_PIN_COUNT_LOW, PinState.COUNT_LOW),
        (HEALTHY | CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY, PinState.FINAL_TRY),
        (HEALTHY | CKF_USER_PIN_LOCKED, PinState.LOCKED),
        (HEALTHY | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED, PinState.LOCKED),
        (HEALTHY | CKF_USER_PIN_TO_BE_CHANGED, PinState.TO_BE_CHANGED),
        (HEALTHY & ~CKF_USER_PIN_INITIALIZED, PinState.NOT_INITIALISED),
    ],
)
def test_pin_state_from_flags(flags: int, state: PinState) -> None:
    assert pin_state(flags) is state


def test_healthy_and_count_low_tokens_may_try_once() -> None:
    assert check_login_allowed(66605) is PinState.COUNT_LOW  # SoftHSM after one wrong PIN
    assert check_login_allowed(1069) is PinState.OK


def test_final_try_and_locked_refuse_login() -> None:
    with pytest.raises(PinFinalTry):
        check_login_allowed(HEALTHY | CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY)
    with pytest.raises(PinLocked):
        check_login_allowed(HEALTHY | CKF_USER_PIN_LOCKED)


# --- real token -------------------------------------------------------------------------------
def _spy(monkeypatch: pytest.MonkeyPatch, log: Path) -> Path:
    if not SPY.exists():
        pytest.skip("OpenSC pkcs11-spy missing")
    monkeypatch.setenv("PKCS11SPY", str(MODULE))
    monkeypatch.setenv("PKCS11SPY_OUTPUT", str(log))
    return SPY


def test_wrong_pin_is_tried_once_and_reported(
    fresh_hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    data = src.read_bytes()
    out = tmp_path / "out.pdf"
    spy_log = tmp_path / "spy.log"
    module = _spy(monkeypatch, spy_log)
    with pytest.raises(PinIncorrect) as info:
        sign_batch([SignJob(src, out, "officer")], "999999", module=module, serial=fresh_hsm.serial)
    assert "count_low" in info.value.detail
    assert spy_log.read_text().count("C_Login") == 1  # one attempt, no automatic retry
    assert not out.exists() and not list(tmp_path.glob("*.part")) and src.read_bytes() == data
    (tok,) = token_status(MODULE, fresh_hsm.serial)
    assert tok.pin_state is PinState.COUNT_LOW
    # the next human attempt with the right PIN works and clears the state
    sign_batch([SignJob(src, out, "officer")], fresh_hsm.pin, module=MODULE, serial=fresh_hsm.serial)
    assert out.exists() and token_status(MODULE, fresh_hsm.serial)[0].pin_state is PinState.OK


def test_cli_wrong_pin_gives_vietnamese_message(fresh_hsm: SoftToken, tmp_path: Path) -> None:
    from tests.integration.test_sign import run_cli

    src = simple_pdf(tmp_path / "in.pdf")
    done = run_cli(
        "sign",
        str(src),
        "-o",
        str(tmp_path / "o.pdf"),
        "--role",
        "officer",
        "--token",
        fresh_hsm.serial,
        pin="000000",
    )
    assert done.returncode == 1
    assert "lỗi: Mã PIN không đúng" in done.stderr and "[pin_incorrect:" in done.stderr
    assert "000000" not in done.stderr + done.stdout


def test_token_absent(hsm: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    with pytest.raises(TokenNotFound):
        sign_batch([SignJob(src, tmp_path / "o.pdf", "officer")], hsm.pin, module=MODULE, serial="0000deadbeef")
    conf, _dir = write_conf(tmp_path / "empty")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    with pytest.raises(TokenNotFound):
        sign_batch([SignJob(src, tmp_path / "o.pdf", "officer")], hsm.pin, module=MODULE)
    assert token_status(MODULE) == []
    assert not (tmp_path / "o.pdf").exists()


def test_unloadable_module(hsm: SoftToken, tmp_path: Path) -> None:
    src = simple_pdf(tmp_path / "in.pdf")
    with pytest.raises(TokenModuleError):
        sign_batch([SignJob(src, tmp_path / "o.pdf", "officer")], hsm.pin, module=tmp_path / "nope.so")
    not_pkcs11 = next(p for p in Path("/usr/lib/x86_64-linux-gnu").glob("libz.so*"))
    with pytest.raises(TokenModuleError):
        token_status(not_pkcs11)


def test_token_removed_mid_batch_loses_nothing(fresh_hsm: SoftToken, tmp_path: Path) -> None:
    jobs = [SignJob(simple_pdf(tmp_path / f"in{i}.pdf"), tmp_path / f"out{i}.pdf", "officer") for i in range(3)]
    before = [j.input.read_bytes() for j in jobs]

    def pull_token(index: int) -> bool:
        if index == 0:  # after the first document: the token goes away
            for child in fresh_hsm.tokendir.iterdir():
                shutil.rmtree(child)
        return True

    with pytest.raises(TokenRemoved):
        sign_batch(jobs, fresh_hsm.pin, module=MODULE, serial=fresh_hsm.serial, on_signed=pull_token)
    assert [j.input.read_bytes() for j in jobs] == before
    assert not any(j.output.exists() for j in jobs)  # all or nothing: still unsigned, still queued
    assert not list(tmp_path.glob("*.part"))


def test_stopping_between_documents_writes_nothing(hsm: SoftToken, tmp_path: Path) -> None:
    from appliance.errors import SignError

    jobs = [SignJob(simple_pdf(tmp_path / f"in{i}.pdf"), tmp_path / f"out{i}.pdf", "officer") for i in range(2)]
    with pytest.raises(SignError):
        sign_batch(jobs, hsm.pin, module=MODULE, serial=hsm.serial, on_signed=lambda i: False)
    assert not any(j.output.exists() for j in jobs)


def test_expired_and_non_repudiation_refused_before_login(
    odd_token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTHSM2_CONF", str(odd_token.conf))
    src = simple_pdf(tmp_path / "in.pdf")
    # a wrong PIN is given on purpose: the refusal must come first, so the token never sees it
    with pytest.raises(CertificateExpired):
        sign_batch([SignJob(src, tmp_path / "o.pdf", "officer")], "999999", module=MODULE, serial=odd_token.serial)
    with pytest.raises(CertificateNoNonRepudiation):
        sign_batch(
            [SignJob(src, tmp_path / "o.pdf", "organisation")],
            "999999",
            module=MODULE,
            serial=odd_token.serial,
        )
    (tok,) = token_status(MODULE, odd_token.serial)
    assert tok.pin_state is PinState.OK  # no login was attempted
    expired = next(c for c in tok.certificates if c.cka_id == "11")
    assert expired.days_to_expiry < 0
    assert not (tmp_path / "o.pdf").exists()
