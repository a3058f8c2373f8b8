import io
import json
import logging

from appliance import logs, memory


def test_json_lines_carry_doc_id_and_stage_from_context() -> None:
    stream = io.StringIO()
    logs.setup(level="INFO", fmt="json", stream=stream)
    log = logging.getLogger("appliance.test")
    with logs.context(doc_id="d-1", stage="ocr"):
        log.info("page %d done", 3)
    log.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "page 3 done" and first["doc_id"] == "d-1" and first["stage"] == "ocr"
    assert "doc_id" not in second and second["level"] == "INFO"
    logs.setup(level="WARNING", fmt="text")  # leave the root logger quiet for other tests


def test_heap_growth_limit_applies_on_glibc() -> None:
    import platform

    applied = memory.limit_heap_growth()
    assert applied is (platform.libc_ver()[0] == "glibc")
