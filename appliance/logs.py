"""Structured logging: JSON lines on stdout (journald keeps them), with doc_id/stage context.

Never log the PIN, OCR text or images.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_doc_id: ContextVar[str | None] = ContextVar("doc_id", default=None)
_stage: ContextVar[str | None] = ContextVar("stage", default=None)


@contextmanager
def context(*, doc_id: str | None = None, stage: str | None = None) -> Iterator[None]:
    """Attach doc_id / stage to every log record emitted inside the block."""
    tokens = []
    if doc_id is not None:
        tokens.append((_doc_id, _doc_id.set(doc_id)))
    if stage is not None:
        tokens.append((_stage, _stage.set(stage)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.doc_id = _doc_id.get()
        record.stage = _stage.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("doc_id", "stage", "code"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "INFO", fmt: str = "json", stream: object = None) -> None:
    """Configure the root logger once (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_appliance", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)  # type: ignore[arg-type]
    handler._appliance = True  # type: ignore[attr-defined]
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in ("alembic", "pikepdf"):  # their INFO lines say nothing an operator needs
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
