"""'Báo sự cố': an officer reports a problem; the text and the box's current health go to the province
through the telemetry buffer (appliance.telemetry.publisher.report_incident)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from appliance.web.routes.common import Checked, Officer, ctx_of, render

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/incident", response_class=HTMLResponse)
def incident_form(request: Request, who: Officer) -> HTMLResponse:
    return render(request, "incident.html", sent=None, error=None)


@router.post("/incident", response_model=None)
def incident_send(request: Request, who: Checked, text: str = Form(default="", max_length=2000)) -> Response:
    from appliance.telemetry.collector import Collector
    from appliance.telemetry.publisher import report_incident

    if not text.strip():
        return render(request, "incident.html", status_code=400, sent=None, error="Hãy mô tả sự cố.")
    settings = ctx_of(request).settings
    # the scanner belongs to the capture jobs of this process: not probed from here
    snapshot = Collector(settings, overrides={"scanner": lambda: None}).collect()
    inc = report_incident(settings, reporter=who.full_name, text=text, snapshot=snapshot)
    log.info("incident %s reported", inc.incident_id)
    return render(request, "incident.html", sent=inc.incident_id, error=None)
