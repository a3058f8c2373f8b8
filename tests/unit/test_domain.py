"""Codes and validation: examples from domain-vn.md, generated valid codes and their mutations."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from appliance import domain
from appliance.domain import (
    ID_PREFIXES,
    W_OLD_CMND,
    W_TTHC_LOCAL,
    W_UNKNOWN_PREFIX,
    check_date,
    check_dossier_code,
    check_enterprise_code,
    check_personal_id,
    check_tthc_code,
    parse_date,
    parse_dossier_code,
    parse_enterprise_code,
    parse_personal_id,
    parse_tthc_code,
)
from appliance.errors import (
    InvalidDate,
    InvalidDossierCode,
    InvalidEnterpriseCode,
    InvalidPersonalId,
    InvalidTthcCode,
)
from appliance.messages_vi import MESSAGES_VI

TODAY = dt.date(2025, 6, 1)

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


def n_digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


upper = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))

agency_a = st.builds(
    lambda a, b, c, h, n: f"{a}.{b}.{c}.{h}{n}", n_digits(3), n_digits(2), n_digits(2), upper, n_digits(2)
)
agency_b = st.builds(
    lambda h, n, groups: h + n + "".join("." + g for g in groups),
    upper,
    n_digits(2),
    st.lists(st.one_of(n_digits(2), n_digits(3)), max_size=3),
)
dossier_codes = st.builds(
    lambda agency, day, seq: f"{agency}-{day:%y%m%d}-{seq}",
    st.one_of(agency_a, agency_b),
    dates,
    st.integers(4, 7).flatmap(n_digits),
)


# --- dossier codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "000.00.06.H56-230515-0001",
        "H15.50.05.13-261008-0975",
        "000.00.04.G14-240229-1234567",
        "H56-230101-0001",
    ],
)
def test_observed_dossier_codes_are_valid(code: str) -> None:
    assert check_dossier_code(code).ok
    parsed = parse_dossier_code(code)
    assert str(parsed) == code


def test_dossier_code_parts_and_spacing() -> None:
    parsed = parse_dossier_code(" 000.00.06.h56 - 230515 - 0001 ")
    assert parsed.agency == "000.00.06.H56"
    assert parsed.received == dt.date(2023, 5, 15)
    assert parsed.sequence == "0001"
    assert check_dossier_code("000.00.06.h56 -230515- 0001").value == "000.00.06.H56-230515-0001"


@pytest.mark.parametrize(
    "code",
    [
        "000.00.06.H56-231315-0001",  # month 13
        "000.00.06.H56-230230-0001",  # 30 February
        "000.00.06.H56-230515-001",  # 3-digit sequence
        "000.00.06.H56-230515-00000001",  # 8-digit sequence
        "00.00.06.H56-230515-0001",
        "000.00.06.56-230515-0001",
        "000.00.06.H56230515-0001",
        "",
        "38/QĐ-UBND",
    ],
)
def test_bad_dossier_codes(code: str) -> None:
    result = check_dossier_code(code)
    assert not result.ok and result.problem == "invalid_dossier_code"
    with pytest.raises(InvalidDossierCode):
        parse_dossier_code(code)


@given(dossier_codes)
def test_generated_dossier_codes_round_trip(code: str) -> None:
    assert check_dossier_code(code).ok
    assert str(parse_dossier_code(code)) == code


@given(dossier_codes, st.data())
def test_mutated_dossier_codes_are_rejected(code: str, data: st.DataObject) -> None:
    agency, day, seq = code.rsplit("-", 2)
    mutation = data.draw(st.sampled_from(["drop_date_digit", "digit_to_letter", "to_dash", "short_seq"]))
    if mutation == "drop_date_digit":
        i = data.draw(st.integers(0, 5))
        bad = f"{agency}-{day[:i] + day[i + 1 :]}-{seq}"
    elif mutation == "short_seq":
        bad = f"{agency}-{day}-{seq[:3]}"
    else:
        i = data.draw(st.integers(0, len(code) - 1))
        assume(code[i].isdigit() if mutation == "digit_to_letter" else code[i] != "-")
        bad = code[:i] + ("x" if mutation == "digit_to_letter" else "-") + code[i + 1 :]
    assert not check_dossier_code(bad).ok, bad


def test_dossier_code_date_must_be_real() -> None:
    assert not check_dossier_code("000.00.06.H56-230229-0001").ok
    assert check_dossier_code("000.00.06.H56-240229-0001").ok


# --- TTHC codes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["1.000894", "2.000815", "3.000181", "1.011442"])
def test_national_tthc_codes(code: str) -> None:
    result = check_tthc_code(code)
    assert result.ok and result.warnings == ()
    assert parse_tthc_code(code).local is None


def test_local_tthc_code_suffix() -> None:
    parsed = parse_tthc_code("1.000094.000.00.00.H56")
    assert parsed.national == "1.000094" and parsed.local == "000.00.00.H56"
    assert str(parsed) == "1.000094.000.00.00.H56"
    assert check_tthc_code("2.000815.000.00.00.H55.02").warnings == (W_TTHC_LOCAL,)


@pytest.mark.parametrize("code", ["4.000894", "1.00089", "1.0008945", "1,000894", "1000894", "", "1.000894."])
def test_bad_tthc_codes(code: str) -> None:
    assert check_tthc_code(code).problem == "invalid_tthc_code"
    with pytest.raises(InvalidTthcCode):
        parse_tthc_code(code)


@given(st.sampled_from("123"), n_digits(6))
def test_generated_tthc_codes(lead: str, rest: str) -> None:
    code = f"{lead}.{rest}"
    assert str(parse_tthc_code(code)) == code
    assert not check_tthc_code(code[:-1]).ok
    assert not check_tthc_code(code + "9").ok


# --- personal IDs --------------------------------------------------------------------------------------


def test_personal_id_structure() -> None:
    pid = parse_personal_id("079215000001", today=TODAY)
    assert pid.kind == "cccd" and pid.province == "Hồ Chí Minh"
    assert pid.birth_year == 2015 and pid.female is False
    assert parse_personal_id("045 1 85 123456", today=TODAY).female is True
    assert parse_personal_id("044185123456", today=TODAY).province == "Quảng Bình"


def test_province_table() -> None:
    assert len(ID_PREFIXES) == 63
    assert ID_PREFIXES["001"] == "Hà Nội" and ID_PREFIXES["045"] == "Quảng Trị" and ID_PREFIXES["096"] == "Cà Mau"
    assert all(len(p) == 3 and p.startswith("0") for p in ID_PREFIXES)


def test_unknown_prefix_is_a_warning_not_a_rejection() -> None:
    result = check_personal_id("099190000001", today=TODAY)
    assert result.ok and result.warnings == (W_UNKNOWN_PREFIX,)


def test_old_cmnd_is_recognised() -> None:
    result = check_personal_id("194 123 456", today=TODAY)
    assert result.ok and result.kind == "cmnd" and result.value == "194123456"
    assert result.warnings == (W_OLD_CMND,)
    assert parse_personal_id("194123456").kind == "cmnd"


@pytest.mark.parametrize(
    "number",
    [
        "07921500000",  # 11 digits
        "0792150000011",  # 13 digits
        "07921500000A",
        "079226000001",  # born 2026: in the future on TODAY
        "079415000001",  # born 2115
        "079815000001",  # born 2315
        "",
    ],
)
def test_bad_personal_ids(number: str) -> None:
    assert check_personal_id(number, today=TODAY).problem == "invalid_personal_id"
    with pytest.raises(InvalidPersonalId):
        parse_personal_id(number, today=TODAY)


@given(
    st.sampled_from(sorted(ID_PREFIXES)),
    st.sampled_from("0123"),
    n_digits(2),
    n_digits(6),
)
def test_generated_personal_ids(prefix: str, g: str, yy: str, rest: str) -> None:
    number = prefix + g + yy + rest
    year = 1900 + 100 * (int(g) // 2) + int(yy)
    result = check_personal_id(number, today=TODAY)
    assert result.ok == (year <= TODAY.year)
    if result.ok:
        pid = parse_personal_id(number, today=TODAY)
        assert pid.number == number and pid.birth_year == year and pid.female == (int(g) % 2 == 1)
        assert result.warnings == ()
        assert not check_personal_id(number[:-1], today=TODAY).ok


# --- enterprise codes ----------------------------------------------------------------------------------


def test_enterprise_codes() -> None:
    assert parse_enterprise_code("0101234567") == domain.EnterpriseCode("0101234567")
    branch = parse_enterprise_code("0101234567 - 001")
    assert branch.branch == "001" and str(branch) == "0101234567-001"
    assert check_enterprise_code("0101234567-001").kind == "branch"
    # the check digit is unconfirmed: any 10 digits pass, with a warning
    assert check_enterprise_code("0101234568").ok


@pytest.mark.parametrize("code", ["010123456", "01012345678", "0101234567-01", "0101234567-0001", "A101234567"])
def test_bad_enterprise_codes(code: str) -> None:
    assert check_enterprise_code(code).problem == "invalid_enterprise_code"
    with pytest.raises(InvalidEnterpriseCode):
        parse_enterprise_code(code)


@given(n_digits(10), st.one_of(st.none(), n_digits(3)))
def test_generated_enterprise_codes(number: str, branch: str | None) -> None:
    code = number + (f"-{branch}" if branch else "")
    assert str(parse_enterprise_code(code)) == code
    assert not check_enterprise_code(code + "0").ok


# --- dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("05/07/2023", "2023-07-05"),
        ("5/7/2023", "2023-07-05"),
        ("5-7-2023", "2023-07-05"),
        ("05.07.2023", "2023-07-05"),
        ("2023-07-05", "2023-07-05"),
        ("20230705", "2023-07-05"),
        ("20230705143015", "2023-07-05"),
        ("29/02/2024", "2024-02-29"),
    ],
)
def test_dates(text: str, iso: str) -> None:
    assert parse_date(text).isoformat() == iso
    assert check_date(text).value == iso


@pytest.mark.parametrize("text", ["29/02/2023", "32/01/2023", "05/13/2023", "2023/07", "05/07/1850", "hôm nay"])
def test_bad_dates(text: str) -> None:
    assert check_date(text).problem == "invalid_date"
    with pytest.raises(InvalidDate):
        parse_date(text)


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_generated_dates_round_trip(day: dt.date) -> None:
    assert parse_date(f"{day.day}/{day.month}/{day.year}") == day
    assert parse_date(day.isoformat()) == day


def test_every_problem_code_has_a_message() -> None:
    for code in (
        "invalid_dossier_code",
        "invalid_tthc_code",
        "invalid_personal_id",
        "invalid_enterprise_code",
    ):
        assert code in MESSAGES_VI


# --- every dossier-code form in force (Circulars 01/2018, 03/2025, 04/2025) --------------------------------
yy_dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2068, 12, 31))  # %y: 69-99 are 19xx
tt04_agency = st.builds(
    lambda m, x, y, z: f"{m}{x}.{y}.{z}",
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXY"),
    n_digits(2),
    n_digits(3),
    n_digits(2),
)


@given(tt04_agency, yy_dates, n_digits(2), st.integers(4, 30).flatmap(n_digits))
def test_circular_04_2025_codes_have_any_sequence_of_at_least_4_digits(
    agency: str, day: dt.date, operator: str, seq: str
) -> None:
    code = f"{agency}-{day:%y%m%d}-{operator}{seq}"
    check = check_dossier_code(code)
    assert check.ok and check.kind == "tt04_2025", check.reason
    parsed = parse_dossier_code(code)
    assert (parsed.agency, parsed.received, parsed.operator, parsed.sequence) == (agency, day, operator, seq)
    assert str(parsed) == code


@given(agency_a, yy_dates, st.integers(4, 7).flatmap(n_digits))
def test_legacy_qcvn102_codes_keep_their_parts(agency: str, day: dt.date, seq: str) -> None:
    parsed = parse_dossier_code(f"{agency}-{day:%y%m%d}-{seq}")
    assert (parsed.form, parsed.agency, parsed.received, parsed.sequence, parsed.operator) == (
        "qcvn102",
        agency,
        day,
        seq,
        None,
    )


@given(agency_b, yy_dates, st.integers(4, 12).flatmap(n_digits))
def test_identifier_codes_are_accepted_with_long_sequences(agency: str, day: dt.date, seq: str) -> None:
    check = check_dossier_code(f"{agency}-{day:%y%m%d}-{seq}")
    assert check.ok and check.kind in ("dinh_danh", "tt04_2025")


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "Chưa có mã hồ sơ"),
        ("H44.123.45-260301", "ba phần"),
        ("H44.123.45-2603-120001", "đúng 6 chữ số"),
        ("H44.123.45-260231-120001", "ngày có thật"),
        ("H44.123.45-260301-12a001", "chỉ được gồm chữ số"),
        ("H44.123.45-260301-123", "ít nhất 4 chữ số"),
        ("000.00.19.H12-230412-00000007", "4 đến 7 chữ số"),
        ("1234.5-230412-0007", "mã cơ quan"),
        ("H44.123.45_260301_120001", "ký tự «_»"),
    ],
)
def test_malformed_codes_say_why_in_vietnamese(code: str, reason: str) -> None:
    check = check_dossier_code(code)
    assert not check.ok and check.problem == "invalid_dossier_code"
    assert reason in check.reason
    with pytest.raises(InvalidDossierCode) as err:
        parse_dossier_code(code)
    assert err.value.params["reason"] == check.reason


@given(st.one_of(agency_a, agency_b, tt04_agency), yy_dates, st.integers(0, 3).flatmap(n_digits))
def test_short_sequences_are_refused_in_every_form(agency: str, day: dt.date, seq: str) -> None:
    check = check_dossier_code(f"{agency}-{day:%y%m%d}-{seq}")
    assert not check.ok and check.reason


def test_configured_patterns_add_forms_without_loosening_the_built_in_ones() -> None:
    patterns = [r"(?P<agency>QT\d{2})/(?P<date>\d{6})/(?P<seq>\d{3,})"]
    parsed = parse_dossier_code("QT01/260301/123", patterns=patterns)
    assert (parsed.form, parsed.agency, parsed.received, parsed.sequence) == (
        "custom",
        "QT01",
        dt.date(2026, 3, 1),
        "123",
    )
    assert str(parsed) == "QT01/260301/123"
    assert not check_dossier_code("QT01/260301/123").ok  # not without the setting
    assert not check_dossier_code("QT01/260231/123", patterns=patterns).ok  # its date must still be real
    assert not check_dossier_code("000.00.19.H12-230412-007", patterns=patterns).ok
