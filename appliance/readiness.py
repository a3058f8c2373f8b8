"""Readiness rules: one health `Reading` in, items that are ok / warning / failing out, each with the reason
and what to do, in Vietnamese (default) or English.

Pure (no CLI, no hardware, no I/O): `appliance doctor` on the box and the province's telemetry ingest apply
the very same rules, so the person at the box and provincial IT read the same verdict.

The directive's equipment list always has an item each (`ITEMS`): scanner, camera, link (broadband to the
province), organisation_certificate, officer_certificates, token, disk, clock, outbox, fleet. A reading that
failed or timed out gives its item a warning that says it could not be read; a field the reading does not
carry at all (an older box, `--no-tokens`, a box whose database does not exist yet) gives an ok item that
says there is no data, so a box is never marked for attention over something it did not report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from appliance.domain import VN_TZ
from appliance.telemetry.schema import Link, Reading, RosterEntry

Level = Literal["ok", "warning", "failing"]
Lang = Literal["vi", "en"]
LEVEL_RANK: dict[str, int] = {"ok": 0, "warning": 1, "failing": 2}
LEVEL_WORD = {
    "vi": {"ok": "ĐẠT", "warning": "CẢNH BÁO", "failing": "LỖI"},
    "en": {"ok": "OK", "warning": "WARNING", "failing": "FAILING"},
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    cert_warn_days: int = 30
    disk_warn_pct: float = 85.0
    disk_fail_pct: float = 95.0
    temp_warn_c: float = 75.0
    temp_fail_c: float = 82.0
    memory_warn_pct: float = 90.0
    outbox_warn_s: float = 24 * 3600.0
    outbox_fail_s: float = 72 * 3600.0
    fleet_stale_days: int = 30
    link_slow_ms: float = 1500.0  # TCP connect to the broker slower than this: a warning


# the items every reading has (others appear when there is something to say: certificate, power, memory ...)
ITEMS = (
    "scanner",
    "camera",
    "link",
    "organisation_certificate",
    "officer_certificates",
    "token",
    "disk",
    "clock",
    "outbox",
    "fleet",
)
# which reading (schema field, `ReadingError.item`) each item is built from
_SOURCE = {"token": "tokens", "organisation_certificate": "roster", "officer_certificates": "roster"}

# a certificate's verdict in the roster (appliance.roster.VERDICTS holds the same Vietnamese words)
VERDICT_WORD: dict[str, dict[str, str]] = {
    "vi": {
        "missing": "chưa có",
        "valid": "hợp lệ",
        "expiring": "sắp hết hạn",
        "expired": "hết hạn",
        "revoked": "bị thu hồi",
        "mismatch": "không khớp tên",
    },
    "en": {
        "missing": "missing",
        "valid": "valid",
        "expiring": "expiring",
        "expired": "expired",
        "revoked": "revoked",
        "mismatch": "name mismatch",
    },
}
_VERDICT_ORDER = ("expired", "revoked", "mismatch", "missing", "expiring", "valid")


@dataclass(frozen=True, slots=True)
class Check:
    item: str  # stable key: scanner, token, certificate, disk, ... (ITEMS are always there)
    level: Level
    reason: str
    action: str = ""
    detail: dict[str, Any] | None = None  # machine-readable facts behind the reason (doctor --json)


def _t(lang: Lang, vi: str, en: str) -> str:
    return vi if lang == "vi" else en


def checks(reading: Reading, *, lang: Lang = "vi", limits: Thresholds | None = None) -> list[Check]:
    """Every readiness item for one reading (pure: the same on the box and at the province)."""
    lim = limits or Thresholds()
    out: list[Check] = []
    add = out.append
    failed = {e.item: e.error for e in reading.errors}

    def unknown(item: str, vi: str, en: str) -> None:
        err = failed.get(_SOURCE.get(item, item), "")
        add(
            Check(
                item,
                "warning",
                _t(lang, f"Không đọc được {vi} ({err})", f"Cannot read the {en} ({err})"),
                _t(
                    lang,
                    "Khởi động lại thiết bị; nếu còn lỗi, báo IT tỉnh.",
                    "Restart the box; if it persists, call provincial IT.",
                ),
            )
        )

    def no_data(item: str, vi: str, en: str) -> None:
        add(Check(item, "ok", _t(lang, f"{vi}: chưa có số liệu", f"{en}: no data")))

    # scanner
    if reading.scanner is None:
        if "scanner" in failed:
            unknown("scanner", "máy quét", "scanner")
        else:
            no_data("scanner", "Máy quét", "Scanner")
    elif not reading.scanner.present:
        add(
            Check(
                "scanner",
                "failing",
                _t(lang, "Máy quét không kết nối", "Scanner not connected"),
                _t(
                    lang,
                    "Kiểm tra cáp USB và nguồn của máy quét, tắt rồi bật lại máy quét.",
                    "Check the scanner's USB cable and power, then switch it off and on.",
                ),
            )
        )
    else:
        add(Check("scanner", "ok", _t(lang, "Máy quét: ", "Scanner: ") + ", ".join(reading.scanner.devices)))

    # camera (a failing or missing camera is a warning: the scanner still works)
    cam = reading.camera
    if cam is None:
        if "camera" in failed:
            unknown("camera", "camera", "camera")
        else:
            no_data("camera", "Camera", "Camera")
    elif cam.configured == "none":
        add(Check("camera", "ok", _t(lang, "Không dùng camera chụp tài liệu", "No document camera configured")))
    elif cam.present is None:
        add(
            Check(
                "camera",
                "ok",
                _t(
                    lang,
                    f"Camera ({cam.configured}): không kiểm tra được từ thiết bị",
                    f"Camera ({cam.configured}): cannot be checked from the box",
                ),
            )
        )
    elif cam.present:
        add(
            Check("camera", "ok", _t(lang, f"Camera ({cam.configured}) đã kết nối", f"Camera ({cam.configured}) ready"))
        )
    else:
        add(
            Check(
                "camera",
                "warning",
                _t(lang, "Không thấy camera chụp tài liệu", "Document camera not found"),
                _t(lang, "Cắm lại camera; vẫn có thể dùng máy quét.", "Reconnect the camera; the scanner still works."),
            )
        )

    # broadband to the province
    out.append(_link_check(reading, reading.link, lang, lim) if reading.link else _missing("link", failed, lang))

    # certificates: the organisation's, and the officers' roster
    out.append(_organisation_check(reading, failed, lang, lim))
    out.append(_officers_check(reading, failed, lang))

    # tokens and certificates
    if reading.tokens is None:
        if "tokens" in failed:
            unknown("token", "token ký số", "signing token")
        else:
            add(Check("token", "ok", _t(lang, "Token ký số: không kiểm tra lần này", "Signing token: not checked")))
    elif not reading.tokens:
        add(
            Check(
                "token",
                "failing",
                _t(lang, "Không thấy token ký số", "No signing token present"),
                _t(lang, "Cắm token chữ ký số vào thiết bị.", "Plug the signing token into the box."),
            )
        )
    for tok in reading.tokens or []:
        out.extend(_token_checks(tok.serial, tok.pin_state, lang))
        for cert in tok.certificates:
            who = cert.owner
            days = cert.days_to_expiry
            if days < 0:
                add(
                    Check(
                        "certificate",
                        "failing",
                        _t(
                            lang,
                            f"Chứng thư số của {who} đã hết hạn {-days} ngày",
                            f"{who}'s certificate expired {-days} days ago",
                        ),
                        _t(
                            lang,
                            "Gia hạn chứng thư số với nhà cung cấp dịch vụ chứng thực.",
                            "Renew the certificate with the trust service provider.",
                        ),
                    )
                )
            elif days < lim.cert_warn_days:
                add(
                    Check(
                        "certificate",
                        "warning",
                        _t(
                            lang,
                            f"Chứng thư số của {who} hết hạn sau {days} ngày",
                            f"{who}'s certificate expires in {days} days",
                        ),
                        _t(lang, "Làm thủ tục gia hạn chứng thư số ngay.", "Start the certificate renewal now."),
                    )
                )
            else:
                add(
                    Check(
                        "certificate",
                        "ok",
                        _t(
                            lang,
                            f"Chứng thư số của {who} còn {days} ngày",
                            f"{who}'s certificate valid for {days} days",
                        ),
                    )
                )
        if tok.certificates and not any(c.role == "organisation" for c in tok.certificates):
            add(
                Check(
                    "certificate",
                    "warning",
                    _t(
                        lang,
                        f"Token {tok.serial} không có chứng thư số của cơ quan",
                        f"Token {tok.serial} holds no organisation certificate",
                    ),
                    _t(
                        lang,
                        "Kết quả điện tử cần chữ ký số của cơ quan: liên hệ IT tỉnh.",
                        "Electronic results need the organisation's signature: call provincial IT.",
                    ),
                )
            )

    # disk
    d = reading.disk
    if d is None:
        if "disk" in failed:
            unknown("disk", "dung lượng đĩa", "disk usage")
        else:
            no_data("disk", "Ổ đĩa", "Disk")
    else:
        free_gb = d.free_bytes / 1e9
        level: Level = (
            "failing" if d.used_pct >= lim.disk_fail_pct else "warning" if d.used_pct >= lim.disk_warn_pct else "ok"
        )
        add(
            Check(
                "disk",
                level,
                _t(
                    lang,
                    f"Ổ đĩa đã dùng {d.used_pct:.0f}% (còn {free_gb:.1f} GB)",
                    f"Disk {d.used_pct:.0f}% used ({free_gb:.1f} GB free)",
                ),
                ""
                if level == "ok"
                else _t(
                    lang,
                    "Kiểm tra hàng đợi gửi về tỉnh; báo IT tỉnh để dọn dữ liệu cũ.",
                    "Check the outbox; ask provincial IT to clear old data.",
                ),
            )
        )

    # temperature and power
    if reading.cpu_temp_c is None:
        add(
            Check(
                "temperature",
                "ok",
                _t(
                    lang,
                    "Nhiệt độ CPU: không xác định (không phải Raspberry Pi)",
                    "CPU temperature: unknown (not a Raspberry Pi)",
                ),
            )
        )
    else:
        t = reading.cpu_temp_c
        level = "failing" if t >= lim.temp_fail_c else "warning" if t >= lim.temp_warn_c else "ok"
        add(
            Check(
                "temperature",
                level,
                _t(lang, f"Nhiệt độ CPU {t:.0f}°C", f"CPU temperature {t:.0f}°C"),
                ""
                if level == "ok"
                else _t(
                    lang,
                    "Đặt thiết bị nơi thoáng, không che khe tản nhiệt.",
                    "Move the box somewhere airy; keep the vents free.",
                ),
            )
        )
    p = reading.power
    if p is not None and p.under_voltage_now:
        add(
            Check(
                "power",
                "failing",
                _t(lang, "Nguồn điện yếu (thiếu áp) ngay lúc này", "Under-voltage right now"),
                _t(
                    lang,
                    "Dùng bộ nguồn chính hãng 5V/5A, không cắm qua ổ chia kém chất lượng.",
                    "Use the original 5 V power supply, not a weak power strip.",
                ),
            )
        )
    elif p is not None and (p.under_voltage_since_boot or p.throttled_now):
        add(
            Check(
                "power",
                "warning",
                _t(
                    lang,
                    "Đã có lúc thiếu áp hoặc CPU bị giảm tốc từ lần khởi động trước",
                    "Under-voltage or throttling occurred since boot",
                ),
                _t(
                    lang, "Kiểm tra bộ nguồn và nhiệt độ thiết bị.", "Check the power supply and the box's temperature."
                ),
            )
        )

    # memory
    m = reading.memory
    if m is not None and m.used_pct >= lim.memory_warn_pct:
        add(
            Check(
                "memory",
                "warning",
                _t(lang, f"Bộ nhớ đã dùng {m.used_pct:.0f}%", f"Memory {m.used_pct:.0f}% used"),
                _t(lang, "Khởi động lại thiết bị ngoài giờ làm việc.", "Restart the box outside office hours."),
            )
        )

    # clock
    c = reading.clock
    if c is None and "clock" in failed:
        unknown("clock", "đồng hồ", "clock")
    elif c is None or c.synchronized is None:
        add(
            Check(
                "clock",
                "warning",
                _t(lang, "Không xác định được đồng bộ giờ", "Cannot tell whether the clock is synchronised"),
                _t(lang, "Báo IT tỉnh kiểm tra dịch vụ NTP.", "Ask provincial IT to check NTP."),
            )
        )
    elif not c.synchronized:
        add(
            Check(
                "clock",
                "warning",
                _t(lang, "Đồng hồ chưa đồng bộ giờ chuẩn (NTP)", "Clock not NTP-synchronised"),
                _t(
                    lang,
                    "Kiểm tra kết nối Internet; thời điểm ký số phải đúng.",
                    "Check the Internet link; signing times must be right.",
                ),
            )
        )
    else:
        add(Check("clock", "ok", _t(lang, "Đồng hồ đã đồng bộ", "Clock synchronised")))

    # outbox
    o = reading.outbox
    if o is None and "outbox" in failed:
        unknown("outbox", "hàng đợi gửi về tỉnh", "outbox")
    elif o is None or o.depth is None:
        no_data("outbox", "Hàng đợi gửi về tỉnh", "Outbox")
    elif o.oldest_age_s is not None and o.oldest_age_s >= lim.outbox_warn_s:
        hours = o.oldest_age_s / 3600
        level = "failing" if o.oldest_age_s >= lim.outbox_fail_s else "warning"
        add(
            Check(
                "outbox",
                level,
                _t(
                    lang,
                    f"Có {o.depth} gói chưa gửi về tỉnh, gói cũ nhất đã chờ {hours:.0f} giờ",
                    f"{o.depth} package(s) not delivered, the oldest waiting {hours:.0f} h",
                ),
                _t(
                    lang,
                    "Kiểm tra đường truyền Internet; chạy `appliance outbox status`.",
                    "Check the Internet link; run `appliance outbox status`.",
                ),
            )
        )
    else:
        add(Check("outbox", "ok", _t(lang, f"Hàng đợi gửi: {o.depth} gói", f"Outbox: {o.depth} package(s)")))

    # fleet management
    f = reading.fleet
    if f is None and "fleet" in failed:
        unknown("fleet", "lần cập nhật cấu hình gần nhất", "last fleet-management run")
    elif f is None:
        add(
            Check(
                "fleet",
                "warning",
                _t(lang, "Chưa có thông tin lần cập nhật cấu hình gần nhất", "No record of a fleet-management run"),
                _t(
                    lang,
                    "Báo IT tỉnh chạy cập nhật cấu hình cho thiết bị.",
                    "Ask provincial IT to run fleet management on this box.",
                ),
            )
        )
    elif f.result == "failed":
        add(
            Check(
                "fleet",
                "warning",
                _t(lang, "Lần cập nhật cấu hình gần nhất bị lỗi", "The last fleet-management run failed"),
                _t(lang, "Báo IT tỉnh xem lại.", "Ask provincial IT to look at it."),
            )
        )
    elif f.finished_at is not None and (reading.at - f.finished_at).days > lim.fleet_stale_days:
        add(
            Check(
                "fleet",
                "warning",
                _t(
                    lang,
                    f"Đã {(reading.at - f.finished_at).days} ngày chưa cập nhật cấu hình",
                    f"No fleet-management run for {(reading.at - f.finished_at).days} days",
                ),
                _t(lang, "Báo IT tỉnh.", "Tell provincial IT."),
            )
        )
    else:
        add(Check("fleet", "ok", _t(lang, "Cấu hình đã cập nhật", "Fleet management up to date")))

    for item, err in sorted(failed.items()):
        if item not in {"scanner", "camera", "tokens", "disk", "clock", "outbox", "fleet", "link", "roster"}:
            add(Check(item, "warning", _t(lang, f"Không đọc được mục {item}: {err}", f"Cannot read {item}: {err}")))
    return out


_NAMES = {  # item -> (Vietnamese, English) as a sentence names it
    "link": ("đường truyền về tỉnh", "link to the province"),
    "organisation_certificate": ("chứng thư số của cơ quan", "organisation certificate"),
    "officer_certificates": ("chứng thư số cán bộ", "officers' certificates"),
}


def _missing(item: str, failed: dict[str, str], lang: Lang) -> Check:
    """An item whose reading is absent: failed (a warning that says so) or not reported (ok, no data)."""
    source = _SOURCE.get(item, item)
    vi, en = _NAMES[item]
    if source in failed:
        return Check(
            item,
            "warning",
            _t(lang, f"Không đọc được {vi} ({failed[source]})", f"Cannot read the {en} ({failed[source]})"),
            _t(
                lang,
                "Khởi động lại thiết bị; nếu còn lỗi, báo IT tỉnh.",
                "Restart the box; if it persists, call provincial IT.",
            ),
        )
    return Check(item, "ok", _t(lang, f"{vi.capitalize()}: chưa có số liệu", f"{en.capitalize()}: no data"))


def _when(at: datetime) -> str:
    return at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M")


def _rate(bps: float) -> str:
    return f"{bps / 1e6:.1f} Mbit/s" if bps >= 1e6 else f"{bps / 1e3:.0f} kbit/s"


def _link_check(reading: Reading, link: Link, lang: Lang, lim: Thresholds) -> Check:
    """Broadband to the province: the broker reachable, the round trip, what the outbox carried."""
    where = f"{link.host}:{link.port}"
    detail: dict[str, Any] = {
        "host": link.host,
        "port": link.port,
        "reachable": link.reachable,
        "rtt_ms": link.connect_ms,
        "throughput_bps": link.throughput_bps,
        "last_delivery_at": link.last_delivery_at.isoformat() if link.last_delivery_at else None,
    }
    if link.reachable is None:
        return Check(
            "link",
            "warning",
            _t(lang, "Chưa cấu hình máy chủ tỉnh để gửi dữ liệu", "No provincial broker configured"),
            _t(lang, "Báo IT tỉnh cấu hình lại thiết bị.", "Ask provincial IT to configure the box."),
            detail,
        )
    if not link.reachable:
        err = link.error or "?"
        if err.startswith("TLS"):
            return Check(
                "link",
                "failing",
                _t(
                    lang,
                    f"Có đường truyền nhưng máy chủ tỉnh {where} từ chối kết nối bảo mật ({err})",
                    f"The provincial broker {where} answers but the secure connection failed ({err})",
                ),
                _t(
                    lang,
                    "Kiểm tra đồng hồ của thiết bị; báo IT tỉnh kiểm tra chứng thư của thiết bị.",
                    "Check the box's clock; ask provincial IT to check the device certificate.",
                ),
                detail,
            )
        return Check(
            "link",
            "failing",
            _t(
                lang,
                f"Không kết nối được máy chủ tỉnh {where} ({err})",
                f"Cannot reach the provincial broker {where} ({err})",
            ),
            _t(
                lang,
                "Kiểm tra cáp mạng và modem Internet, tắt rồi bật lại modem; nếu vẫn lỗi, báo IT tỉnh.",
                "Check the network cable and the Internet modem, switch the modem off and on; "
                "if it persists, call provincial IT.",
            ),
            detail,
        )
    vi = [f"Kết nối được máy chủ tỉnh {where}"]
    en = [f"Provincial broker {where} reachable"]
    if link.connect_ms is not None:
        vi.append(f"độ trễ {link.connect_ms:.0f} ms")
        en.append(f"round trip {link.connect_ms:.0f} ms")
    if link.throughput_bps is not None and link.last_transfer_at is not None:
        vi.append(f"gói gần nhất gửi với tốc độ {_rate(link.throughput_bps)} ({_when(link.last_transfer_at)})")
        en.append(f"last package sent at {_rate(link.throughput_bps)} ({_when(link.last_transfer_at)})")
    if link.last_delivery_at is not None:
        vi.append(f"tỉnh xác nhận nhận gói gần nhất lúc {_when(link.last_delivery_at)}")
        en.append(f"last delivery receipted {_when(link.last_delivery_at)}")
    else:
        vi.append("chưa có gói nào được tỉnh xác nhận")
        en.append("no delivery receipted yet")
    slow = link.connect_ms is not None and link.connect_ms >= lim.link_slow_ms
    return Check(
        "link",
        "warning" if slow else "ok",
        _t(
            lang,
            ("Đường truyền chậm: " if slow else "") + ", ".join(vi),
            ("Slow link: " if slow else "") + ", ".join(en),
        ),
        _t(
            lang,
            "Báo nhà mạng kiểm tra đường truyền Internet; các gói vẫn được gửi dần.",
            "Ask the Internet provider to check the line; packages keep going out slowly.",
        )
        if slow
        else "",
        detail,
    )


def _common_name(subject: str | None) -> str:
    for part in (subject or "").split(","):
        key, _, value = part.strip().partition("=")
        if key.upper() == "CN" and value:
            return value
    return ""


def _days_left(entry: RosterEntry, at: datetime) -> int | None:
    return (entry.not_after - at).days if entry.not_after is not None else None


_ORG_TEXT: dict[str, tuple[Level, tuple[str, str], tuple[str, str]]] = {
    # verdict -> level, (reason vi, en) with {who} {days}, (what to do vi, en)
    "valid": (
        "ok",
        ("Chứng thư số của cơ quan ({who}) còn {days} ngày", "Organisation certificate ({who}) valid for {days} days"),
        ("", ""),
    ),
    "expiring": (
        "warning",
        (
            "Chứng thư số của cơ quan ({who}) sắp hết hạn: còn {days} ngày",
            "Organisation certificate ({who}) expires in {days} days",
        ),
        ("Làm thủ tục gia hạn chứng thư số của cơ quan ngay.", "Start the organisation certificate's renewal now."),
    ),
    "expired": (
        "failing",
        ("Chứng thư số của cơ quan ({who}) đã hết hạn", "Organisation certificate ({who}) has expired"),
        (
            "Kết quả điện tử không ký được: liên hệ IT tỉnh để gia hạn chứng thư số của cơ quan.",
            "Electronic results cannot be signed: ask provincial IT to renew the organisation certificate.",
        ),
    ),
    "revoked": (
        "failing",
        ("Chứng thư số của cơ quan ({who}) đã bị thu hồi", "Organisation certificate ({who}) is revoked"),
        (
            "Không dùng token này nữa; liên hệ IT tỉnh để cấp chứng thư số mới cho cơ quan.",
            "Stop using this token; ask provincial IT for a new organisation certificate.",
        ),
    ),
    "mismatch": (
        "warning",
        (
            "Chứng thư số của cơ quan ({who}) không khớp tên cơ quan",
            "Organisation certificate ({who}) names another body",
        ),
        (
            "Kiểm tra đúng token của cơ quan; báo IT tỉnh.",
            "Check that this is the organisation's token; call provincial IT.",
        ),
    ),
    "missing": (
        "failing",
        ("Chưa có chứng thư số của cơ quan", "No organisation certificate"),
        (
            "Kết quả điện tử cần chữ ký số của cơ quan: liên hệ IT tỉnh để được cấp, rồi cắm token vào thiết bị.",
            "Electronic results need the organisation's signature: ask provincial IT for one, then plug the "
            "token into the box.",
        ),
    ),
}


def _organisation_check(reading: Reading, failed: dict[str, str], lang: Lang, lim: Thresholds) -> Check:
    """The organisation's certificate as the roster last saw it, else as the token plugged in now shows it."""
    row = next((e for e in reading.roster or [] if e.role == "organisation"), None)
    on_token = [c for t in reading.tokens or [] for c in t.certificates if c.role == "organisation"]
    state: str
    if row is not None and row.verdict != "missing":
        state, who, days = row.verdict, _common_name(row.subject) or "?", _days_left(row, reading.at)
    elif on_token:
        best = max(on_token, key=lambda c: c.days_to_expiry)
        who, days = best.owner, best.days_to_expiry
        state = "expired" if days < 0 else "expiring" if days < lim.cert_warn_days else "valid"
    elif row is not None:
        state, who, days = "missing", "", None
    else:
        return _missing("organisation_certificate", failed, lang)
    level, (vi, en), (do_vi, do_en) = _ORG_TEXT[state]
    fill = {"who": who, "days": days if days is not None else "?"}
    return Check(
        "organisation_certificate",
        level,
        _t(lang, vi.format(**fill), en.format(**fill)),
        _t(lang, do_vi, do_en),
        {"verdict": state, "label": VERDICT_WORD[lang][state], "common_name": who or None, "days_left": days},
    )


