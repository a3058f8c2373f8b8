"""`appliance user NAME` as the README shows it: the password from stdin when stdin is not a terminal,
and errors that speak of the account, in Vietnamese."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from appliance import db
from appliance.settings import load_settings
from appliance.web.auth import authenticate
from appliance.web.models import Role

REPO = Path(__file__).resolve().parents[2]


def run_user(data_dir: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "appliance", "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def _signs_in(data_dir: Path, username: str, password: str) -> tuple[str, str] | None:
    settings = load_settings(data_dir=data_dir)
    engine = db.make_engine(settings.db_url)
    try:
        with db.transaction(db.session_factory(engine)) as session:
            who = authenticate(session, username=username, password=password)
            return (who.full_name, str(who.role)) if who is not None else None
    finally:
        engine.dispose()


def test_user_name_alone_reads_the_password_from_stdin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run_user(data, "CanBo2", stdin="mat-khau-rat-dai 1\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Đã tạo tài khoản cán bộ canbo2 (canbo2).\n"
    assert "Mật khẩu" not in proc.stdout + proc.stderr  # no prompt when stdin is a pipe
    assert _signs_in(data, "canbo2", "mat-khau-rat-dai 1") == ("canbo2", Role.OFFICER.value)


def test_full_name_and_role(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = run_user(data, "lanhdao", "--name", "Trần Văn Bình", "--role", "supervisor", stdin="mat-khau-lanh-dao\r\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Đã tạo tài khoản lãnh đạo lanhdao (Trần Văn Bình).\n"
    assert _signs_in(data, "lanhdao", "mat-khau-lanh-dao") == ("Trần Văn Bình", Role.SUPERVISOR.value)


def test_errors_speak_of_the_account(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_user(data, "canbo", stdin="mat-khau-can-bo-1\n").returncode == 0

    again = run_user(data, "canbo", stdin="mat-khau-khac-nua\n")
    assert again.returncode == 1
    assert again.stderr.startswith("lỗi: Tài khoản canbo đã có.")
    assert _signs_in(data, "canbo", "mat-khau-can-bo-1") is not None  # unchanged

    short = run_user(data, "canbo3", stdin="ngan\n")
    assert short.returncode == 1
    assert short.stderr.startswith("lỗi: Mật khẩu quá ngắn: cần ít nhất 10 ký tự.")

    empty = run_user(data, "canbo3", stdin="")
    assert empty.returncode == 1 and "Mật khẩu quá ngắn" in empty.stderr
    assert _signs_in(data, "canbo3", "ngan") is None

    bad = run_user(data, "cán bộ", stdin="mat-khau-can-bo-1\n")
    assert bad.returncode == 1
    assert bad.stderr.startswith("lỗi: Tên tài khoản «cán bộ» không hợp lệ")
    for proc in (again, short, empty, bad):
        assert "tệp" not in proc.stderr.lower() and "file" not in proc.stderr.lower()
        assert proc.stderr.count("\n") == 1  # one line, no traceback


def _account(data_dir: Path, username: str) -> tuple[str, bool, bool, str | None]:
    from appliance import accounts

    settings = load_settings(data_dir=data_dir)
    engine = db.make_engine(settings.db_url)
    try:
        with db.transaction(db.session_factory(engine)) as session:
            user = accounts.find(session, username=username)
            assert user is not None
            return user.role, user.active, user.must_change, user.id_number
    finally:
        engine.dispose()


def _trail(data_dir: Path) -> list[tuple[str, str, dict[str, object]]]:
    from appliance import accounts, audit

    settings = load_settings(data_dir=data_dir)
    engine = db.make_engine(settings.db_url)
    try:
        with db.transaction(db.session_factory(engine)) as session:
            entries = audit.for_actions(session, actions=accounts.ACTIONS)
            return [(e.actor, e.action, e.detail) for e in reversed(entries)]
    finally:
        engine.dispose()


def test_changes_to_an_existing_account(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_user(data, "lanhdao", "--role", "supervisor", stdin="mat-khau-lanh-dao\n").returncode == 0
    made = run_user(
        data, "canbo", "--name", "Nguyễn Thị Ánh", "--id-number", "001190012345", stdin="mat-khau-can-bo-1\n"
    )
    assert made.returncode == 0, made.stderr
    assert _account(data, "canbo") == ("officer", True, False, "001190012345")

    reset = run_user(data, "canbo", "--reset-password", stdin="")
    assert reset.returncode == 0, reset.stderr
    first, second = reset.stdout.splitlines()
    assert first.startswith("Mật khẩu tạm thời của tài khoản canbo: ") and "phải đổi mật khẩu" in second
    temporary = first.rsplit(" ", 1)[1]
    assert _signs_in(data, "canbo", "mat-khau-can-bo-1") is None
    assert _signs_in(data, "canbo", temporary) is not None
    assert _account(data, "canbo")[2] is True  # must change it at the next sign-in

    both = run_user(data, "canbo", "--role", "supervisor", "--id-number", "", stdin="")
    assert both.returncode == 0, both.stderr
    assert both.stdout == "Tài khoản canbo nay có vai trò lãnh đạo.\nĐã lưu số CCCD của tài khoản canbo.\n"
    assert _account(data, "canbo")[::3] == ("supervisor", None)

    off = run_user(data, "canbo", "--deactivate", stdin="")
    assert off.returncode == 0 and "ngừng hoạt động" in off.stdout
    assert _signs_in(data, "canbo", temporary) is None
    assert run_user(data, "canbo", "--activate", stdin="").returncode == 0
    assert run_user(data, "canbo", "--unlock", stdin="").stdout == "Đã mở khóa đăng nhập cho tài khoản canbo.\n"
    assert _signs_in(data, "canbo", temporary) is not None

    actions = [(actor, action) for actor, action, _detail in _trail(data)]
    assert set(actor for actor, _a in actions) == {"cli"}
    assert [a for _c, a in actions] == [
        "account_create",
        "account_create",
        "password_reset",
        "account_role",
        "account_id_number",
        "account_deactivate",
        "account_reactivate",
        "account_unlock",
    ]
    assert temporary not in str(_trail(data))


def test_change_refusals_speak_of_the_account(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_user(data, "lanhdao", "--role", "supervisor", stdin="mat-khau-lanh-dao\n").returncode == 0
    missing = run_user(data, "khongco", "--reset-password", stdin="")
    assert missing.returncode == 1 and missing.stderr.startswith("lỗi: Không có tài khoản khongco.")
    last = run_user(data, "lanhdao", "--deactivate", stdin="")
    assert last.returncode == 1 and last.stderr.startswith("lỗi: Tài khoản lanhdao: Không thể khóa")
    assert _account(data, "lanhdao")[:2] == ("supervisor", True)
    bad = run_user(data, "lanhdao", "--id-number", "123", stdin="")
    assert bad.returncode == 1 and "12 chữ số" in bad.stderr
    both = run_user(data, "lanhdao", "--deactivate", "--activate", stdin="")
    assert both.returncode == 2  # argparse: not both
    for proc in (missing, last, bad):
        assert proc.stderr.count("\n") == 1  # one line, no traceback


def test_help_shows_the_changes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "user", "--help"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.returncode == 0
    for option in ("--reset-password", "--deactivate", "--activate", "--unlock", "--role", "--id-number"):
        assert option in proc.stdout
