"""QR codes generated with zxing-cpp, pasted top-left on rendered pages, found and parsed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from appliance.qr import RECEIPT_KEYS, find_qr, fold_key, parse_receipt

FONT = Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf")

RECEIPT = {
    "MaHoSo": "000.00.06.H56-230515-0001",
    "MaTTHC": "1.000894",
    "SoDinhDanh": "045090123456",
    "TenGiayTo": "Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
    "HeThong": "Hệ thống thông tin giải quyết TTHC tỉnh Quảng Trị",
    "ThoiGian": "20230515143015",
    "NgayHenTra": "20/05/2023",
}
EXPECTED = {
    "ma_ho_so": "000.00.06.H56-230515-0001",
    "ma_tthc": "1.000894",
    "so_dinh_danh": "045090123456",
    "ten_giay_to": "Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
    "he_thong": "Hệ thống thông tin giải quyết TTHC tỉnh Quảng Trị",
    "thoi_gian": "2023-05-15T14:30:15",
    "ngay_hen_tra": "2023-05-20",
}


def qr_image(text: str, size_px: int) -> np.ndarray:
    """A QR symbol (with quiet zone) scaled to about size_px, as a printer and scanner would give it."""
    symbol = np.asarray(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=1))
    big = cv2.resize(symbol, (size_px, size_px), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(big, (3, 3), 0.8)


def receipt_page(dpi: int, payload: str | None, colour: bool = False) -> tuple[np.ndarray, tuple[int, int, int]]:
    w, h = round(8.27 * dpi), round(11.69 * dpi)
    page = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), round(12 * dpi / 72))
    lines = [
        "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
        "Mã hồ sơ: 000.00.06.H56-230515-0001",
        "Ông/bà: Nguyễn Văn A",
    ]
    for i, line in enumerate(lines):
        draw.text((round(2.0 * dpi), round(1.4 * dpi) + i * round(0.3 * dpi)), line, font=font, fill=0)
    image = np.asarray(page).copy()
    placed = (0, 0, 0)
    if payload is not None:
        size = round(2.5 / 2.54 * dpi)  # a 2.5 cm symbol
        x, y = round(0.6 * dpi), round(0.5 * dpi)
        image[y : y + size, x : x + size] = qr_image(payload, size)
        placed = (x, y, size)
    if colour:
        image = np.stack([image, image, np.maximum(image, 30)], axis=2)
    return image, placed


@pytest.mark.parametrize(("dpi", "colour"), [(200, False), (300, False), (300, True)])
def test_receipt_qr_is_found_and_parsed(dpi: int, colour: bool) -> None:
    payload = json.dumps(RECEIPT, ensure_ascii=False)
    image, (x, y, size) = receipt_page(dpi, payload, colour)
    codes = find_qr(image)
    assert len(codes) == 1
    assert codes[0].text == payload
    x0, y0, x1, y1 = codes[0].box
    # the box is in full-resolution pixels and covers the symbol (inside the quiet zone)
    assert x <= x0 < x1 <= x + size + 1 and y <= y0 < y1 <= y + size + 1
    assert (x1 - x0) > 0.7 * size
    assert parse_receipt(codes[0].text) == EXPECTED


def test_page_without_qr() -> None:
    image, _ = receipt_page(300, None)
    assert find_qr(image) == ()
    assert find_qr(np.zeros((0, 0), np.uint8)) == ()
    assert find_qr(np.full((1, 1), 255, np.uint8)) == ()


def test_small_image_is_read_at_full_resolution() -> None:
    image = np.full((600, 500), 255, np.uint8)
    image[50:250, 50:250] = qr_image("000.00.06.H56-230515-0001|1.000894", 200)
    (code,) = find_qr(image)
    assert parse_receipt(code.text) == {"ma_ho_so": "000.00.06.H56-230515-0001", "ma_tthc": "1.000894"}


def test_parse_json_keys_in_any_style() -> None:
    payload = json.dumps(
        {
            "ma_ho_so": "000.00.06.h56-230515-0001",
            "MATTHC": "2.000815.000.00.00.H55.02",
            "MaDinhDanh": "045 1 85 123456",
            "Tên giấy tờ": "Phiếu hẹn",
            "he_thong": "Một cửa điện tử",
            "thoi_gian": "2023-05-15T10:30:00+07:00",
            "ngay_hen_tra": "2023-05-20",
            "khac": "bỏ qua",
        },
        ensure_ascii=False,
    )
    assert parse_receipt(payload) == {
        "ma_ho_so": "000.00.06.H56-230515-0001",
        "ma_tthc": "2.000815.000.00.00.H55.02",
        "so_dinh_danh": "045185123456",
        "ten_giay_to": "Phiếu hẹn",
        "he_thong": "Một cửa điện tử",
        "thoi_gian": "2023-05-15T10:30:00+07:00",
        "ngay_hen_tra": "2023-05-20",
    }


def test_parse_nested_json() -> None:
    payload = '{"HoSo": {"MaHoSo": "H15.50.05.13-230515-0975", "DinhDanh": {"SoDinhDanh": "001090123456"}}}'
    assert parse_receipt(payload) == {"ma_ho_so": "H15.50.05.13-230515-0975", "so_dinh_danh": "001090123456"}


@pytest.mark.parametrize(
    "payload",
    [
        "Mã hồ sơ: 000.00.06.H56-230515-0001\nMã TTHC: 1.000894\nSố định danh: 045090123456\n"
        "Thời gian: 14:30:15 15/05/2023\nNgày hẹn trả: 20/05/2023",
        "MaHoSo=000.00.06.H56-230515-0001;MaTTHC=1.000894;SoDinhDanh=045090123456;"
        "ThoiGian=15/05/2023 14:30:15;NgayHenTra=20/05/2023",
        "000.00.06.H56-230515-0001|1.000894|045090123456|20230515143015|20/05/2023",
        "000.00.06.H56-230515-0001; 1.000894; 045090123456; 15/05/2023 14:30:15; 20/05/2023",
        "https://dvc.example.vn/qr?mahoso=000.00.06.H56-230515-0001&matthc=1.000894&sodinhdanh=045090123456"
        "&thoigian=20230515143015&ngayhentra=20/05/2023",
    ],
)
def test_parse_text_forms(payload: str) -> None:
    assert parse_receipt(payload) == {
        "ma_ho_so": "000.00.06.H56-230515-0001",
        "ma_tthc": "1.000894",
        "so_dinh_danh": "045090123456",
        "thoi_gian": "2023-05-15T14:30:15",
        "ngay_hen_tra": "2023-05-20",
    }


@pytest.mark.parametrize("payload", ["", "hello world", "{not json", "12345", "Xin chào: bạn", "[1, 2, 3]"])
def test_parse_unrecognised_payloads(payload: str) -> None:
    assert parse_receipt(payload) == {}


def test_only_normalised_keys_come_out() -> None:
    out = parse_receipt(json.dumps(RECEIPT, ensure_ascii=False) + "")
    assert set(out) <= set(RECEIPT_KEYS)
    assert fold_key("Mã hồ sơ") == fold_key("MaHoSo") == fold_key("ma_ho_so") == "mahoso"
    assert fold_key("Số định danh") == "sodinhdanh"


# --- parse_receipt never raises: whatever a QR code holds, the officer gets a form, not an error page ------

_KEYS = st.sampled_from([*RECEIPT_KEYS, "MaHoSo", "Mã hồ sơ", "SoDinhDanh", "NgayHenTra", "ThoiGian", "x", ""])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=25,
)
_PIECES = st.sampled_from(
    ["{", "}", "[", "]", '"', "\\", ":", "=", ";", "|", "&", "\n", "?", "http://", "https://[", "%", "\ufeff"]
)
_GARBAGE = st.lists(st.one_of(_PIECES, _KEYS, st.text(max_size=12)), max_size=60).map("".join)


@pytest.mark.parametrize(
    "payload",
    [
        '{"a":' + "[" * 1490,  # 1.5 KB: RecursionError from json.loads before nesting was bounded
        '{"a":' * 300 + "1" + "}" * 300,
        '{"a":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"a": ' + "9" * 5000 + "}",  # an integer longer than Python converts from text
        "https://[::1?khac=1",  # urlsplit: invalid IPv6 URL
        "\ud800{\udfff",
    ],
)
def test_parse_hostile_payloads_gives_nothing(payload: str) -> None:
    assert parse_receipt(payload) == {}


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=1500), _GARBAGE, _JSON.map(json.dumps), _JSON.map(lambda v: json.dumps(v)[:-1])))
def test_parse_receipt_never_raises(payload: str) -> None:
    out = parse_receipt(payload)
    assert isinstance(out, dict)
    assert set(out) <= set(RECEIPT_KEYS)
    assert all(isinstance(v, str) for v in out.values())


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(["[", "{", '{"a":', '[{"a":']))
def test_parse_receipt_survives_any_nesting(depth: int, opener: str) -> None:
    assert parse_receipt("{" + '"k":' + opener * depth) == {}
