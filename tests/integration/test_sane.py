"""SaneScanner against the real SANE `test` backend (private SANE_CONFIG_DIR, A4 geometry).

The test backend keeps option values and its 10-sheet ADF counter across open/close, so every
request sets what it relies on, and fault injection uses test:1 only.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from appliance.capture import ScanRequest, adf_sources, find_source, resolve_source, source_choices
from appliance.capture.sane import SaneScanner, map_sane_error
from appliance.errors import (
    BadScannerOption,
    CaptureError,
    CoverOpen,
    DeviceGone,
    FeederEmpty,
    FeederJammed,
    NoScanner,
    ScanCancelled,
    ScannerBusy,
    ScannerIOError,
)
from appliance.messages_vi import MESSAGES_VI, message_for

pytestmark = pytest.mark.sane

FAULT_DEVICE = "test:1"


# Fault requests ask for a small grey page: the test backend's reader thread then writes the whole image
# into its pipe and ends before the injected status cancels the scan (a thread left blocked on a full pipe
# is what sane_cancel would otherwise have to tear down).
def fault(status: str) -> ScanRequest:
    return ScanRequest(
        device=FAULT_DEVICE,
        resolution=50,
        source="Flatbed",
        mode="Gray",
        area_mm=(20.0, 20.0),
        extra={"read-return-value": status},
    )


ADF = "Automatic Document Feeder"


@pytest.fixture
def scanner(sane_env: Path) -> SaneScanner:
    return SaneScanner(lock_timeout_s=30)


def small(**kw: object) -> ScanRequest:
    base: dict[str, object] = {"device": "test:0", "resolution": 50, "mode": "Gray", "source": "Flatbed"}
    base.update(kw)
    return ScanRequest(**base)  # type: ignore[arg-type]


def test_lists_test_devices(scanner: SaneScanner) -> None:
    names = [d.name for d in scanner.devices()]
    assert "test:0" in names
    dev = next(d for d in scanner.devices() if d.name == "test:0")
    assert dev.vendor == "Noname"
    assert dev.type == "virtual device"


def test_options_come_from_descriptors(scanner: SaneScanner) -> None:
    opts = {o.name: o for o in scanner.options("test:0")}
    choices = source_choices(list(opts.values()))
    assert ADF in choices
    assert adf_sources(choices) == [ADF]
    assert resolve_source(choices, "adf") == ADF
    assert resolve_source(choices, "FLATBED") == "Flatbed"
    assert find_source(list(opts.values())) == ADF
    assert find_source(list(opts.values()), duplex=True) is None
    with pytest.raises(BadScannerOption):
        resolve_source(choices, "duplex")  # the test backend has no duplex source
    res = opts["resolution"]
    assert res.unit == "dpi"
    assert isinstance(res.constraint, tuple) and res.constraint[:2] == (1.0, 1200.0)
    assert opts["br-y"].constraint is not None and opts["br-y"].constraint[1] == 300.0  # type: ignore[index]
    assert opts["mode"].type == "string" and opts["mode"].settable and opts["mode"].active
    assert "Color" in opts["mode"].constraint  # type: ignore[operator]


def test_flatbed_a4_colour_200dpi(scanner: SaneScanner) -> None:
    pages = list(scanner.scan(ScanRequest(device="test:0", resolution=200, mode="Color", source="flatbed")))
    assert len(pages) == 1
    page = pages[0]
    assert page.image.dtype == np.uint8
    assert page.image.ndim == 3 and page.image.shape[2] == 3
    h, w = page.image.shape[:2]
    assert abs(w - 1654) <= 2 and abs(h - 2339) <= 2
    assert page.dpi == 200.0
    assert page.source == "scanner"


def test_grey_mode_gives_2d(scanner: SaneScanner) -> None:
    (page,) = scanner.scan(small(extra={"test-picture": "Color pattern", "depth": 8}))
    assert page.image.ndim == 2
    assert len(np.unique(page.image)) > 2


def test_resolution_is_read_back_after_clamping(scanner: SaneScanner) -> None:
    # 5000 dpi is clamped to the backend's 1200; use a tiny area so the scan stays small
    (page,) = scanner.scan(small(resolution=5000, area_mm=(5.0, 5.0)))
    assert page.dpi == 1200.0
    assert abs(page.image.shape[1] - round(5 / 25.4 * 1200)) <= 2


def test_area_clamped_to_device_maximum(scanner: SaneScanner) -> None:
    (page,) = scanner.scan(small(area_mm=(1000.0, 1000.0)))
    # geometry_max is 300 mm in the fixture's test.conf
    assert abs(page.image.shape[1] - round(300 / 25.4 * 50)) <= 2


def test_lineart_comes_out_as_grey_0_255(scanner: SaneScanner) -> None:
    (page,) = scanner.scan(small(extra={"depth": 1, "test-picture": "Grid"}))
    assert page.image.ndim == 2 and page.image.dtype == np.uint8
    assert set(np.unique(page.image).tolist()) == {0, 255}
    (black,) = scanner.scan(small(extra={"depth": 1, "test-picture": "Solid black"}))
    assert int(black.image.max()) == 0  # black is 0, not inverted


def test_sixteen_bit_scaled_to_uint8(scanner: SaneScanner) -> None:
    (page,) = scanner.scan(small(extra={"depth": 16, "test-picture": "Solid white"}))
    assert page.image.dtype == np.uint8 and int(page.image.min()) == 255


def test_adf_batch_ends_after_ten_sheets(scanner: SaneScanner) -> None:
    request = small(source="ADF", batch=True, extra={"depth": 8}, area_mm=(20.0, 20.0))
    # the backend's counter also counts earlier flatbed scans; a first batch drains it
    first = list(scanner.scan(request))
    assert 1 <= len(first) <= 10
    pages = list(scanner.scan(request))
    assert len(pages) == 10
    assert [p.label for p in pages] == [f"ADF {i}" for i in range(1, 11)]


def test_empty_feeder_at_first_sheet_raises(scanner: SaneScanner) -> None:
    request = ScanRequest(
        device=FAULT_DEVICE,
        resolution=50,
        source="adf",
        batch=True,
        area_mm=(20.0, 20.0),
        extra={"read-return-value": "SANE_STATUS_NO_DOCS"},
    )
    with pytest.raises(FeederEmpty) as info:
        list(scanner.scan(request))
    assert info.value.params["pages"] == "0"
    assert "khay" in message_for(info.value).lower()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("SANE_STATUS_JAMMED", FeederJammed),
        ("SANE_STATUS_COVER_OPEN", CoverOpen),
        ("SANE_STATUS_DEVICE_BUSY", ScannerBusy),
        ("SANE_STATUS_IO_ERROR", ScannerIOError),
        ("SANE_STATUS_NO_DOCS", FeederEmpty),
        ("SANE_STATUS_CANCELLED", ScanCancelled),
        ("SANE_STATUS_NO_MEM", ScannerIOError),
        ("SANE_STATUS_ACCESS_DENIED", ScannerIOError),
        ("SANE_STATUS_INVAL", ScannerIOError),
        ("SANE_STATUS_UNSUPPORTED", ScannerIOError),
    ],
)
def test_injected_fault_maps_to_error(scanner: SaneScanner, status: str, error: type[CaptureError]) -> None:
    request = fault(status)
    with pytest.raises(CaptureError) as info:
        list(scanner.scan(request))
    assert type(info.value) is error
    assert info.value.code in MESSAGES_VI
    msg = message_for(info.value)
    assert msg != MESSAGES_VI["unknown"]
    assert any(ch in msg for ch in "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")


def test_every_read_return_value_is_covered(scanner: SaneScanner) -> None:
    """Each status the backend can inject maps to a capture error with a message (or scans)."""
    opts = {o.name: o for o in scanner.options(FAULT_DEVICE)}
    statuses = [s for s in opts["read-return-value"].constraint or [] if s != "Default"]  # type: ignore[union-attr]
    assert "SANE_STATUS_JAMMED" in statuses
    for status in statuses:
        request = fault(str(status))
        try:
            list(scanner.scan(request))
        except CaptureError as err:
            assert err.code in MESSAGES_VI, status
        else:
            assert status == "SANE_STATUS_EOF"  # EOF at once = an empty image: must not "succeed"
    # back to normal: the device still scans after every fault (it was closed each time)
    (page,) = scanner.scan(fault("Default"))
    assert page.image.size > 0


def test_unknown_device(scanner: SaneScanner) -> None:
    with pytest.raises((NoScanner, DeviceGone)) as info:
        list(scanner.scan(ScanRequest(device="test:9", resolution=50)))
    assert message_for(info.value) == MESSAGES_VI[info.value.code]
    with pytest.raises(NoScanner):
        scanner.options("nosuchbackend:0")


def test_bad_option_values(scanner: SaneScanner) -> None:
    with pytest.raises(BadScannerOption):
        list(scanner.scan(small(mode="Lineart")))  # the test backend has Gray|Color only
    with pytest.raises(BadScannerOption):
        list(scanner.scan(small(extra={"no-such-option": 1})))
    with pytest.raises(BadScannerOption):
        list(scanner.scan(small(extra={"depth": 7})))
    with pytest.raises(BadScannerOption):
        list(scanner.scan(small(source="duplex")))
    # and the scanner is usable right after
    assert len(list(scanner.scan(small()))) == 1


def test_mapping_by_status_text() -> None:
    class FakeSaneError(Exception):
        pass

    assert isinstance(map_sane_error(FakeSaneError("Invalid argument"), stage="open", device="x"), NoScanner)
    assert isinstance(map_sane_error(FakeSaneError("Invalid argument"), stage="option", device="x"), BadScannerOption)
    assert isinstance(map_sane_error(FakeSaneError("Error during device I/O"), stage="open", device="x"), DeviceGone)
    assert isinstance(map_sane_error(FakeSaneError("SaneDev object is closed"), stage="scan", device="x"), DeviceGone)


def test_concurrent_scans_queue_without_overlap(scanner: SaneScanner, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="appliance.capture.sane")
    results: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(name: str, device: str) -> None:
        try:
            start.wait()
            pages = list(scanner.scan(small(device=device, resolution=75, mode="Color")))
            results[name] = len(pages)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f"t{i}", f"test:{i}")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {"t0": 1, "t1": 1}
    events = [r.getMessage().split(" device=")[0] for r in caplog.records if "sane session" in r.getMessage()]
    assert events == ["sane session open", "sane session closed"] * 2


def test_waiting_request_gives_up_with_scanner_busy(sane_env: Path) -> None:
    holder = SaneScanner(lock_timeout_s=30)
    waiter = SaneScanner(lock_timeout_s=0.2)
    request = small(source="ADF", batch=True, area_mm=(20.0, 20.0))
    batch = holder.scan(request)
    next(batch)  # a batch in progress holds the scanner
    try:
        with pytest.raises(ScannerBusy) as info:
            list(waiter.scan(small()))
        assert info.value.code == "scanner_busy"
        with pytest.raises(ScannerBusy):
            waiter.devices()
    finally:
        batch.close()  # releases the scanner
    assert len(list(waiter.scan(small()))) == 1


def test_cancel_between_pages_keeps_earlier_pages(scanner: SaneScanner) -> None:
    batch = scanner.scan(small(source="ADF", batch=True, area_mm=(20.0, 20.0)))
    first = next(batch)
    assert first.image.size > 0
    scanner.cancel()  # e.g. from the web thread
    with pytest.raises(ScanCancelled) as info:
        next(batch)
    assert info.value.params["pages"] == "1"
    # the scanner is free and usable again
    assert len(list(scanner.scan(small()))) == 1


def test_a_scan_in_a_worker_thread_leaves_sigpipe_ignored(scanner: SaneScanner) -> None:
    """libsane sets SIGPIPE back to its default action while it scans; a service that then writes to a
    closed socket would die. After scans run in a worker thread (as the web service runs them) the process
    ignores SIGPIPE again, as the kernel sees it."""
    from tests.conftest import sigpipe_ignored

    assert sigpipe_ignored()
    got: list[int] = []

    def work() -> None:
        for _ in range(2):
            got.append(len(list(scanner.scan(ScanRequest(device="test:0", resolution=75, mode="Gray")))))

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert got == [1, 1]
    assert sigpipe_ignored()
