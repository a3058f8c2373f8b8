"""Readiness rules: one health `Reading` in, items that are ok / warning / failing out, each with the reason
and what to do, in Vietnamese (default) or English.

Pure (no CLI, no hardware, no I/O): `appliance doctor` on the box and the province's telemetry ingest apply
the very same rules, so the person at the box and provincial IT read the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.telemetry.schema import Reading

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


@dataclass(frozen=True, slots=True)
class Check:
    item: str  # stable key: scanner, token, certificate, disk, ...
    level: Level
    reason: str
    action: str = ""


def _t(lang: Lang, vi: str, en: str) -> str:
    return vi if lang == "vi" else en


def checks(reading: Reading, *, lang: Lang = "vi", limits: Thresholds | None = None) -> list[Check]:
    """Every readiness item for one reading (pure: the same on the box and at the province)."""
    lim = limits or Thresholds()
    out: list[Check] = []
    add = out.append
    failed = {e.item: e.error for e in reading.errors}

    def unknown(item: str, vi: str, en: str) -> None:
        err = failed.get(item, "")
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

    # scanner
    if reading.scanner is None:
        if "scanner" in failed:
            unknown("scanner", "máy quét", "scanner")
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

    # camera (only when one is configured)
    cam = reading.camera
    if cam is not None and cam.configured != "none" and cam.present is False:
        add(
            Check(
                "camera",
                "warning",
                _t(lang, "Không thấy camera chụp tài liệu", "Document camera not found"),
                _t(lang, "Cắm lại camera; vẫn có thể dùng máy quét.", "Reconnect the camera; the scanner still works."),
            )
        )

    # tokens and certificates
    if reading.tokens is None:
        if "tokens" in failed:
            unknown("tokens", "token ký số", "signing token")
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
    if c is None or c.synchronized is None:
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
    if o is not None and o.oldest_age_s is not None and o.oldest_age_s >= lim.outbox_warn_s:
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
    elif o is not None and o.depth is not None:
        add(Check("outbox", "ok", _t(lang, f"Hàng đợi gửi: {o.depth} gói", f"Outbox: {o.depth} package(s)")))

    # fleet management
    f = reading.fleet
    if f is None:
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
        if item not in {"scanner", "tokens", "disk"}:
            add(Check(item, "warning", _t(lang, f"Không đọc được mục {item}: {err}", f"Cannot read {item}: {err}")))
    return out


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
