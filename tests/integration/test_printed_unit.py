"""An old result keeps the unit printed on it and also gets today's unit, recorded while the officer reviews
it: at the service level (`documents.review`, with the trail) and through the web UI (form -> core -> page)."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from appliance import audit, db, units
from appliance.originals import OriginalStore
from appliance.records import DocumentInfo, Kind
from appliance.units import read_mapping, read_units
from tests.integration.test_web import login
from tests.integration.test_workflow import make_doc, review

# test values in the shape of the shipped Quảng Trị table and its mapping
UNITS = """code,name,kind,province_code,province_name,valid_from
44,Quảng Trị,tỉnh,44,Quảng Trị,2025-07-01
19360,Quảng Trị,phường,44,Quảng Trị,2025-07-01
"""
MAPPING = """old_code,old_name,old_parent,new_code
19378,xã Hải Lệ,thị xã Quảng Trị,19360
"""
PRINTED = "xã Hải Lệ, thị xã Quảng Trị"


def load_units(factory: sessionmaker[Session]) -> None:
    with db.transaction(factory) as s:
        units.load(s, read_units(UNITS), mappings=read_mapping(MAPPING), version="t", effective=date(2025, 7, 1))


@pytest.fixture
def factory(tmp_path: Path) -> sessionmaker[Session]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'box.db'}")
    db.upgrade(engine)
    load_units(db.session_factory(engine))
    return db.session_factory(engine)


def test_review_keeps_the_printed_unit_beside_todays_and_traces_it(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    originals = OriginalStore(tmp_path / "originals")
    with db.transaction(factory) as s:
        doc = make_doc(s, originals, dossier_code=None, backlog=True)
        info = review(s, doc.id, kind=Kind.RESULT, auto_code=True, backlog=True, printed_unit=f"  {PRINTED} ")
        assert (info.printed_unit, info.current_unit) == (PRINTED, "19360")
    with db.transaction(factory) as s:  # reviewed again with another text, then without one
        info = review(s, doc.id, kind=Kind.RESULT, auto_code=True, backlog=True, printed_unit="huyện Không Có")
        assert (info.printed_unit, info.current_unit) == ("huyện Không Có", None)  # kept as written, no guess
        info = review(s, doc.id, kind=Kind.RESULT, auto_code=True, backlog=True)
        assert (info.printed_unit, info.current_unit) == (None, None)
    with db.transaction(factory) as s:
        trail = [e.detail for e in audit.for_documents(s, document_ids=[doc.id]) if e.action == "field"]
    changes = [(d["field"], d["old"], d["new"]) for d in trail if d["field"] in ("printed_unit", "current_unit")]
    assert changes == [
        ("printed_unit", None, PRINTED),
        ("current_unit", None, "19360"),
        ("printed_unit", PRINTED, "huyện Không Có"),
        ("current_unit", "19360", None),
        ("printed_unit", "huyện Không Có", None),
    ]


def test_the_officer_records_the_printed_unit_in_the_web_ui(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    load_units(ctx.factory)
    with db.transaction(ctx.factory) as s:
        doc_id = make_doc(s, ctx.store.originals, dossier_code=None, backlog=True).id
    csrf = login(client)
    page = client.get(f"/documents/{doc_id}").text
    assert 'name="printed_unit"' in page and "Giấy tờ trước 01/07/2025" in page
    form = {"csrf": csrf, "kind": "result", "auto_code": "1", "backlog": "1", "printed_unit": PRINTED}
    r = client.post(f"/documents/{doc_id}/review", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    with ctx.factory() as s:
        info = s.get(DocumentInfo, doc_id)
        assert info is not None and (info.printed_unit, info.current_unit) == (PRINTED, "19360")
    page = client.get(f"/documents/{doc_id}").text
    assert f'value="{PRINTED}"' in page  # the unit as printed on the paper
    now = re.search(r'<p class="hint" id="unit-now">(.*?)</p>', page, re.S)
    assert now and re.sub(r"<[^>]+>", "", now.group(1)) == "Đơn vị hiện nay: phường Quảng Trị (19360)."
    # a form error keeps what the officer typed
    bad = {**form, "kind": "", "printed_unit": "xã Triệu Thượng"}
    r = client.post(f"/documents/{doc_id}/review", data=bad, follow_redirects=False)
    assert r.status_code == 400 and 'value="xã Triệu Thượng"' in r.text
