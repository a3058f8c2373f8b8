"""Result codes ("mã kết quả giải quyết TTHC"): their legal format is unconfirmed, so both the pattern
that validates them and the template that generates them are settings (settings.sign), never hard-coded."""

from __future__ import annotations

import re

from appliance.errors import InvalidResultCode


def check_result_code(code: str, pattern: str) -> str:
    """The code, stripped, when it matches the configured pattern; else InvalidResultCode."""
    code = code.strip()
    if not re.fullmatch(pattern, code):
        raise InvalidResultCode(f"result code {code!r} does not match the configured pattern {pattern!r}")
    return code


def make_result_code(template: str, pattern: str, *, agency: str, seq: int, **fields: object) -> str:
    """A code from the configured template (default "KQ.{agency}.{seq:06d}"), checked against the pattern."""
    try:
        code = template.format(agency=agency, seq=seq, **fields)
    except (KeyError, IndexError, ValueError) as err:
        raise InvalidResultCode(f"result code template {template!r} cannot be filled: {err}") from err
    return check_result_code(code, pattern)
