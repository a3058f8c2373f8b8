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
