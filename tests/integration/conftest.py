"""Fixtures for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance import db
from appliance.settings import Settings, load_settings

# SoftHSM2 token, test CA and NSS db fixtures for the signing tests.
from tests.csc import csc_server  # noqa: F401
from tests.softhsm import fresh_hsm, hsm, nssdb, odd_token, shared_token  # noqa: F401

OFFICER_PW = "mat-khau-can-bo-1"
SUPER_PW = "mat-khau-lanh-dao-1"


# --- the web UI through FastAPI's TestClient: an officer "canbo" and a supervisor "lanhdao" ------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", web={"upload_max_bytes": 2 * 1024 * 1024})


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from appliance.web.app import create_app
    from appliance.web.auth import create_user
    from appliance.web.models import Role

    app = create_app(settings)
    with db.transaction(app.state.ctx.factory) as session:
        create_user(session, username="canbo", full_name="Nguyễn Thị Ánh", role=Role.OFFICER, password=OFFICER_PW)
        create_user(session, username="lanhdao", full_name="Trần Văn B", role=Role.SUPERVISOR, password=SUPER_PW)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
