"""Source-name matching across vendors: presets say "adf" / "duplex", devices say what they like."""

from __future__ import annotations

import pytest

from appliance.capture import (
    OptionInfo,
    ScanRequest,
    adf_sources,
    duplex_sources,
    find_source,
    is_feeder_source,
    resolve_source,
)
from appliance.errors import BadScannerOption

FUJITSU = ["Flatbed", "ADF Front", "ADF Back", "ADF Duplex"]
EPSON = ["Flatbed", "ADF Front", "ADF Duplex"]
CANON_DR = ["ADF Front", "ADF Back", "ADF Duplex"]
AIRSCAN = ["Flatbed", "ADF", "ADF Duplex"]
TEST_BACKEND = ["Flatbed", "Automatic Document Feeder"]
HP = ["Flatbed", "ADF", "Duplex"]
BROTHER = [
    "FlatBed",
    "Automatic Document Feeder(left aligned)",
    "Automatic Document Feeder(centrally aligned)",
]
PLUSTEK = ["Normal", "ADF Front/Back/Duplex"]


@pytest.mark.parametrize(
    ("choices", "adf", "duplex"),
    [
        (FUJITSU, "ADF Front", "ADF Duplex"),
        (EPSON, "ADF Front", "ADF Duplex"),
        (CANON_DR, "ADF Front", "ADF Duplex"),
        (AIRSCAN, "ADF", "ADF Duplex"),
        (TEST_BACKEND, "Automatic Document Feeder", None),
        (HP, "ADF", "Duplex"),
        (BROTHER, "Automatic Document Feeder(left aligned)", None),
        (PLUSTEK, None, "ADF Front/Back/Duplex"),
    ],
)
def test_vendor_source_strings(choices: list[str], adf: str | None, duplex: str | None) -> None:
    assert (adf_sources(choices) or [None])[0] == adf
    assert (duplex_sources(choices) or [None])[0] == duplex
    if adf:
        assert resolve_source(choices, "adf") == adf
        assert is_feeder_source(adf)
    if duplex:
        assert resolve_source(choices, "Duplex") == duplex
        assert is_feeder_source(duplex)
    else:
        with pytest.raises(BadScannerOption):
            resolve_source(choices, "duplex")


def test_exact_device_string_wins_and_flatbed_is_not_a_feeder() -> None:
    assert resolve_source(FUJITSU, "adf back") == "ADF Back"
    assert resolve_source(BROTHER, "flatbed") == "FlatBed"
    assert resolve_source(PLUSTEK, "flatbed") == "Normal"
    assert not is_feeder_source("Flatbed")
    with pytest.raises(BadScannerOption) as info:
        resolve_source(CANON_DR, "flatbed")
    assert info.value.code == "bad_scanner_option"


def test_find_source_from_descriptors() -> None:
    opt = OptionInfo(
        name="source",
        title="Scan source",
        description="",
        type="string",
        unit="none",
        constraint=list(FUJITSU),
        value="Flatbed",
        settable=True,
        active=True,
    )
    assert find_source([opt]) == "ADF Front"
    assert find_source([opt], duplex=True) == "ADF Duplex"
    assert find_source([]) is None


def test_scan_request_defaults() -> None:
    r = ScanRequest(device="test:0")
    assert (r.resolution, r.mode, r.source, r.batch, r.area_mm) == (300, None, None, False, (210.0, 297.0))
    assert dict(r.extra) == {}