_OFFICER_ACTIONS: dict[str, tuple[str, str]] = {
    "expired": (
        "Cán bộ có chứng thư hết hạn không ký được: gia hạn với nhà cung cấp.",
        "Officers with an expired certificate cannot sign: renew with the provider.",
    ),
    "revoked": (
        "Chứng thư bị thu hồi: cán bộ đó liên hệ nhà cung cấp để cấp chứng thư mới.",
        "A revoked certificate: that officer needs a new one from the provider.",
    ),
    "mismatch": (
        "Tên trên chứng thư không khớp tài khoản: kiểm tra cán bộ dùng đúng token của mình.",
        "The certificate names someone else: check each officer uses their own token.",
    ),
    "missing": (
        "Cán bộ chưa có chứng thư số: đăng ký chứng thư số cá nhân (token hoặc ký số từ xa) rồi mở trang Ký số "
        "một lần để thiết bị ghi nhận.",
        "Officers without a certificate: get a personal certificate (token or remote signing), then open the "
        "signing page once so the box records it.",
    ),
    "expiring": (
        "Làm thủ tục gia hạn trước khi chứng thư hết hạn.",
        "Start the renewal before the certificate expires.",
    ),
}
_NAMED = 10  # officers named per verdict in the reason; the rest are counted


def _officers_check(reading: Reading, failed: dict[str, str], lang: Lang) -> Check:
    """The roster summary: officers per verdict, naming those whose certificate needs something done."""
    if reading.roster is None:
        return _missing("officer_certificates", failed, lang)
    officers = [e for e in reading.roster if e.role == "officer"]
    if not officers:
        return Check(
            "officer_certificates",
            "warning",
            _t(lang, "Chưa có tài khoản cán bộ nào trên thiết bị", "No officer accounts on the box"),
            _t(lang, "Lãnh đạo tạo tài khoản cho từng cán bộ.", "A supervisor creates each officer's account."),
            {"counts": {}, "officers": []},
        )
    words = VERDICT_WORD[lang]
    counts = {v: sum(1 for e in officers if e.verdict == v) for v in _VERDICT_ORDER}
    counts = {v: n for v, n in counts.items() if n}
    listed: list[dict[str, Any]] = []
    for e in officers:
        days = _days_left(e, reading.at)
        listed.append(
            {
                "username": e.username,
                "common_name": _common_name(e.subject) or None,
                "verdict": e.verdict,
                "label": words[e.verdict],
                "days_left": days,
            }
        )
    head = ", ".join(f"{n} {words[v]}" for v, n in counts.items())
    named = []
    for v in _VERDICT_ORDER:
        if v == "valid" or v not in counts:
            continue
        people = []
        for o in [o for o in listed if o["verdict"] == v][:_NAMED]:
            bits = [b for b in (o["common_name"], _days_phrase(o["days_left"], lang) if v == "expiring" else None) if b]
            people.append(o["username"] + (f" ({', '.join(bits)})" if bits else ""))
        more = counts[v] - len(people)
        if more > 0:
            people.append(_t(lang, f"và {more} người khác", f"and {more} more"))
        named.append(f"{words[v]}: {', '.join(people)}")
    level: Level = (
        "failing"
        if {"expired", "revoked"} & counts.keys()
        else "warning"
        if {"mismatch", "missing", "expiring"} & counts.keys()
        else "ok"
    )
    reason = (
        _t(lang, "Chứng thư số cán bộ: ", "Officers' certificates: ")
        + head
        + ("; " + "; ".join(named) if named else "")
    )
    action = " ".join(_t(lang, *_OFFICER_ACTIONS[v]) for v in _VERDICT_ORDER if v in counts and v != "valid")
    return Check("officer_certificates", level, reason, action, {"counts": counts, "officers": listed})


