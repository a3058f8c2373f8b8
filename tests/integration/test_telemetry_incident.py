"""'Báo sự cố' from the officers' web UI: the text and a health snapshot are queued for the province."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from appliance.settings import Settings
from appliance.telemetry.publisher import buffer_for
from appliance.telemetry.schema import parse_message
from tests.integration.test_web import login


def test_officer_reports_a_problem(client: TestClient, settings: Settings) -> None:  # noqa: F811
    csrf = login(client)
    page = client.get("/incident")
    assert page.status_code == 200 and "Báo sự cố" in page.text
    assert client.post("/incident", data={"csrf": csrf, "text": "  "}).status_code == 400
    r = client.post("/incident", data={"csrf": csrf, "text": "Máy quét kẹt giấy liên tục"})
    assert r.status_code == 200 and 'id="incident-sent"' in r.text
    buf = buffer_for(settings)
    try:
        items = buf.oldest()
    finally:
        buf.close()
    assert [i.kind for i in items] == ["incident"] and not items[0].offline
    inc = parse_message(items[0].payload)
    assert inc.kind == "incident"
    assert inc.reporter == "Nguyễn Thị Ánh" and inc.text == "Máy quét kẹt giấy liên tục"
    assert inc.snapshot is not None and inc.snapshot.disk is not None  # the box's health at that moment
    assert inc.incident_id in r.text
    assert json.loads(items[0].payload)["device_id"] == settings.device_id
