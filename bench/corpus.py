"""Synthetic test corpus: Vietnamese administrative pages, scans and camera photos of them.

Pages follow the Decree 30/2020 layout (issuing body top-left, national motto top-right, number and
date, centred document type, summary, body, recipients bottom-left, signature block bottom-right).
All content is made up from a small vocabulary and varies with the seed; the same seed always gives
the same page, byte for byte.

Ground truth and reading order
------------------------------
`render_layout` returns every rendered text line with its box (clean-page pixels). The ground-truth
text is those lines joined with "\\n" in this reading order: blocks that sit side by side are read
left block first, then right block (header: issuer, number [and "V/v" summary] on the left, then
national motto and place/date on the right; footer: "Nơi nhận" list on the left, then the signature
block on the right). Everything else is read top to bottom. The seal and the handwritten signature
are pictures, not text: they are not in the ground truth (as on a real page, they may make OCR
worse where they overlap text).

Error rates
-----------
`cer` is the strict character error rate: Levenshtein distance between NFC, whitespace-collapsed
strings, divided by the reference length. It depends on reading order. `cer_unordered` matches each
reference line to its best-fitting stretch of the hypothesis wherever it is, so it does not punish a
tool for reading the header blocks in another order; the benchmark reports both and uses
`cer_unordered` as its headline figure (see bench/README.md).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/liberation2")
REGULAR = FONT_DIR / "LiberationSerif-Regular.ttf"
BOLD = FONT_DIR / "LiberationSerif-Bold.ttf"
ITALIC = FONT_DIR / "LiberationSerif-Italic.ttf"
BOLD_ITALIC = FONT_DIR / "LiberationSerif-BoldItalic.ttf"

T = TypeVar("T")
A4_MM = (210.0, 297.0)
INK = (22, 22, 26)

# --------------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Line:
    """One rendered text line and its box (x0, y0, x1, y1) in clean-page pixels."""

    text: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Page:
    """A clean rendered page, its text lines in reading order, and the seed that made it."""

    image: np.ndarray
    lines: tuple[Line, ...]
    seed: int
    dpi: int
    kind: str  # document type, e.g. "QUYẾT ĐỊNH"

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


# --------------------------------------------------------------------------------------------------
# Vocabulary (invented content; names and places are common Vietnamese ones)

SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Phan", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô"]
SURNAMES += ["Dương", "Trương", "Đinh", "Hà", "Lương", "Huỳnh", "Mai", "Trịnh"]
MIDDLES_M = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Công", "Đình", "Quang", "Xuân", "Thanh", "Ngọc"]
MIDDLES_F = ["Thị", "Ngọc", "Thu", "Kim", "Thanh", "Minh", "Thùy", "Hồng", "Mỹ"]
GIVEN_M = ["An", "Bình", "Cường", "Dũng", "Hải", "Hiếu", "Hùng", "Khánh", "Long", "Nam", "Quân", "Sơn"]
GIVEN_M += ["Thắng", "Trung", "Tuấn", "Việt", "Lộc", "Đạt", "Phúc", "Toàn", "Vĩnh", "Thịnh", "Lực"]
GIVEN_F = ["Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Nga", "Phương", "Thảo", "Thủy", "Trang"]
GIVEN_F += ["Vân", "Yến", "Nhung", "Quỳnh", "Huyền", "Ngân", "Diệp", "Oanh", "Loan", "Tuyết"]

# (commune, former district, former province)
COMMUNES = [
    ("Cam Hiếu", "Cam Lộ", "Quảng Trị"),
    ("Cam Thủy", "Cam Lộ", "Quảng Trị"),
    ("Gio Mỹ", "Gio Linh", "Quảng Trị"),
    ("Triệu Ái", "Triệu Phong", "Quảng Trị"),
    ("Triệu Thành", "Triệu Phong", "Quảng Trị"),
    ("Hải Quy", "Hải Lăng", "Quảng Trị"),
    ("Vĩnh Kim", "Vĩnh Linh", "Quảng Trị"),
    ("Hướng Phùng", "Hướng Hóa", "Quảng Trị"),
    ("Phong Nha", "Bố Trạch", "Quảng Bình"),
    ("Nhân Trạch", "Bố Trạch", "Quảng Bình"),
    ("Hải Ninh", "Quảng Ninh", "Quảng Bình"),
    ("Vạn Ninh", "Quảng Ninh", "Quảng Bình"),
    ("Quảng Phú", "Quảng Trạch", "Quảng Bình"),
    ("Đồng Lê", "Tuyên Hóa", "Quảng Bình"),
    ("Trung Hóa", "Minh Hóa", "Quảng Bình"),
    ("Hoa Thủy", "Lệ Thủy", "Quảng Bình"),
    ("Quảng Xuân", "Quảng Trạch", "Quảng Bình"),
]
VILLAGES = ["thôn Đông", "thôn Tây", "thôn Phú Lộc", "thôn Tân Định", "thôn An Mỹ", "thôn Cồn Trâm"]
VILLAGES += ["thôn 1", "thôn 3", "thôn Trung Chỉ", "thôn Hà Thượng", "khu phố 2", "thôn Xuân Mỹ"]
VILLAGES += ["thôn Bắc Phú", "thôn Nam Hải", "thôn Lệ Xuyên", "thôn Mỹ Hòa"]
PROVINCE_PREFIX = {"Quảng Trị": "045", "Quảng Bình": "044"}
AGENCY_CODES = ["000.00.19.H12", "000.21.30.H50", "000.03.24.H12", "000.00.12.H50", "000.17.22.H12"]

CAN_CU = [
    "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;",
    "Căn cứ Luật Hộ tịch ngày 20 tháng 11 năm 2014;",
    "Căn cứ Nghị định số 61/2018/NĐ-CP ngày 23 tháng 4 năm 2018 của Chính phủ về thực hiện cơ chế "
    "một cửa, một cửa liên thông trong giải quyết thủ tục hành chính;",
    "Căn cứ Nghị định số 45/2020/NĐ-CP ngày 08 tháng 4 năm 2020 của Chính phủ về thực hiện thủ tục "
    "hành chính trên môi trường điện tử;",
    "Căn cứ Nghị định số 30/2020/NĐ-CP ngày 05 tháng 3 năm 2020 của Chính phủ về công tác văn thư;",
    "Căn cứ Thông tư số 01/2023/TT-VPCP ngày 05 tháng 4 năm 2023 của Văn phòng Chính phủ quy định một "
    "số nội dung và biện pháp thi hành trong số hóa hồ sơ, kết quả giải quyết thủ tục hành chính;",
    "Căn cứ Nghị định số 123/2015/NĐ-CP ngày 15 tháng 11 năm 2015 của Chính phủ quy định chi tiết một "
    "số điều và biện pháp thi hành Luật Hộ tịch;",
]
PURPOSES = [
    "hoàn thiện hồ sơ đề nghị hỗ trợ sửa chữa nhà ở",
    "bổ sung hồ sơ vay vốn tại Ngân hàng Chính sách xã hội",
    "làm thủ tục đăng ký kết hôn",
    "hoàn thiện hồ sơ xin việc làm",
    "bổ sung hồ sơ hưởng trợ cấp xã hội hằng tháng",
    "làm thủ tục nhập học cho con",
]
FILLER = [
    "Bộ phận Tiếp nhận và Trả kết quả có trách nhiệm số hóa toàn bộ thành phần hồ sơ đã tiếp nhận, "
    "cập nhật kết quả lên Hệ thống thông tin giải quyết thủ tục hành chính của tỉnh đúng thời hạn.",
    "Công chức được giao nhiệm vụ kiểm tra tính đầy đủ, chính xác của bản điện tử so với bản giấy "
    "trước khi ký số và chịu trách nhiệm trước Chủ tịch Ủy ban nhân dân xã về kết quả thực hiện.",
    "Trường hợp hồ sơ chưa đầy đủ thành phần theo quy định, công chức tiếp nhận hướng dẫn tổ chức, "
    "cá nhân bổ sung một lần, đầy đủ bằng Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ.",
    "Kinh phí thực hiện được bố trí từ nguồn ngân sách xã năm {year} và các nguồn hợp pháp khác "
    "theo quy định hiện hành.",
    "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân xã theo dõi, tổng hợp tình hình thực hiện, "
    "báo cáo Chủ tịch Ủy ban nhân dân xã trước ngày {day} tháng {month2} năm {year}.",
    "Các thôn, khu phố thông báo rộng rãi nội dung này đến toàn thể nhân dân trên địa bàn để biết "
    "và thực hiện; trong quá trình triển khai nếu có vướng mắc, kịp thời phản ánh về Ủy ban nhân dân xã.",
    "Hồ sơ sau khi giải quyết được lưu trữ tại Bộ phận Một cửa, bản điện tử được lưu vào Kho quản lý "
    "dữ liệu điện tử của tổ chức, cá nhân để tái sử dụng khi thực hiện các thủ tục tiếp theo.",
    "Tổng số hồ sơ tiếp nhận trong tháng {month} là {n1} hồ sơ, trong đó {n2} hồ sơ trực tuyến, "
    "đã giải quyết đúng hạn {n3} hồ sơ, đạt tỷ lệ {pct}%.",
    "Người dân có thể tra cứu tình trạng hồ sơ bằng mã số hồ sơ {code} trên Cổng Dịch vụ công "
    "quốc gia hoặc liên hệ số điện thoại 0233 3{phone} trong giờ hành chính.",
]


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    male: bool
    born: str  # dd/mm/yyyy
    pid: str  # 12-digit personal ID
    address: str

    @property
    def title(self) -> str:
        return "Ông" if self.male else "Bà"


def _pick(rng: random.Random, xs: Sequence[T]) -> T:
    return xs[rng.randrange(len(xs))]


def _person(rng: random.Random, province: str, commune: str, district: str, merged: bool) -> Person:
    male = rng.random() < 0.5
    middles, givens = (MIDDLES_M, GIVEN_M) if male else (MIDDLES_F, GIVEN_F)
    name = f"{_pick(rng, SURNAMES)} {_pick(rng, middles)} {_pick(rng, givens)}"
    year = rng.randint(1950, 2004)
    born = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{year}"
    century = 0 if year < 2000 else 2
    g = century + (0 if male else 1)
    pid = f"{PROVINCE_PREFIX[province]}{g}{year % 100:02d}{rng.randrange(10**6):06d}"
    if merged:
        address = f"{_pick(rng, VILLAGES)}, xã {commune}, tỉnh Quảng Trị"
    else:
        address = f"{_pick(rng, VILLAGES)}, xã {commune}, huyện {district}, tỉnh {province}"
    return Person(name, male, born, pid, address)


def _date_words(day: int, month: int, year: int) -> str:
    # Decree 30/2020: days below 10 and months below 3 get a leading zero
    m = f"{month:02d}" if month < 3 else str(month)
    return f"ngày {day:02d} tháng {m} năm {year}"


@dataclass(frozen=True, slots=True)
class _Content:
    kind: str
    issuer: tuple[str, str]
    number: str
    vv: tuple[str, ...]  # "V/v" lines under the number (công văn only)
    place_date: str
    title: str
    summary: tuple[str, ...]
    pre: tuple[tuple[str, str], ...]  # (style, text): "centre-bold" or "para"
    body: tuple[tuple[str, str], ...]
    recipients: tuple[str, ...]
    sign_lines: tuple[str, ...]
    signer: str


def _content(seed: int) -> _Content:
    rng = random.Random(seed * 7919 + 17)
    commune, district, province = _pick(rng, COMMUNES)
    year = rng.randint(2021, 2025)
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    merged = (year, month) >= (2025, 7)
    home_province = "Quảng Trị" if merged else province
    place = _pick(rng, [commune, home_province])
    date = _date_words(day, month, year)
    kind = _pick(rng, ["QUYẾT ĐỊNH", "THÔNG BÁO", "GIẤY XÁC NHẬN", "CÔNG VĂN"])
    code = {"QUYẾT ĐỊNH": "QĐ-UBND", "THÔNG BÁO": "TB-UBND", "GIẤY XÁC NHẬN": "GXN-UBND"}.get(
        kind, _pick(rng, ["UBND-VP", "UBND"])
    )
    number = f"Số: {rng.randint(1, 420):02d}/{code}"
    p1 = _person(rng, province, commune, district, merged)
    p2 = _person(rng, province, commune, district, merged)
    dossier = f"{_pick(rng, AGENCY_CODES)}-{year % 100:02d}{month:02d}{day:02d}-{rng.randint(1, 60):04d}"
    fmt = {
        "year": year,
        "month": month,
        "month2": min(month + 1, 12),
        "day": f"{min(day + 7, 28):02d}",
        "n1": (n1 := rng.randint(40, 160)),
        "n2": (n2 := rng.randint(10, n1)),
        "n3": (n3 := rng.randint(n2 // 2, n1)),
        "pct": f"{100 * n3 / n1:.1f}".replace(".", ","),
        "code": dossier,
        "phone": f"{rng.randint(0, 999999):06d}",
    }
    fillers = [f.format(**fmt) for f in rng.sample(FILLER, len(FILLER))]
    cu = rng.sample(CAN_CU, rng.randint(3, 4))
    pre: list[tuple[str, str]] = []
    body: list[tuple[str, str]] = []
    vv: tuple[str, ...] = ()
    recipients = ("Nơi nhận:", "- Như Điều 3;", "- UBND tỉnh (b/c);", "- Lưu: VT, VP.")
    boss = _pick(rng, [("TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH"), ("KT. CHỦ TỊCH", "PHÓ CHỦ TỊCH")])
    purpose = _pick(rng, PURPOSES)

    def who(p: Person) -> list[tuple[str, str]]:
        return [
            ("para", f"{p.title}: {p.name}, sinh ngày {p.born};"),
            ("para", f"Số định danh cá nhân: {p.pid};"),
            ("para", f"Nơi cư trú: {p.address}."),
        ]

    if kind == "QUYẾT ĐỊNH":
        subject = _pick(
            rng,
            [
                f"Về việc hỗ trợ kinh phí sửa chữa nhà ở cho hộ {p1.title.lower()} {p1.name}",
                "Về việc thành lập Tổ công tác số hóa hồ sơ, kết quả giải quyết thủ tục hành chính",
                f"Về việc công nhận hộ gia đình {p1.title.lower()} {p1.name} thoát nghèo năm {year}",
            ],
        )
        summary = (subject,)
        pre = [("centre-bold", f"CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ {commune.upper()}")]
        body = [("para", c) for c in cu]
        body.append(("para", f"Xét đề nghị của công chức Văn phòng - Thống kê xã tại hồ sơ số {dossier}."))
        body.append(("centre-bold", "QUYẾT ĐỊNH:"))
        body.append(("para", f"Điều 1. {subject.removeprefix('Về việc ').capitalize()}, cụ thể:"))
        body += who(p1)
        body.append(
            (
                "para",
                f"Điều 2. Giao công chức phụ trách phối hợp với {p2.title.lower()} {p2.name}, "
                f"số định danh cá nhân {p2.pid}, thực hiện các nội dung tại Điều 1. " + fillers[0],
            )
        )
        body.append(
            (
                "para",
                "Điều 3. Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân dân "
                "xã, các cá nhân có tên tại Điều 1 chịu trách nhiệm thi hành Quyết định này.",
            )
        )
        extra = fillers[1:]
    elif kind == "THÔNG BÁO":
        summary = (
            _pick(
                rng,
                [
                    "Kết quả giải quyết thủ tục hành chính trong tháng",
                    "Về việc tiếp nhận hồ sơ trực tuyến toàn trình",
                    "Về việc niêm yết công khai hồ sơ đề nghị hỗ trợ",
                ],
            ),
        )
        body = [("para", c) for c in cu[:2]]
        body.append(("para", f"Ủy ban nhân dân xã {commune} thông báo như sau:"))
        body.append(("para", f"1. Hồ sơ có mã số {dossier}, người nộp:"))
        body += who(p1)
        body.append(
            (
                "para",
                f"2. Thời gian nhận kết quả: từ {_date_words(min(day + 3, 28), month, year)}, "
                "tại Bộ phận Tiếp nhận và Trả kết quả xã.",
            )
        )
        body.append(("para", "3. " + fillers[0]))
        extra = fillers[1:]
        recipients = ("Nơi nhận:", "- Các thôn, khu phố;", "- Đài truyền thanh xã;", "- Lưu: VT.")
    elif kind == "GIẤY XÁC NHẬN":
        summary = (
            _pick(
                rng,
                [
                    "Về việc xác nhận hoàn cảnh gia đình",
                    "Về việc xác nhận đang sinh sống tại địa phương",
                    "Về việc xác nhận hộ gia đình làm nông nghiệp",
                ],
            ),
        )
        body = [("para", f"Ủy ban nhân dân xã {commune} xác nhận:")]
        body += who(p1)
        body.append(
            (
                "para",
                f"Là {_pick(rng, ['con', 'vợ', 'chồng', 'mẹ', 'cha'])} của {p2.title.lower()} "
                f"{p2.name}, số định danh cá nhân {p2.pid}, hiện đang sinh sống tại địa phương.",
            )
        )
        body.append(("para", f"Giấy xác nhận này cấp cho {p1.title.lower()} {p1.name} để {purpose}."))
        body.append(("para", f"Giấy xác nhận có giá trị đến hết ngày {min(day + 2, 28):02d}/{month:02d}/{year + 1}."))
        extra = fillers
        recipients = ("Nơi nhận:", "- Như trên;", "- Lưu: VT.")
    else:  # CÔNG VĂN
        vv = _pick(
            rng,
            [
                ("V/v đôn đốc số hóa hồ sơ, kết quả", "giải quyết thủ tục hành chính"),
                ("V/v báo cáo tình hình tiếp nhận", f"hồ sơ tháng {month} năm {year}"),
                ("V/v phối hợp xác minh thông tin", "công dân"),
            ],
        )
        summary = ()
        pre = [
            (
                "centre",
                "Kính gửi: "
                + _pick(rng, ["Các thôn, khu phố trên địa bàn xã", "Công an xã", f"Trường Tiểu học {commune}"])
                + ".",
            )
        ]
        body = [
            (
                "para",
                f"Thực hiện {cu[-1].removeprefix('Căn cứ ').rstrip(';')}, Ủy ban nhân dân xã "
                f"{commune} đề nghị các đơn vị thực hiện một số nội dung sau:",
            )
        ]
        body.append(("para", "1. " + fillers[0]))
        body.append(
            (
                "para",
                f"2. Phối hợp xác minh thông tin của {p1.title.lower()} {p1.name}, sinh ngày "
                f"{p1.born}, số định danh cá nhân {p1.pid}, nơi cư trú: {p1.address}.",
            )
        )
        body.append(("para", "3. " + fillers[1]))
        extra = fillers[2:]
        recipients = ("Nơi nhận:", "- Như trên;", "- Lưu: VT, VP.")

    return _Content(
        kind=kind,
        issuer=("UỶ BAN NHÂN DÂN", f"XÃ {commune.upper()}"),
        number=number,
        vv=vv,
        place_date=f"{place}, {date}",
        title=kind if kind != "CÔNG VĂN" else "",
        summary=summary,
        pre=tuple(pre),
        body=tuple(body) + tuple(("para", f) for f in extra),
        recipients=recipients,
        sign_lines=boss,
        signer=p2.name if rng.random() < 0.2 else _person(rng, province, commune, district, merged).name,
    )


# --------------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=64)
def _font(path: Path, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size_px)


@dataclass(frozen=True, slots=True)
class _Op:
    text: str
    font: Path
    pt: float
    x: float  # left edge
    y: float  # top of the line box
    width: float  # justified width (0 = natural)


class _Layout:
    """Collects text ops for one page at one dpi; nothing is drawn until `draw`."""

    def __init__(self, dpi: int, spacing: float) -> None:
        self.dpi = dpi
        self.spacing = spacing
        self.ops: list[_Op] = []
        self.extras: dict[str, float] = {}

    def mm(self, v: float) -> float:
        return v / 25.4 * self.dpi

    def px(self, pt: float) -> int:
        return max(1, round(pt * self.dpi / 72))

    def width(self, text: str, font: Path, pt: float) -> float:
        return float(_font(font, self.px(pt)).getlength(text))

    def line_h(self, pt: float) -> float:
        return self.px(pt) * self.spacing

    def put(self, text: str, font: Path, pt: float, x0: float, x1: float, y: float, align: str) -> float:
        """Place one line inside [x0, x1]; return its natural width."""
        w = self.width(text, font, pt)
        x = {"left": x0, "centre": (x0 + x1 - w) / 2, "right": x1 - w}[align]
        self.ops.append(_Op(text, font, pt, x, y, 0.0))
        return w

    def wrap(self, text: str, font: Path, pt: float, width: float, indent: float) -> list[str]:
        words = text.split()
        lines: list[str] = []
        cur: list[str] = []
        for word in words:
            room = width - (indent if not lines else 0.0)
            if cur and self.width(" ".join([*cur, word]), font, pt) > room:
                lines.append(" ".join(cur))
                cur = [word]
            else:
                cur.append(word)
        if cur:
            lines.append(" ".join(cur))
        return lines

    def paragraph(self, text: str, font: Path, pt: float, x0: float, x1: float, y: float, indent: float) -> float:
        lines = self.wrap(text, font, pt, x1 - x0, indent)
        for i, line in enumerate(lines):
            left = x0 + (indent if i == 0 else 0.0)
            last = i == len(lines) - 1
            self.ops.append(_Op(line, font, pt, left, y, 0.0 if last else x1 - left))
            y += self.line_h(pt)
        return y


def _layout(c: _Content, dpi: int, spacing: float, body_pt: float) -> tuple[_Layout, float]:
    """Lay the page out; return the layout and the bottom y of the last text line."""
    lay = _Layout(dpi, spacing)
    mm = lay.mm
    page_w = mm(A4_MM[0])
    left, right, top = mm(30), page_w - mm(15), mm(18)
    # header: two blocks side by side; left block (issuer, number, V/v) is read first
    lx0, lx1 = mm(18), mm(92)
    rx0, rx1 = mm(88), page_w - mm(10)
    hpt = 12.5
    y = top
    lay.put(c.issuer[0], REGULAR, hpt, lx0, lx1, y, "centre")
    y += lay.line_h(hpt)
    w = lay.put(c.issuer[1], BOLD, hpt, lx0, lx1, y, "centre")
    y += lay.line_h(hpt)
    lay.extras["rule_l_y"] = y + lay.px(hpt) * 0.12
    lay.extras["rule_l_w"] = w * 0.45
    lay.extras["rule_l_c"] = (lx0 + lx1) / 2
    y += mm(3)
    lay.put(c.number, REGULAR, 13, lx0, lx1, y, "centre")
    y += lay.line_h(13)
    for v in c.vv:
        lay.put(v, REGULAR, 12, lx0, lx1, y, "centre")
        y += lay.line_h(12)
    y_left = y
    y = top
    lay.put("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", BOLD, hpt, rx0, rx1, y, "centre")
    y += lay.line_h(hpt)
    w = lay.put("Độc lập - Tự do - Hạnh phúc", BOLD, 13, rx0, rx1, y, "centre")
    y += lay.line_h(13)
    lay.extras["rule_r_y"] = y + lay.px(13) * 0.12
    lay.extras["rule_r_w"] = w
    lay.extras["rule_r_c"] = (rx0 + rx1) / 2
    y += mm(3)
    lay.put(c.place_date, ITALIC, 13, rx0, rx1, y, "centre")
    y += lay.line_h(13)
    y = max(y, y_left) + mm(6)
    # title and summary
    if c.title:
        lay.put(c.title, BOLD, 14, left, right, y, "centre")
        y += lay.line_h(14)
    for s in c.summary:
        for line in lay.wrap(s, BOLD, 13.5, right - left - mm(20), 0):
            lay.put(line, BOLD, 13.5, left, right, y, "centre")
            y += lay.line_h(13.5)
    y += mm(4)
    lay.extras["body_start"] = len(lay.ops)
    for style, text in (*c.pre, *c.body):
        if style == "para":
            y = lay.paragraph(text, REGULAR, body_pt, left, right, y, mm(10))
        else:
            font = BOLD if style == "centre-bold" else REGULAR
            for line in lay.wrap(text, font, body_pt, right - left, 0):
                lay.put(line, font, body_pt, left, right, y, "centre")
                y += lay.line_h(body_pt)
            if style == "centre-bold":
                y += mm(1.5)
    lay.extras["body_end"] = len(lay.ops)
    y += mm(5)
    # footer: recipients (left, read first), then the signature block (right)
    yl = y
    for i, r in enumerate(c.recipients):
        font, pt = (BOLD_ITALIC, 12) if i == 0 else (REGULAR, 11)
        lay.put(r, font, pt, mm(30), mm(100), yl, "left")
        yl += lay.line_h(pt)
    sx0, sx1 = mm(105), page_w - mm(15)
    ys = y
    for s in c.sign_lines:
        lay.put(s, BOLD, 13, sx0, sx1, ys, "centre")
        ys += lay.line_h(13)
    lay.extras["sign_top"] = ys
    lay.extras["sign_cx"] = (sx0 + sx1) / 2
    ys += mm(22)
    lay.put(c.signer, BOLD, 13, sx0, sx1, ys, "centre")
    lay.extras["signer_y"] = ys
    ys += lay.line_h(13)
    return lay, max(yl, ys)


def _draw(lay: _Layout, size: tuple[int, int], paper: tuple[int, int, int]) -> tuple[Image.Image, list[Line]]:
    img = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(img)
    lines: list[Line] = []
    for op in lay.ops:
        font = _font(op.font, lay.px(op.pt))
        words = op.text.split(" ")
        if op.width > 0 and len(words) > 1:
            natural = sum(font.getlength(w) for w in words)
            gap = (op.width - natural) / (len(words) - 1)
            x = op.x
            for w in words:
                draw.text((x, op.y), w, font=font, fill=INK)
                x += font.getlength(w) + gap
            x1 = op.x + op.width
        else:
            draw.text((op.x, op.y), op.text, font=font, fill=INK)
            x1 = op.x + font.getlength(op.text)
        bb = draw.textbbox((op.x, op.y), op.text, font=font)
        lines.append(Line(unicodedata.normalize("NFC", op.text), (int(op.x), int(bb[1]), math.ceil(x1), int(bb[3]))))
    t = max(2, round(lay.px(1)))
    ex = lay.extras
    for side in ("l", "r"):
        c, w, y = ex[f"rule_{side}_c"], ex[f"rule_{side}_w"], ex[f"rule_{side}_y"]
        draw.line([(c - w / 2, y), (c + w / 2, y)], fill=INK, width=t)
    return img, lines


def _multiply(img: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int], x: int, y: int) -> None:
    """Multiply-blend ink of `colour` with coverage `alpha` (0..1) onto img at (x, y), in place."""
    h, w = alpha.shape
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    ink = np.asarray(colour, np.float32) / 255.0
    region = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(region * (1.0 - a * (1.0 - ink)), 0, 255).astype(np.uint8)


def _seal_mask(lay: _Layout, issuer: str, province: str, rng: random.Random) -> np.ndarray:
    r = lay.mm(17.5)
    size = int(2 * r + lay.mm(4))
    c = size / 2
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    d.ellipse([c - r, c - r, c + r, c + r], outline=255, width=max(2, int(lay.mm(0.9))))
    ri = r - lay.mm(6.5)
    d.ellipse([c - ri, c - ri, c + ri, c + ri], outline=255, width=max(1, int(lay.mm(0.45))))
    text = f"{issuer} * TỈNH {province.upper()} * "
    font = _font(BOLD, lay.px(7.5))
    rt = r - lay.mm(3.6)
    for i, ch in enumerate(text):
        ang = 2 * math.pi * i / len(text) - math.pi / 2
        glyph = Image.new("L", (lay.px(10), lay.px(10)), 0)
        ImageDraw.Draw(glyph).text((glyph.width / 2, glyph.height / 2), ch, font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(-math.degrees(ang) - 90, resample=Image.Resampling.BICUBIC)
        gx = c + rt * math.cos(ang) - glyph.width / 2
        gy = c + rt * math.sin(ang) - glyph.height / 2
        m.paste(255, (int(gx), int(gy)), glyph)
    # five-pointed star in the centre
    rs = lay.mm(4.5)
    pts = []
    for k in range(10):
        rad = rs if k % 2 == 0 else rs * 0.4
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((c + rad * math.cos(a), c - lay.mm(1.5) + rad * math.sin(a)))
    d.polygon(pts, fill=255)
    m = m.rotate(rng.uniform(-40, 40), resample=Image.Resampling.BICUBIC)
    alpha = np.asarray(m, np.float32) / 255.0
    # uneven ink: a stamp never prints evenly
    nrng = np.random.default_rng(rng.randrange(2**32))
    low = cv2.resize(nrng.uniform(0.55, 1.0, (8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(alpha * low * 0.9, 0, 1)


def _signature_mask(lay: _Layout, w: float, h: float, rng: random.Random) -> np.ndarray:
    m = Image.new("L", (int(w), int(h)), 0)
    d = ImageDraw.Draw(m)
    n = 140
    f1, f2, f3 = rng.uniform(1.5, 3.5), rng.uniform(4, 9), rng.uniform(0.5, 1.5)
    ph = rng.uniform(0, 6.28)
    pts = []
    for i in range(n):
        t = i / (n - 1)
        x = w * (0.08 + 0.84 * t) + w * 0.05 * math.sin(2 * math.pi * f2 * t + ph)
        y = h * (0.55 - 0.25 * t + 0.22 * math.sin(2 * math.pi * f1 * t + ph) * math.cos(2 * math.pi * f3 * t))
        pts.append((x, y))
    d.line(pts, fill=255, width=max(2, int(lay.mm(0.45))), joint="curve")
    d.line([(w * 0.1, h * 0.8), (w * 0.85, h * 0.68)], fill=255, width=max(2, int(lay.mm(0.35))))
    return np.asarray(m, np.float32) / 255.0


def render_layout(seed: int = 0, dpi: int = 300, colour: bool = False, seal: bool = False) -> Page:
    """A clean upright A4 page and its text lines (with boxes) in reading order."""
    content = _content(seed)
    size = (round(A4_MM[0] / 25.4 * dpi), round(A4_MM[1] / 25.4 * dpi))
    bottom_limit = size[1] - 18 / 25.4 * dpi
    rng = random.Random(seed * 104729 + 3)
    # shorten the body to the target line count (25-35 body lines), then tighten spacing to fit A4
    target = rng.randint(25, 35)
    body = list(content.body)
    while True:
        c = _replace_body(content, body)
        lay, bottom = _layout(c, dpi, 1.18, 13)
        nbody = _count_body_lines(lay)
        if nbody <= target or len(body) <= 4:
            break
        body.pop()
    for spacing in (1.18, 1.12, 1.06, 1.0):
        lay, bottom = _layout(c, dpi, spacing, 13)
        if bottom <= bottom_limit:
            break
    while bottom > bottom_limit and len(body) > 4:
        body.pop()
        c = _replace_body(content, body)
        lay, bottom = _layout(c, dpi, 1.0, 13)
    paper = (255, 255, 255)
    if colour:
        r = rng.randint(244, 251)
        paper = (r, r - rng.randint(1, 4), r - rng.randint(10, 20))  # warm off-white
    pil, lines = _draw(lay, size, paper)
    img = np.asarray(pil).copy()
    if seal:
        sig = _signature_mask(lay, lay.mm(45), lay.mm(20), rng)
        sx = int(lay.extras["sign_cx"] - sig.shape[1] / 2 + lay.mm(rng.uniform(-5, 5)))
        sy = int(lay.extras["sign_top"] + lay.mm(1))
        _multiply(img, sig, (25, 45, 165), sx, sy)
        province = "Quảng Trị" if "Quảng Trị" in c.place_date or rng.random() < 0.5 else "Quảng Bình"
        m = _seal_mask(lay, f"{c.issuer[0]} {c.issuer[1]}", province, rng)
        cx = lay.extras["sign_cx"] - lay.mm(rng.uniform(14, 22))
        cy = lay.extras["sign_top"] + lay.mm(rng.uniform(4, 10))
        _multiply(img, m, (205, 30, 45), int(cx - m.shape[1] / 2), int(cy - m.shape[0] / 2))
    return Page(img, tuple(lines), seed, dpi, content.kind)


def _replace_body(c: _Content, body: list[tuple[str, str]]) -> _Content:
    return _Content(
        c.kind, c.issuer, c.number, c.vv, c.place_date, c.title, c.summary, c.pre, tuple(body),
        c.recipients, c.sign_lines, c.signer,
    )  # fmt: skip


def _count_body_lines(lay: _Layout) -> int:
    return int(lay.extras["body_end"] - lay.extras["body_start"])


def render_page(seed: int = 0, dpi: int = 300, colour: bool = False, seal: bool = False) -> tuple[np.ndarray, str]:
    """A clean upright A4 Vietnamese administrative page (RGB uint8) and its NFC ground truth."""
    page = render_layout(seed, dpi, colour, seal)
    return page.image, page.text


# --------------------------------------------------------------------------------------------------
# Degradations


def _paper_colour(img: np.ndarray) -> np.ndarray:
    flat = img.reshape(-1, img.shape[2]) if img.ndim == 3 else img.reshape(-1, 1)
    return np.percentile(flat[:: max(1, flat.shape[0] // 200_000)], 90, axis=0).astype(np.float32)


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if img.ndim == 3 else out


def degrade_scan(
    img: np.ndarray,
    *,
    skew_deg: float = 0.0,
    upside_down: bool = False,
    noise: float = 8.0,
    dpi_in: int = 300,
    dpi_out: int | None = None,
    jpeg_quality: int | None = None,
    border: bool | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Make a clean page look like a flatbed/ADF scan of it.

    Slight optical blur; rotation by `skew_deg` (positive = counter-clockwise as seen in the image;
    the uncovered corners are paper-white); 180 degrees when `upside_down`; a grey scanner border
    along one or two edges when `border` (None: decided by the seed, about one scan in three);
    Gaussian noise of standard deviation `noise`; optional downsampling from `dpi_in` to `dpi_out`;
    optional JPEG round trip. Grey input stays grey, RGB stays RGB. Same size unless `dpi_out`.
    """
    rng = np.random.default_rng(seed)
    f = img.astype(np.float32)
    sigma = dpi_in / 300 * float(rng.uniform(0.5, 0.9))
    f = cv2.GaussianBlur(f, (0, 0), sigma)
    paper = _paper_colour(img)
    h, w = f.shape[:2]
    if skew_deg:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), skew_deg, 1.0)
        fill = tuple(float(v) for v in paper) if f.ndim == 3 else float(paper[0])
        f = cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if upside_down:
        f = np.ascontiguousarray(f[::-1, ::-1])
    if border if border is not None else rng.random() < 0.35:
        band = max(2, int(dpi_in / 25.4 * rng.uniform(1.0, 3.5)))
        grey = float(rng.uniform(80, 150))
        for edge in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
            ramp = np.linspace(grey, grey + 40, band, dtype=np.float32)
            if edge == 0:
                f[:band] = ramp[:, None, None] if f.ndim == 3 else ramp[:, None]
            elif edge == 1:
                f[-band:] = ramp[::-1, None, None] if f.ndim == 3 else ramp[::-1, None]
            elif edge == 2:
                f[:, :band] = ramp[None, :, None] if f.ndim == 3 else ramp[None, :]
            else:
                f[:, -band:] = ramp[None, ::-1, None] if f.ndim == 3 else ramp[None, ::-1]
    if dpi_out and dpi_out != dpi_in:
        scale = dpi_out / dpi_in
        f = cv2.resize(f, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    if noise:
        f += rng.normal(0.0, noise, f.shape).astype(np.float32)
    out = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if jpeg_quality:
        out = _jpeg_roundtrip(out, jpeg_quality)
    return out


def _desk(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A desk background: wood grain in some brown, or a dark textured surface."""
    # computed at quarter resolution (it is smooth) and scaled up by the caller
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) * 4.0
    low = cv2.resize(rng.normal(0, 1, (12, 9)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.6)
    if rng.random() < 0.6:
        base = np.array([rng.uniform(110, 190), rng.uniform(70, 120), rng.uniform(35, 75)], np.float32)  # warm brown
        horizontal = rng.random() < 0.5
        coord = yy if horizontal else xx
        other = xx if horizontal else yy
        freq = rng.uniform(0.015, 0.04)
        grain = np.sin(coord * freq + 6.0 * low + 0.002 * other) * 0.5 + 0.5
        streak = np.sin(coord * freq * 7.3 + 2.0 * low) * 0.5 + 0.5
        shade = 0.78 + 0.16 * grain + 0.06 * streak + 0.03 * fine
    else:
        base = np.full(3, rng.uniform(35, 80), np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
        shade = 0.85 + 0.1 * low / 3 + 0.08 * fine
    return np.clip(shade[..., None] * base[None, None, :], 0, 255)


def camera_photo_with_corners(img: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`camera_photo` plus the page corners (TL, TR, BR, BL) in the photo, shape (4, 2) float."""
    rng = np.random.default_rng(seed + 9001)
    fw, fh = (3000, 4000) if rng.random() < 0.6 else (2448, 3264)
    rgb = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    ph_, pw_ = rgb.shape[:2]
    page_h = fh * rng.uniform(0.72, 0.82)
    page_w = page_h * pw_ / ph_
    if page_w > fw * 0.8:
        page_w = fw * 0.8
        page_h = page_w * ph_ / pw_
    cx = fw / 2 + rng.uniform(-0.02, 0.02) * fw
    cy = fh / 2 + rng.uniform(-0.02, 0.02) * fh
    base = np.array(
        [[cx - page_w / 2, cy - page_h / 2], [cx + page_w / 2, cy - page_h / 2],
         [cx + page_w / 2, cy + page_h / 2], [cx - page_w / 2, cy + page_h / 2]], np.float32
    )  # fmt: skip
    moves = rng.uniform(0.03, 0.10, (4, 1)) * np.array([page_w, page_h], np.float32)
    direction = rng.uniform(0, 2 * np.pi, 4)
    corners = base + moves * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    margin = 0.025 * min(fw, fh)
    corners[:, 0] = np.clip(corners[:, 0], margin, fw - margin)
    corners[:, 1] = np.clip(corners[:, 1], margin, fh - margin)
    corners = corners.astype(np.float32)
    src = np.array([[0, 0], [pw_, 0], [pw_, ph_], [0, ph_]], np.float32)
    m = cv2.getPerspectiveTransform(src, corners)
    warped = cv2.warpPerspective(rgb, m, (fw, fh), flags=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros((fh, fw), np.float32)
    cv2.fillConvexPoly(mask, np.rint(corners).astype(np.int32), 1.0, lineType=cv2.LINE_AA)
    qw, qh = fw // 4, fh // 4
    desk = _desk(qw, qh, rng)
    small_mask = cv2.resize(mask, (qw, qh), interpolation=cv2.INTER_AREA)
    shadow = cv2.GaussianBlur(np.roll(small_mask, (int(qh * 0.006), int(qw * 0.006)), (0, 1)), (0, 0), qw * 0.008)
    desk *= (1.0 - 0.45 * shadow)[..., None]
    # uneven light: a gradient in a random direction times a vignette (also at quarter resolution)
    yy, xx = np.mgrid[0:qh, 0:qw].astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    proj = ((xx - qw / 2) * np.cos(ang) + (yy - qh / 2) * np.sin(ang)) / max(qw, qh)
    light = 1.0 - rng.uniform(0.12, 0.30) * (proj + 0.5)
    r2 = ((xx - qw / 2) / qw) ** 2 + ((yy - qh / 2) / qh) ** 2
    light *= 1.0 - rng.uniform(0.15, 0.35) * r2 / 0.5
    light *= rng.uniform(0.92, 1.05)
    desk = cv2.resize(desk, (fw, fh), interpolation=cv2.INTER_LINEAR)
    light = cv2.resize(light.astype(np.float32), (fw, fh), interpolation=cv2.INTER_LINEAR)
    m3 = mask[..., None]
    out = (warped * m3 + desk * (1.0 - m3)) * light[..., None]
    out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.8, 1.4)))
    noise = np.empty_like(out)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, 0.0, float(rng.uniform(2.5, 5.0)))
    out += noise
    photo = out.clip(0, 255).astype(np.uint8)
    return _jpeg_roundtrip(photo, 90), corners


