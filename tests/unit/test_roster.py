"""The roster's verdict per officer: chưa có / hợp lệ / sắp hết hạn (<= 30 days) / hết hạn / bị thu hồi /
không khớp tên; the organisation's certificate has its own line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from appliance import db, roster
from appliance.sign.token import CertInfo

NOW = dt.datetime(2026, 12, 14, 3, 0, tzinfo=dt.UTC)


def cert(sha: str, days: int, name: str = "Nguyễn Thị Ánh", role: str = "officer") -> CertInfo:
    return CertInfo(
        cka_id="01", label="x", subject=f"CN={name}", common_name=name, organisation="UBND", issuer="CN=Test CA",
        serial=sha[:8], not_before=NOW - dt.timedelta(days=300), not_after=NOW + dt.timedelta(days=days),
        days_to_expiry=days, key_usage=("content_commitment",), non_repudiation=True, is_ca=False,
        sha256=sha * 8, role=role, key_type="rsa", key_bits=2048,
    )  # fmt: skip


def test_verdicts(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    factory = db.session_factory(engine)
    with db.transaction(factory) as s:
        roster.record_seen(s, username="an", cert=cert("aaaaaaaa", 10), source="token", now=NOW)
        roster.record_seen(s, username="binh", cert=cert("bbbbbbbb", 400), source="remote:csc", now=NOW)
        roster.record_seen(s, username="chi", cert=cert("cccccccc", -1), source="token", now=NOW)
        roster.record_seen(
            s, username="dung", cert=cert("dddddddd", 200), source="token", revocation="revoked", now=NOW
        )
        roster.record_seen(
            s, username="em", cert=cert("eeeeeeee", 200, "Người Khác"), source="token", name_matches=False, now=NOW
        )
        roster.record_seen(s, username="", cert=cert("ffffffff", 100, "UBND", "organisation"), source="token", now=NOW)
        # seen again: one row, last_seen moves, revocation kept from the check
        roster.record_seen(s, username="binh", cert=cert("bbbbbbbb", 400), source="remote:csc", revocation="good",
                           now=NOW + dt.timedelta(hours=1))  # fmt: skip
    with db.transaction(factory) as s:
        names = ["an", "binh", "chi", "dung", "em", "giang"]
        lines = roster.roster(s, officers=[(n, n) for n in names], now=NOW)
        assert [(line.username, line.label) for line in lines] == [
            ("an", "sắp hết hạn"),
            ("binh", "hợp lệ"),
            ("chi", "hết hạn"),
            ("dung", "bị thu hồi"),
            ("em", "không khớp tên"),
            ("giang", "chưa có"),
            ("", "hợp lệ"),
        ]
        assert lines[1].certificate is not None and lines[1].certificate.revocation == "good" and lines[1].others == 0
        sent = roster.as_telemetry(lines)
        assert sent[0]["verdict"] == "expiring" and sent[-1]["role"] == "organisation"
