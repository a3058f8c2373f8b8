"""Field extraction on realistic Decree 30/2020 headers: clean, without diacritics, and with OCR noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from appliance.fields import extract_fields, fold
from appliance.model import CleanPage, Field, QrCode, Word

QD = """ỦY BAN NHÂN DÂN CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
XÃ HẢI PHÚ Độc lập - Tự do - Hạnh phúc

Số: 38/QĐ-UBND Quảng Trị, ngày 05 tháng 7 năm 2023

QUYẾT ĐỊNH

Về việc cấp giấy chứng nhận quyền sử dụng đất
cho hộ ông Nguyễn Văn An

CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ HẢI PHÚ

Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;
"""

QD_SEPARATE_COLUMNS = """ỦY BAN NHÂN DÂN
XÃ HẢI PHÚ

Số: 38/QĐ-UBND

CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
Độc lập - Tự do - Hạnh phúc

Quảng Trị, ngày 05 tháng 7 năm 2023

QUYẾT ĐỊNH
Về việc cấp giấy chứng nhận quyền sử dụng đất cho hộ ông Nguyễn Văn An

Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;
"""

NO_DIACRITICS = """UY BAN NHAN DAN CONG HOA XA HOI CHU NGHIA VIET NAM
XA HAI PHU Doc lap - Tu do - Hanh phuc
So: 38/QD-UBND Quang Tri, ngay 05 thang 7 nam 2023
QUYET DINH
Ve viec cap giay chung nhan quyen su dung dat
Can cu Luat To chuc chinh quyen dia phuong ngay 19 thang 6 nam 2015;
"""

NOISY = """ỦY BAN NHÂN DÂN CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
XÃ HẢI PHÚ Độc lập - Tự do - Hạnh phúc
S6 : 3O / QĐ - UBND Quảng Trị, ngảy 5 thảng O7 năm 2O23
QUYẾT ĐỊNH
Về việc cấp giấy chứng nhận quyền sử dụng đất
"""

CONG_VAN = """UBND HUYỆN GIO LINH CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
PHÒNG TƯ PHÁP Độc lập - Tự do - Hạnh phúc
Sô: 125/TP-HC Gio Linh, ngày 12 tháng 10 năm 2024
V/v hướng dẫn cấp bản sao
trích lục khai sinh
Kính gửi: Ủy ban nhân dân các xã, thị trấn
"""

THONG_BAO = """ỦY BAN NHÂN DÂN
XÃ VĨNH LINH
Số: 07/TB-UBND
CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
Độc lập - Tự do - Hạnh phúc
Vĩnh Linh, ngày 1 tháng 3 năm 2024
THÔNG BÁO
Kết quả giải quyết thủ tục hành chính
"""

GIAY_XAC_NHAN = """ỦY BAN NHÂN DÂN XÃ HẢI PHÚ CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM
Độc lập - Tự do - Hạnh phúc
Số: 15/GXN-UBND Hải Phú, ngày 20 tháng 11 năm 2023
GIẤY XÁC NHẬN
Ủy ban nhân dân xã Hải Phú xác nhận:
Ông Nguyễn Văn An, sinh năm 1990, số CCCD: 045 090 123 456,
và bà Lê Thị Bình, số định danh cá nhân 045190654321, cùng thường trú tại thôn Đông.
Mã hồ sơ: 000.00.06.H56 - 230515 - 0001; mã TTHC: 1.000894.000.00.00.H56
"""

TO_TRINH = """UBND XÃ HẢI PHÚ
Số: 02/TTr-UBND
Hải Phú, ngày 31 tháng 12 năm 2023
TỜ TRÌNH
Đề nghị phê duyệt kế hoạch số hóa hồ sơ năm 2024
Kính gửi: Ủy ban nhân dân huyện
"""

ENTERPRISE = """GIẤY CHỨNG NHẬN ĐĂNG KÝ DOANH NGHIỆP
CÔNG TY TRÁCH NHIỆM HỮU HẠN
Mã số doanh nghiệp: 3200123456
Chi nhánh: mã số thuế 3200123456-001
"""


def fields_of(text: str, **kw: object) -> dict[str, list[Field]]:
    out: dict[str, list[Field]] = {}
    for f in extract_fields(text, **kw):  # type: ignore[arg-type]
        out.setdefault(f.name, []).append(f)
    return out


def values(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, fs in fields_of(text).items():
        out[name] = [f.value for f in fs] if name == "so_dinh_danh" else fs[0].value
    return out


CASES = [
    (
        QD,
        {
            "co_quan_ban_hanh": "ỦY BAN NHÂN DÂN XÃ HẢI PHÚ",
            "so": "38",
            "ky_hieu": "QĐ-UBND",
            "so_ky_hieu": "38/QĐ-UBND",
            "dia_danh": "Quảng Trị",
            "ngay_ban_hanh": "2023-07-05",
            "loai_van_ban": "QUYẾT ĐỊNH",
            "trich_yeu": "Về việc cấp giấy chứng nhận quyền sử dụng đất cho hộ ông Nguyễn Văn An",
        },
    ),
    (
        QD_SEPARATE_COLUMNS,
        {
            "co_quan_ban_hanh": "ỦY BAN NHÂN DÂN XÃ HẢI PHÚ",
            "so": "38",
            "ky_hieu": "QĐ-UBND",
            "so_ky_hieu": "38/QĐ-UBND",
            "dia_danh": "Quảng Trị",
            "ngay_ban_hanh": "2023-07-05",
            "loai_van_ban": "QUYẾT ĐỊNH",
            "trich_yeu": "Về việc cấp giấy chứng nhận quyền sử dụng đất cho hộ ông Nguyễn Văn An",
        },
    ),
    (
        NO_DIACRITICS,
        {
            "co_quan_ban_hanh": "UY BAN NHAN DAN XA HAI PHU",
            "so": "38",
            "ky_hieu": "QD-UBND",
            "so_ky_hieu": "38/QD-UBND",
            "dia_danh": "Quang Tri",
            "ngay_ban_hanh": "2023-07-05",
            "loai_van_ban": "QUYẾT ĐỊNH",
            "trich_yeu": "Ve viec cap giay chung nhan quyen su dung dat",
        },
    ),
    (
        NOISY,
        {
            "co_quan_ban_hanh": "ỦY BAN NHÂN DÂN XÃ HẢI PHÚ",
            "so": "30",
            "ky_hieu": "QĐ-UBND",
            "so_ky_hieu": "30/QĐ-UBND",
            "dia_danh": "Quảng Trị",
            "ngay_ban_hanh": "2023-07-05",
            "loai_van_ban": "QUYẾT ĐỊNH",
            "trich_yeu": "Về việc cấp giấy chứng nhận quyền sử dụng đất",
        },
    ),
    (
        CONG_VAN,
        {
            "co_quan_ban_hanh": "UBND HUYỆN GIO LINH PHÒNG TƯ PHÁP",
            "so": "125",
            "ky_hieu": "TP-HC",
            "so_ky_hieu": "125/TP-HC",
            "dia_danh": "Gio Linh",
            "ngay_ban_hanh": "2024-10-12",
            "loai_van_ban": "CÔNG VĂN",
            "trich_yeu": "V/v hướng dẫn cấp bản sao trích lục khai sinh",
        },
    ),
    (
        THONG_BAO,
        {
            "co_quan_ban_hanh": "ỦY BAN NHÂN DÂN XÃ VĨNH LINH",
            "so": "07",
            "ky_hieu": "TB-UBND",
            "so_ky_hieu": "07/TB-UBND",
            "dia_danh": "Vĩnh Linh",
            "ngay_ban_hanh": "2024-03-01",
            "loai_van_ban": "THÔNG BÁO",
            "trich_yeu": "Kết quả giải quyết thủ tục hành chính",
        },
    ),
    (
        GIAY_XAC_NHAN,
        {
            "co_quan_ban_hanh": "ỦY BAN NHÂN DÂN XÃ HẢI PHÚ",
            "so": "15",
            "ky_hieu": "GXN-UBND",
            "so_ky_hieu": "15/GXN-UBND",
            "dia_danh": "Hải Phú",
            "ngay_ban_hanh": "2023-11-20",
            "loai_van_ban": "GIẤY XÁC NHẬN",
            "ma_ho_so": "000.00.06.H56-230515-0001",
            "ma_tthc": "1.000894.000.00.00.H56",
            "so_dinh_danh": ["045090123456", "045190654321"],
        },
    ),
    (
        TO_TRINH,
        {
            "co_quan_ban_hanh": "UBND XÃ HẢI PHÚ",
            "so": "02",
            "ky_hieu": "TTr-UBND",
            "so_ky_hieu": "02/TTr-UBND",
            "dia_danh": "Hải Phú",
            "ngay_ban_hanh": "2023-12-31",
            "loai_van_ban": "TỜ TRÌNH",
            "trich_yeu": "Đề nghị phê duyệt kế hoạch số hóa hồ sơ năm 2024",
        },
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_header_variants(text: str, expected: dict[str, object]) -> None:
    got = values(text)
    for name, value in expected.items():
        assert got.get(name) == value, (name, got)


def test_enterprise_codes_need_context() -> None:
    fs = fields_of(ENTERPRISE)
    assert [f.value for f in fs["ma_doanh_nghiep"]] == ["3200123456"]
    assert fs["ma_doanh_nghiep"][0].valid is True
    assert fs["loai_van_ban"][0].value == "GIẤY CHỨNG NHẬN"
    # a 10-digit phone number is not an enterprise code
    assert "ma_doanh_nghiep" not in fields_of("Điện thoại liên hệ: 0912345678")


def test_validation_results_are_attached() -> None:
    fs = fields_of("Số CCCD: 079815000001\nQuảng Trị, ngày 31 tháng 2 năm 2023\nMã hồ sơ: 000.00.06.H56-231315-0001")
    assert fs["so_dinh_danh"][0].valid is False
    assert fs["so_dinh_danh"][0].problem == "invalid_personal_id"
    assert fs["ngay_ban_hanh"][0].valid is False and fs["ngay_ban_hanh"][0].problem == "invalid_date"
    assert fs["ma_ho_so"][0].valid is False and fs["ma_ho_so"][0].problem == "invalid_dossier_code"


PROSE = """Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015; căn cứ Nghị định số
61/2018/NĐ-CP của Chính phủ về thực hiện cơ chế một cửa, một cửa liên thông trong giải quyết thủ tục hành
chính. Năm 2023 xã đã tiếp nhận 1.250 hồ sơ, trong đó 980 hồ sơ trực tuyến; tổng kinh phí 1.000.000.000
đồng. Liên hệ số điện thoại 0912345678 hoặc 02333123456. Ngày 5 tháng 7 năm 2023, đoàn kiểm tra làm việc
với xã về việc số hóa, đạt tỷ lệ 85,5 %. Số tài khoản 123456789012 tại ngân hàng.
"""


def test_no_false_positives_on_prose() -> None:
    assert extract_fields(PROSE) == ()


def test_empty_text() -> None:
    assert extract_fields("") == ()


def words_for(text: str, conf: float) -> list[Word]:
    out: list[Word] = []
    for i, line in enumerate(s for s in text.splitlines() if s.strip()):
        for j, token in enumerate(line.split()):
            out.append(Word(token, conf, (j * 10, i * 10, j * 10 + 9, i * 10 + 9), i))
    return out


def test_confidence_follows_word_confidence() -> None:
    high = fields_of(QD, words=words_for(QD, 96.0))
    low = fields_of(QD, words=words_for(QD, 40.0))
    for name in ("so_ky_hieu", "ngay_ban_hanh", "loai_van_ban", "co_quan_ban_hanh"):
        assert 0 < low[name][0].confidence < high[name][0].confidence <= 1, name
        assert low[name][0].confidence <= 0.4
    # only the words of the number are uncertain: the number's field drops, the date's does not
    mixed = words_for(QD, 96.0)
    mixed = [Word(w.text, 30.0, w.box, w.line) if "38/" in w.text else w for w in mixed]
    fs = fields_of(QD, words=mixed)
    assert fs["so_ky_hieu"][0].confidence < 0.4 < fs["ngay_ban_hanh"][0].confidence


def test_qr_values_take_precedence() -> None:
    payload = json.dumps(
        {
            "MaHoSo": "000.00.06.H56-230601-0042",
            "MaTTHC": "2.000815",
            "SoDinhDanh": "045090123456",
            "NgayHenTra": "10/06/2023",
        }
    )
    text = GIAY_XAC_NHAN
    fs = fields_of(text, qr=[QrCode(payload, (10, 10, 200, 200))])
    assert [(f.value, f.source) for f in fs["ma_ho_so"]] == [("000.00.06.H56-230601-0042", "qr")]
    assert [(f.value, f.source) for f in fs["ma_tthc"]] == [("2.000815", "qr")]
    # a repeatable field keeps other people's IDs read by OCR, without a duplicate of the QR one
    assert [(f.value, f.source) for f in fs["so_dinh_danh"]] == [
        ("045090123456", "qr"),
        ("045190654321", "ocr"),
    ]
    assert fs["ma_ho_so"][0].confidence == 1.0 and fs["ma_ho_so"][0].valid is True
    assert fs["ngay_hen_tra"][0].value == "2023-06-10"
    assert fs["so_ky_hieu"][0].source == "ocr"


def test_fold_keeps_length_and_fixes_numbers() -> None:
    for line in ("Số: 3O/QĐ-UBND", "ngày l5 tháng O7 năm 2O23", "Hải Phú", "ĐÐđ"):
        assert len(fold(line)) == len(line)
    assert fold("ngày l5 tháng O7 năm 2O23") == "ngay 15 thang 07 nam 2023"
    assert fold("Olympic lol") == "olympic lol"


FONT = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf")
BOLD = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Bold.ttf")


@pytest.mark.tesseract
def test_fields_from_real_ocr(tesseract: str) -> None:
    from appliance.ocr import recognize

    dpi = 300
    img = Image.new("L", (2480, 1400), 255)
    draw = ImageDraw.Draw(img)
    reg = ImageFont.truetype(str(FONT), 54)
    bold = ImageFont.truetype(str(BOLD), 54)
    draw.text((200, 150), "ỦY BAN NHÂN DÂN", font=reg, fill=0)
    draw.text((260, 230), "XÃ HẢI PHÚ", font=bold, fill=0)
    draw.text((1150, 150), "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", font=bold, fill=0)
    draw.text((1350, 230), "Độc lập - Tự do - Hạnh phúc", font=bold, fill=0)
    draw.text((200, 380), "Số: 38/QĐ-UBND", font=reg, fill=0)
    draw.text((1250, 380), "Quảng Trị, ngày 05 tháng 7 năm 2023", font=reg, fill=0)
    draw.text((1000, 560), "QUYẾT ĐỊNH", font=bold, fill=0)
    draw.text((450, 640), "Về việc cấp giấy chứng nhận quyền sử dụng đất", font=bold, fill=0)
    draw.text((200, 800), "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;", font=reg, fill=0)
    ocr = recognize(CleanPage(image=np.asarray(img), dpi=dpi, rotation=0, skew=0.0))
    fs = fields_of(ocr.text, words=ocr.words)
    assert fs["so_ky_hieu"][0].value == "38/QĐ-UBND"
    assert fs["ngay_ban_hanh"][0].value == "2023-07-05"
    assert fs["loai_van_ban"][0].value == "QUYẾT ĐỊNH"
    assert fs["dia_danh"][0].value == "Quảng Trị"
    assert fs["trich_yeu"][0].value.startswith("Về việc cấp giấy")
    assert 0.5 < fs["so_ky_hieu"][0].confidence <= 1
