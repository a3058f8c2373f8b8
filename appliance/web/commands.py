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

from appliance.errors import ApplianceError
from appliance.settings import Settings

log = logging.getLogger(__name__)

DEV_OFFICER = "canbo"
DEV_SUPERVISOR = "lanhdao"


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve the officers' web UI",
        description="Serve the Vietnamese web UI for the counter officers. HTTPS with the box's certificate from "
        "the provincial CA when settings.web.https_cert and https_key are set (with HSTS). Without them, plain "
        "HTTP only on loopback (127.0.0.1, ::1), unless --insecure-http or settings.web.insecure_http.",
    )
    s.add_argument("--host", default=None, help="address to listen on (default: settings.web.host)")
    s.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow plain HTTP on a non-loopback address (passwords and token PINs in clear on the LAN)",
    )
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
        help="create an officer account, or change one (password reset, deactivate, unlock, role, CCCD)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A new NAME: create the account for the web UI. The password is asked twice without echo\n"
        'on a terminal, or read from the first line of stdin otherwise (echo "$PW" | appliance user NAME).\n'
        "An existing NAME: apply the options given (--name, --role and --id-number then change it).\n"
        'Every change goes to the audit trail, made by "cli".',
        epilog="examples:\n"
        "  appliance user canbo --name 'Nguyễn Thị Ánh' --id-number 001190012345   create (password from stdin)\n"
        "  appliance user canbo --reset-password    print a temporary password, to change at next sign-in\n"
        "  appliance user canbo --unlock            after too many wrong passwords\n"
        "  appliance user canbo --role supervisor   promote (--role officer: demote)\n"
        "  appliance user canbo --deactivate        no more sign-in; its sessions end (--activate: undo)",
    )
    u.add_argument("username", metavar="NAME", help="user name to sign in with: a-z, 0-9, '.', '_', '-'")
    u.add_argument("--name", dest="full_name", default=None, help="full name, as shown on signatures (default: NAME)")
    u.add_argument(
        "--role", choices=["officer", "supervisor"], default=None, help="the account's role (a new one: officer)"
    )
    u.add_argument("--id-number", default=None, metavar="CCCD", help="the officer's 12-digit CCCD ('' removes it)")
    u.add_argument(
        "--reset-password",
        action="store_true",
        help="print a temporary password (once); the officer must choose a new one at the next sign-in",
    )
    state = u.add_mutually_exclusive_group()
    state.add_argument("--deactivate", action="store_true", help="the account can no longer sign in")
    state.add_argument("--activate", action="store_true", help="a deactivated account can sign in again")
    u.add_argument("--unlock", action="store_true", help="clear the lockout after too many wrong passwords")
    u.set_defaults(handler=user)


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
                user.password_hash, user.active, user.must_change = hash_password(password), True, False
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


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plain_http_refusal(settings: Settings, host: str, *, insecure_http: bool = False) -> str | None:
    """Why `serve` must not start (None: it may): half a TLS configuration, or plain HTTP beyond loopback
    without asking for it (officers type passwords and token PINs into this page)."""
    cert, key = settings.web.https_cert, settings.web.https_key
    if (cert is None) != (key is None):
        return "web.https_cert and web.https_key must be set together"
    for path in (cert, key):
        if path is not None and not path.is_file():
            return f"{path} does not exist (the box's web certificate: ansible-playbook enrol.yml)"
    if cert is None and not is_loopback(host) and not (insecure_http or settings.web.insecure_http):
        return (
            f"refusing plain HTTP on {host}: set web.https_cert and web.https_key (the box's certificate), "
            "listen on 127.0.0.1, or pass --insecure-http"
        )
    return None


def serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from appliance.web.app import create_app

    host = args.host or settings.web.host
    port = args.port or settings.web.port
    refusal = plain_http_refusal(settings, host, insecure_http=args.insecure_http)
    if refusal is not None:
        sys.stderr.write(f"error: {refusal}\n")
        return 2
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


ROLE_VI = {"officer": "cán bộ", "supervisor": "lãnh đạo"}


def _refused(text: str) -> int:
    """The one line the person at the box reads (in Vietnamese, about the account), exit status 1."""
    sys.stderr.write(f"lỗi: {text}\n")
    return 1


def _account_refusal(name: str, err: ApplianceError, *, creating: bool) -> int:
    """The core's refusal, told about this account."""
    from appliance.accounts import MIN_PASSWORD
    from appliance.messages_vi import message_for

    not_created = f" Tài khoản {name} chưa được tạo." if creating else ""
    own = {
        "account_exists": f"Tài khoản {name} đã có. Hãy chọn tên tài khoản khác.",
        "account_not_found": f"Không có tài khoản {name}. Hãy kiểm tra tên (tạo mới: appliance user {name}).",
        "invalid_username": f"Tên tài khoản «{name}» không hợp lệ: chỉ dùng chữ không dấu a-z, số 0-9, dấu chấm, "
        "gạch dưới hoặc gạch ngang (2–64 ký tự).",
        "password_too_short": f"Mật khẩu quá ngắn: cần ít nhất {MIN_PASSWORD} ký tự.{not_created}",
    }
    return _refused(own.get(err.code) or f"Tài khoản {name}: {message_for(err)}{not_created}")


