"""The web UI's pages, one router per part of the workflow."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.web.routes.common import (
    KIND_LABELS_STR,
    after_digitize,
    doc_state_label,
    message_page,
)


def routers() -> list[APIRouter]:
    from appliance.web.routes import account, archive, incident, signing, work

    return [account.router, work.router, signing.router, archive.router, incident.router]


__all__ = ["KIND_LABELS_STR", "after_digitize", "doc_state_label", "message_page", "routers"]
