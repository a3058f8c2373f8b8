"""Signing batches, run in a short-lived worker process (appliance.sign.worker).

One PIN entry signs several documents. A batch is all-or-nothing: signed files appear at their
destinations only when every document was signed; after a wrong PIN, a removed token or a crashing
vendor module nothing is written and the inputs are untouched, so the documents stay queued unsigned.
The caller drops the PIN after the call; it is sent to the worker over a pipe only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, SignerCrashed, SignError, all_error_classes
from appliance.sign.token import CertInfo, PinState, TokenInfo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0  # per event; a vendor module that hangs longer is killed


@dataclass(frozen=True, slots=True)
class SignJob:
    input: Path
    output: Path
    role: str  # "officer" | "organisation"
    signer_name: str | None = None  # officer: the digitizer; organisation: who converted it
    organisation: str | None = None  # organisation mark: the organisation's name
    copy_form: str = "SAO Y"
    cert_id: str | None = None  # CKA_ID (hex) to force a certificate
    reason: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class SignResult:
    output: Path
    field_name: str
    level: str
    signing_time: str
    mark: tuple[str, ...]
    box: tuple[float, float, float, float]
    cert_sha256: str
    cert_subject: str
    bytes_added: int


def _error(event: dict[str, Any]) -> ApplianceError:
    classes = {cls.code: cls for cls in all_error_classes()}
    cls = classes.get(str(event.get("code")), SignError)
    detail = str(event.get("detail", ""))
    state = event.get("pin_state")
    if state and state != "unknown":
        detail = f"{detail}; PIN state now: {state}"
    params = {k: str(v) for k, v in event.items() if k not in {"event", "code", "detail"}}
    return cls(detail, **params)


class _Worker:
    """One worker process, JSON lines both ways, with a deadline on every read."""

    def __init__(self, env: dict[str, str] | None, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.sign.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._buf = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError as err:
            raise self._crashed() from err

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise SignerCrashed(f"the signing worker did not answer within {self.timeout_s:.0f} s")
            ready, _w, _x = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._crashed()
            self._buf += chunk
        line, _sep, self._buf = self._buf.partition(b"\n")
        event: dict[str, Any] = json.loads(line)
        return event

    def _crashed(self) -> ApplianceError:
        code = self.proc.wait(timeout=10)
        stderr = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
        log.warning("signing worker exited with %s", code)
        return SignerCrashed(f"the signing worker exited with code {code}: {stderr.strip()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.kill()


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("APPLIANCE_PIN", None)  # never hand a PIN over through the environment
    env.update(extra or {})
    return env


def token_status(module: Path, serial: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[TokenInfo]:
    """Tokens present, their PIN flags and certificates (no login)."""
    worker = _Worker(_env(None), timeout_s)
    try:
        worker.send(json.dumps({"op": "status", "module": str(module), "serial": serial}))
        event = worker.read()
    finally:
        worker.close()
    if event.get("event") == "error":
        raise _error(event)
    return [_token(t) for t in event["tokens"]]


def _token(d: dict[str, Any]) -> TokenInfo:
    certs = tuple(
        CertInfo(
            **{
                **c,
                "not_before": dt.datetime.fromisoformat(c["not_before"]),
                "not_after": dt.datetime.fromisoformat(c["not_after"]),
                "key_usage": tuple(c["key_usage"]),
            }
        )
        for c in d["certificates"]
    )
    return TokenInfo(**{**d, "pin_state": PinState(d["pin_state"]), "certificates": certs})


def sign_batch(
    jobs: Sequence[SignJob],
    pin: str,
    *,
    module: Path,
    serial: str | None = None,
    tsa_url: str | None = None,
    on_signed: Callable[[int], bool] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[SignResult]:
    """Sign every job with one login.

    `on_signed(i)` runs after document i; returning False stops the batch (nothing is written).
    """
    if not jobs:
        return []
    request = {
        "op": "sign",
        "module": str(module),
        "serial": serial,
        "tsa_url": tsa_url,
        "pin": pin,
        "jobs": [
            {
                "input": str(j.input),
                "output": str(j.output),
                "role": j.role,
                "signer_name": j.signer_name,
                "organisation": j.organisation,
                "copy_form": j.copy_form,
                "cert_id": j.cert_id,
                "reason": j.reason,
                "location": j.location,
            }
            for j in jobs
        ],
    }
    worker = _Worker(_env(None), timeout_s)
    results: list[SignResult] = []
    parts: list[Path] = []
    try:
        worker.send(json.dumps(request, ensure_ascii=False))
        del request
        while True:
            event = worker.read()
            kind = event.get("event")
            if kind == "error":
                raise _error(event)
            if kind == "done":
                break
            if kind != "signed":
                raise SignError(f"unexpected worker event {kind!r}")
            part = Path(event["part"])
            parts.append(part)
            index = int(event["index"])
            results.append(
                SignResult(
                    output=jobs[index].output,
                    field_name=event["field_name"],
                    level=event["level"],
                    signing_time=event["signing_time"],
                    mark=tuple(event["mark"]),
                    box=(event["box"][0], event["box"][1], event["box"][2], event["box"][3]),
                    cert_sha256=event["cert_sha256"],
                    cert_subject=event["cert_subject"],
                    bytes_added=int(event["bytes_added"]),
                )
            )
            go_on = on_signed(index) if on_signed is not None else True
            worker.send("next" if go_on else "stop")
        if len(results) != len(jobs):
            raise SignerCrashed(f"the worker signed {len(results)} of {len(jobs)} documents")
        for part, result in zip(parts, results, strict=True):
            part.replace(result.output)
        parts = []
        return results
    finally:
        worker.close()
        for part in parts:  # a failed batch leaves nothing behind
            part.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class CmsSignature:
    der: bytes
    cert_sha256: str
    cert_subject: str
    signing_time: str


def sign_detached(
    data: bytes,
    pin: str,
    *,
    role: str,
    module: Path,
    serial: str | None = None,
    cert_id: str | None = None,
    expect_sha256: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> CmsSignature:
    """A CAdES detached signature over `data` made with the token, in the worker process.

    With `expect_sha256` the worker refuses (before the PIN is used) unless the chosen certificate has
    that fingerprint, e.g. the one a package manifest already names as its signer."""
    import base64

    worker = _Worker(_env(None), timeout_s)
    try:
        worker.send(
            json.dumps(
                {
                    "op": "cms",
                    "module": str(module),
                    "serial": serial,
                    "role": role,
                    "cert_id": cert_id,
                    "expect_sha256": expect_sha256,
                    "pin": pin,
                    "data": base64.b64encode(data).decode(),
                }
            )
        )
        event = worker.read()
    finally:
        worker.close()
    if event.get("event") == "error":
        raise _error(event)
    return CmsSignature(
        base64.b64decode(event["der"]), event["cert_sha256"], event["cert_subject"], event["signing_time"]
    )