def _read_password(name: str) -> str | None:
    """Asked twice without echo on a terminal (None when the two differ); the first line of stdin otherwise."""
    from appliance.accounts import MIN_PASSWORD

    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"Mật khẩu cho tài khoản {name}: ")
        if len(first) >= MIN_PASSWORD and getpass.getpass("Nhập lại mật khẩu: ") != first:
            return None
        return first
    return sys.stdin.readline().rstrip("\r\n")


def user(args: argparse.Namespace, settings: Settings) -> int:
    """`appliance user NAME [options]`: create NAME, or change the existing account."""
    from appliance import accounts, db
    from appliance.errors import AccountNotFound, InvalidUsername

    raw = args.username.strip()
    name = accounts.normal_username(raw)
    if not accounts.valid_username(name):
        return _account_refusal(raw, InvalidUsername(), creating=True)
    engine = db.make_engine(settings.db_url)
    try:
        db.upgrade(engine)
        factory = db.session_factory(engine)
        with factory() as session:
            exists = accounts.find(session, username=name) is not None
        if exists:
            return _change_user(args, factory, name)
        if args.reset_password or args.deactivate or args.activate or args.unlock:
            return _account_refusal(name, AccountNotFound(), creating=False)
        return _add_user(args, factory, name)
    finally:
        engine.dispose()


def _add_user(args: argparse.Namespace, factory: Any, name: str) -> int:
    from appliance import accounts, db

    full_name = (args.full_name or "").strip() or name
    role = args.role or "officer"
    password = _read_password(name)
    if password is None:
        return _refused("Hai lần nhập mật khẩu không giống nhau. Tài khoản chưa được tạo; hãy chạy lại lệnh.")
    try:
        with db.transaction(factory) as session:
            accounts.create(
                session,
                actor=accounts.CLI,
                username=name,
                full_name=full_name,
                role=role,
                password=password,
                id_number=args.id_number,
            )
    except ApplianceError as err:
        return _account_refusal(name, err, creating=True)
    sys.stdout.write(f"Đã tạo tài khoản {ROLE_VI[role]} {name} ({full_name}).\n")
    return 0


def _change_user(args: argparse.Namespace, factory: Any, name: str) -> int:
    """Every option given, in one transaction: all of them or none."""
    from appliance import accounts, db

    asked = args.full_name is not None or args.role is not None or args.id_number is not None
    if not (asked or args.reset_password or args.deactivate or args.activate or args.unlock):
        return _refused(f"Tài khoản {name} đã có. Hãy chọn tên tài khoản khác.")
    actor = accounts.CLI
    said: list[str] = []
    try:
        with db.transaction(factory) as session:
            if args.full_name is not None and accounts.set_full_name(
                session, actor=actor, username=name, full_name=args.full_name
            ):
                said.append(f"Đã đổi họ tên của tài khoản {name} thành {args.full_name.strip()}.")
            if args.role is not None and accounts.change_role(session, actor=actor, username=name, role=args.role):
                said.append(f"Tài khoản {name} nay có vai trò {ROLE_VI[args.role]}.")
            if args.id_number is not None and accounts.set_id_number(
                session, actor=actor, username=name, id_number=args.id_number
            ):
                said.append(f"Đã lưu số CCCD của tài khoản {name}.")
            if args.activate and accounts.reactivate(session, actor=actor, username=name):
                said.append(f"Tài khoản {name} đã hoạt động lại.")
            if args.unlock:
                accounts.unlock(session, actor=actor, username=name)
                said.append(f"Đã mở khóa đăng nhập cho tài khoản {name}.")
            if args.deactivate and accounts.deactivate(session, actor=actor, username=name):
                said.append(f"Tài khoản {name} đã ngừng hoạt động; các phiên đăng nhập của tài khoản đã kết thúc.")
            if args.reset_password:
                temporary = accounts.reset_password(session, actor=actor, username=name)
                said.append(
                    f"Mật khẩu tạm thời của tài khoản {name}: {temporary}\n"
                    "Cán bộ phải đổi mật khẩu này khi đăng nhập lần sau."
                )
    except ApplianceError as err:
        return _account_refusal(name, err, creating=False)
    sys.stdout.write("\n".join(said or [f"Tài khoản {name} không có gì thay đổi."]) + "\n")
    return 0
