"""`appliance serve`: the officers' web UI on the LAN (HTTPS with the box's certificate when configured)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from appliance.settings import Settings

log = logging.getLogger(__name__)

DEV_OFFICER = "canbo"
DEV_SUPERVISOR = "lanhdao"


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve the officers' web UI",
        description="Serve the Vietnamese web UI for the counter officers. HTTPS when settings.web.https_cert "
        "and https_key are set; plain HTTP otherwise (development only).",
    )
    s.add_argument("--host", default=None, help="address to listen on (default: settings.web.host)")
    s.add_argument("--port", type=int, default=None, help="port (default: settings.web.port)")
    s.add_argument(
        "--dev",
        action="store_true",
        help="development: create an officer and a supervisor account with fresh passwords and print them; "
        "use the SANE test scanner when no scanner is attached",
    )
    s.add_argument("--no-scanner", action="store_true", help="no scanner: file upload only")
    s.set_defaults(handler=serve)

    u = sub.add_parser(
        "user",
        help="create an officer account",
        description="Create an account for the web UI. The password is asked twice without echo on a terminal, "
        'or read from the first line of stdin otherwise (echo "$PW" | appliance user NAME).',
    )
    u.add_argument("username", metavar="NAME", help="user name to sign in with: a-z, 0-9, '.', '_', '-'")
    u.add_argument("--name", dest="full_name", default=None, help="full name, as shown on signatures (default: NAME)")
    u.add_argument("--role", choices=["officer", "supervisor"], default="officer")
    u.set_defaults(handler=add_user)


def _dev_sane(settings: Settings) -> None:
    """No real scanner: enable only SANE's test backend (A4 geometry) in a private config dir."""
    if os.environ.get("SANE_CONFIG_DIR") or not Path("/etc/sane.d/test.conf").exists():
        return
    conf = settings.data_dir / "sane"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "dll.conf").write_text("test\n")
    lines = [
        "geometry_max 300.0" if ln.strip().startswith("geometry_max") else ln
        for ln in Path("/etc/sane.d/test.conf").read_text().splitlines()
    ]
    (conf / "test.conf").write_text("\n".join(lines) + "\n")
    os.environ["SANE_CONFIG_DIR"] = str(conf)


def dev_accounts(settings: Settings) -> list[tuple[str, str, str]]:
    """(Re)create the development accounts with new random passwords: [(username, password, role)]."""
    from appliance import db
    from appliance.web.auth import create_user, find_user, hash_password
    from appliance.web.models import Role

    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    out = []
    with db.transaction(db.session_factory(engine)) as session:
        for name, full, role in (
            (DEV_OFFICER, "Cán bộ Một Cửa (thử)", Role.OFFICER),
            (DEV_SUPERVISOR, "Lãnh đạo Xã (thử)", Role.SUPERVISOR),
        ):
            password = secrets.token_urlsafe(9)
            user = find_user(session, username=name)
            if user is None:
                create_user(session, username=name, full_name=full, role=role, password=password)
            else:
                user.password_hash, user.active = hash_password(password), True
            out.append((name, password, role.value))
    engine.dispose()
    return out


def _watch(settings: Settings, scheme: str, host: str, port: int) -> None:
    """Under systemd: READY=1 once listening, then feed the watchdog while the database takes writes
    and the web server answers its own sign-in page."""
    from appliance import health_notify as hn

    local = "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104 - reaching our own listener
    checks = [hn.http_alive(f"{scheme}://{local}:{port}/login")]
    db_file = hn.sqlite_file(settings.db_url)
    if db_file is not None:
        checks.insert(0, hn.database_writable(db_file))
    hn.when_listening(local, port, lambda: hn.start_watchdog(checks, status="web UI listening"))


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from appliance.web.app import create_app

    host = args.host or settings.web.host
    port = args.port or settings.web.port
    scanner = None
    if not args.no_scanner:
        if args.dev and not (shutil.which("scanimage") and _has_real_scanner()):
            _dev_sane(settings)
        from appliance.capture.sane import SaneScanner

        scanner = SaneScanner(lock_timeout_s=settings.scanner.lock_timeout_s)
    from appliance.capture.cameras import open_camera

    camera = open_camera(settings.camera)  # offered in the UI when configured and present
    app = create_app(settings, scanner=scanner, camera=camera)
    tls = settings.web.https_cert and settings.web.https_key
    scheme = "https" if tls else "http"
    if args.dev:
        for name, password, role in dev_accounts(settings):
            sys.stderr.write(f"development account: {name} / {password} ({role})\n")
    sys.stderr.write(f"web UI: {scheme}://{host}:{port}/\n")
    sys.stderr.flush()
    _watch(settings, scheme, host, port)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(settings.web.https_cert) if tls else None,
        ssl_keyfile=str(settings.web.https_key) if tls else None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )
    return 0


def _has_real_scanner() -> bool:
    if os.environ.get("SANE_CONFIG_DIR"):
        return True  # the caller chose a SANE configuration
    import subprocess

    try:
        out = subprocess.run(["scanimage", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith("device") and "`test:" not in line for line in out.splitlines())


MIN_PASSWORD = 10
ROLE_VI = {"officer": "cán bộ", "supervisor": "lãnh đạo"}


def _refused(text: str) -> int:
    """The one line the person at the box reads (in Vietnamese, about the account), exit status 1."""
    sys.stderr.write(f"lỗi: {text}\n")
    return 1


def _read_password(name: str) -> str | None:
    """Asked twice without echo on a terminal (None when the two differ); the first line of stdin otherwise."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"Mật khẩu cho tài khoản {name}: ")
        if len(first) >= MIN_PASSWORD and getpass.getpass("Nhập lại mật khẩu: ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def add_user(args: argparse.Namespace, settings: Settings) -> int:
    """`appliance user NAME [--name "Full Name"] [--role officer|supervisor]`."""
    from appliance import db
    from appliance.web.auth import create_user, find_user, valid_username
    from appliance.web.models import Role

    name = args.username.strip().lower()
    if not valid_username(name):
        return _refused(
            f"Tên tài khoản «{args.username}» không hợp lệ: chỉ dùng chữ không dấu a-z, số 0-9, dấu chấm, "
            "gạch dưới hoặc gạch ngang (2–64 ký tự)."
        )
    full_name = (args.full_name or "").strip() or name
    engine = db.make_engine(settings.db_url)
    try:
        db.upgrade(engine)
        factory = db.session_factory(engine)
        with factory() as session:
            if find_user(session, username=name) is not None:
                return _refused(f"Tài khoản {name} đã có. Hãy chọn tên tài khoản khác.")
        password = _read_password(name)
        if password is None:
            return _refused("Hai lần nhập mật khẩu không giống nhau. Tài khoản chưa được tạo; hãy chạy lại lệnh.")
        if len(password) < MIN_PASSWORD:
            return _refused(f"Mật khẩu quá ngắn: cần ít nhất {MIN_PASSWORD} ký tự. Tài khoản {name} chưa được tạo.")
        with db.transaction(factory) as session:
            if find_user(session, username=name) is not None:  # created meanwhile
                return _refused(f"Tài khoản {name} đã có. Hãy chọn tên tài khoản khác.")
            create_user(session, username=name, full_name=full_name, role=Role(args.role), password=password)
    finally:
        engine.dispose()
    sys.stdout.write(f"Đã tạo tài khoản {ROLE_VI[args.role]} {name} ({full_name}).\n")
    return 0
