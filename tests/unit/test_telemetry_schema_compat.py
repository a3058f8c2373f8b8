"""A box upgraded before its province: fields the province does not know are dropped, not refused."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from appliance.telemetry.schema import Reading, parse_message


def _reading(**extra: object) -> str:
    body = {
        "kind": "reading",
        "device_id": "box-001",
        "commune_code": "19999",
        "boot_id": "b",
        "at": "2026-12-05T08:00:00+07:00",
        "version": "0.3.0",
    }
    body.update(extra)
    return json.dumps(body)


def test_an_unknown_field_from_a_newer_box_is_dropped() -> None:
    msg = parse_message(_reading(solar_panel={"watts": 12}))
    assert isinstance(msg, Reading)
    assert msg.device_id == "box-001"
    assert "solar_panel" not in msg.model_dump()


def test_known_fields_keep_their_bounds() -> None:
    with pytest.raises(ValidationError):
        parse_message(_reading(at="2026-12-05T08:00:00"))  # naive time still refused
    with pytest.raises(ValidationError):
        parse_message(_reading(device_id="x" * 101))