def camera_photo(img: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A phone / document-camera photo of the page: perspective (corners moved 3-10 %), on a desk,
    uneven light, slight blur and noise, 12 MP (3000x4000) or 8 MP (2448x3264) portrait, JPEG q90
    round trip. The page is always fully inside the frame."""
    return camera_photo_with_corners(img, seed=seed)[0]


# --------------------------------------------------------------------------------------------------
# Error rates


def normalise(text: str) -> str:
    """NFC, all whitespace runs (including newlines) collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance (unit costs). Uses rapidfuzz when installed, else a numpy row DP."""
    try:
        from rapidfuzz.distance import Levenshtein
    except ImportError:  # pragma: no cover - exercised only without rapidfuzz
        return _levenshtein_np(a, b)
    return int(Levenshtein.distance(a, b))


def _levenshtein_np(a: str, b: str) -> int:
    if not a or not b:
        return len(a) + len(b)
    bv = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    idx = np.arange(len(b) + 1, dtype=np.int64)
    row = idx.copy()
    for i, ch in enumerate(a, start=1):
        sub = row[:-1] + (bv != ord(ch))
        cand = np.empty_like(row)
        cand[0] = i
        cand[1:] = np.minimum(row[1:] + 1, sub)
        row = np.minimum.accumulate(cand - idx) + idx  # insertions along the row
    return int(row[-1])


def cer(reference: str, hypothesis: str) -> float:
    """Strict character error rate: edit distance / reference length, on `normalise`d text.

    Reading order matters. 0.0 is perfect; it can exceed 1.0 when the hypothesis adds much text.
    An empty reference gives 0.0 for an empty hypothesis, else 1.0.
    """
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(ref, hyp) / len(ref)


_CLAIMED = np.uint32(0xFFFFFFFF)


def _best_substring(line: str, hyp: np.ndarray) -> tuple[int, int, int]:
    """Semi-global alignment: (cost, start, end) of the stretch hyp[start:end] closest to `line`."""
    n = hyp.shape[0]
    idx = np.arange(n + 1, dtype=np.int64)
    dist = np.zeros(n + 1, dtype=np.int64)  # a match may start anywhere for free
    start = idx.copy()
    for i, ch in enumerate(line, start=1):
        sub = dist[:-1] + (hyp != ord(ch))
        dele = dist[1:] + 1
        use_sub = sub <= dele
        cand = np.empty_like(dist)
        cand_start = np.empty_like(start)
        cand[0], cand_start[0] = i, 0
        cand[1:] = np.where(use_sub, sub, dele)
        cand_start[1:] = np.where(use_sub, start[:-1], start[1:])
        vals = cand - idx
        run = np.minimum.accumulate(vals)
        best_k = np.maximum.accumulate(np.where(vals == run, idx, 0))  # insertions along the row
        dist = run + idx
        start = cand_start[best_k]
    end = int(np.argmin(dist))
    return int(dist[end]), int(start[end]), end


def cer_unordered(reference: str, hypothesis: str) -> float:
    """Character error rate that does not depend on the order of lines or blocks.

    1. Each reference line (longest first) is aligned to its closest stretch of the hypothesis (NFC,
       whitespace collapsed) that no other line has taken (semi-global edit distance). A line whose
       cost is at most a third of its length is accepted: its cost is counted, its stretch taken.
    2. The reference lines not accepted (in reading order) and the hypothesis text not taken (in
       its order) are compared with the plain edit distance, so a garbled region costs about what it
       costs in `cer` instead of a deletion plus an insertion.
    The sum is divided by the length of the normalised reference, as in `cer`. A perfect text read
    in another block order, or with side-by-side header lines merged into one line, scores 0.0;
    for text in the right order it is close to `cer`.
    """
    ref_lines = [ln for ln in (normalise(x) for x in reference.splitlines()) if ln]
    denom = len(" ".join(ref_lines))
    hyp = normalise(hypothesis)
    if not denom:
        return 0.0 if not hyp else 1.0
    h = np.frombuffer(hyp.encode("utf-32-le"), dtype=np.uint32).copy()
    errors = 0
    left: list[str] = []
    for k in sorted(range(len(ref_lines)), key=lambda k: len(ref_lines[k]), reverse=True):
        line = ref_lines[k]
        cost, s, e = _best_substring(line, h) if h.size else (len(line), 0, 0)
        if cost * 3 <= len(line):
            errors += cost
            h[s:e] = _CLAIMED
        else:
            left.append(line)
    order = {id(x): i for i, x in enumerate(ref_lines)}
    rest_ref = " ".join(sorted(left, key=lambda x: order[id(x)]))
    rest_hyp = normalise("".join(chr(c) if c != _CLAIMED else " " for c in h.tolist()))
    errors += levenshtein(rest_ref, rest_hyp)
    return errors / denom


# --------------------------------------------------------------------------------------------------
# Corpus on disk

KINDS = ("scan300_grey", "scan200_colour_seal", "camera")


def _save(path: Path, img: np.ndarray, dpi: int | None, quality: int | None) -> None:
    pil = Image.fromarray(img)
    kw: dict[str, object] = {}
    if dpi:
        kw["dpi"] = (dpi, dpi)
    if quality:
        kw["quality"] = quality
    buf = io.BytesIO()
    pil.save(buf, format="JPEG" if quality else "PNG", **kw)
    path.write_bytes(buf.getvalue())


def make_item(kind: str, index: int, seed_base: int = 0) -> tuple[np.ndarray, str, dict[str, object]]:
    """One corpus input of `kind`: (image, ground truth, manifest entry without `file`)."""
    seed = seed_base + KINDS.index(kind) * 1000 + index
    rng = random.Random(seed)
    if kind == "scan300_grey":
        page = render_layout(seed, 300)
        grey = cv2.cvtColor(page.image, cv2.COLOR_RGB2GRAY)
        skew = rng.uniform(0.5, 4.0) * rng.choice([-1, 1])
        upside = index % 3 == 2
        img = degrade_scan(grey, skew_deg=skew, upside_down=upside, noise=6.0, seed=seed)
        meta: dict[str, object] = {"dpi": 300, "skew_deg": round(skew, 3), "upside_down": upside}
    elif kind == "scan200_colour_seal":
        page = render_layout(seed, 300, colour=True, seal=True)
        skew = rng.uniform(0.0, 1.5) * rng.choice([-1, 1])
        upside = index % 4 == 3
        img = degrade_scan(page.image, skew_deg=skew, upside_down=upside, noise=5.0, dpi_out=200, seed=seed)
        meta = {"dpi": 200, "skew_deg": round(skew, 3), "upside_down": upside, "jpeg_quality": 75}
    elif kind == "camera":
        page = render_layout(seed, 300, colour=rng.random() < 0.5, seal=rng.random() < 0.5)
        img, corners = camera_photo_with_corners(page.image, seed=seed)
        meta = {"dpi": None, "skew_deg": None, "upside_down": False, "jpeg_quality": 90,
                "corners": np.round(corners, 1).tolist()}  # fmt: skip
    else:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    meta = {"kind": kind, "seed": seed, "doc_type": page.kind, **meta}
    return img, page.text, meta


def write_corpus(
    out_dir: Path | str, n_per_kind: int = 3, kinds: Sequence[str] = KINDS, seed_base: int = 0
) -> list[dict[str, object]]:
    """Write `n_per_kind` inputs of each kind, a .txt ground truth beside each, and manifest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: list[dict[str, object]] = []
    for kind in kinds:
        for i in range(n_per_kind):
            img, text, meta = make_item(kind, i, seed_base)
            quality = meta.get("jpeg_quality")
            ext = "jpg" if quality else "png"
            name = f"{kind}_{i:03d}.{ext}"
            dpi = meta["dpi"]
            _save(
                out / name,
                img,
                dpi if isinstance(dpi, int) else None,
                quality if isinstance(quality, int) else None,
            )
            (out / f"{kind}_{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
            manifest.append({"file": name, "truth": f"{kind}_{i:03d}.txt", **meta})
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--pages", type=int, default=3, help="inputs per kind (default 3)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--seed", type=int, default=0, help="seed base (default 0)")
    args = ap.parse_args(argv)
    manifest = write_corpus(args.out_dir, args.pages, args.kinds, args.seed)
    print(f"wrote {len(manifest)} inputs and manifest.json to {args.out_dir}")


if __name__ == "__main__":
    main()
