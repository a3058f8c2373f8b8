"""The web UI's pages, one router per concern: accounts, dossiers, capture, documents, signing, archive,
incidents. Each route parses the request, calls the core and renders."""

from __future__ import annotations

from fastapi import APIRouter

from appliance.web.routes import account, archive, capture, documents, dossiers, incident, signing
from appliance.web.routes.common import KIND_LABELS_STR, doc_state_label, message_page


def routers() -> list[APIRouter]:
    return [
        account.router,
        dossiers.router,
        capture.router,
        documents.router,
        signing.router,
        archive.router,
        incident.router,
    ]


__all__ = ["KIND_LABELS_STR", "doc_state_label", "message_page", "routers"]