def _days_phrase(days: int | None, lang: Lang) -> str | None:
    if days is None:
        return None
    return _t(lang, f"còn {days} ngày", f"{days} days left")


# PIN state -> (level, (reason vi, reason en) with {serial}, (what to do vi, en))
_PIN_STATES: dict[str, tuple[Level, tuple[str, str], tuple[str, str]]] = {
    "locked": (
        "failing",
        ("Token {serial} đã bị khóa mã PIN", "Token {serial}: PIN locked"),
        (
            "Liên hệ nhà cung cấp chứng thư số để mở khóa; không thử thêm mã PIN.",
            "Contact the certificate provider to unlock it; do not try more PINs.",
        ),
    ),
    "final_try": (
        "failing",
        ("Token {serial}: chỉ còn 1 lần nhập mã PIN", "Token {serial}: one PIN try left"),
        ("Không nhập thử mã PIN; hỏi người giữ mã PIN đúng.", "Do not guess: ask whoever holds the right PIN."),
    ),
    "count_low": (
        "warning",
        ("Token {serial}: đã có lần nhập sai mã PIN", "Token {serial}: a wrong PIN was entered"),
        ("Cẩn thận khi nhập mã PIN.", "Take care entering the PIN."),
    ),
}
_PIN_TO_CHANGE: tuple[Level, tuple[str, str], tuple[str, str]] = (
    "warning",
    ("Token {serial}: cần đặt/đổi mã PIN", "Token {serial}: PIN must be set or changed"),
    ("Đổi mã PIN bằng phần mềm của nhà cung cấp.", "Change the PIN with the provider's tool."),
)
_PIN_STATES["not_initialised"] = _PIN_STATES["to_be_changed"] = _PIN_TO_CHANGE


def _token_checks(serial: str, pin_state: str, lang: Lang) -> list[Check]:
    if pin_state not in _PIN_STATES:
        return [Check("token", "ok", _t(lang, f"Token {serial} sẵn sàng", f"Token {serial} ready"))]
    level, (vi, en), (do_vi, do_en) = _PIN_STATES[pin_state]
    return [Check("token", level, _t(lang, vi.format(serial=serial), en.format(serial=serial)), _t(lang, do_vi, do_en))]


def verdict(items: list[Check]) -> Level:
    levels = {c.level for c in items}
    return "failing" if "failing" in levels else "warning" if "warning" in levels else "ok"
