"""Topics and payloads of the package transfer protocol (docs/protocol.md). Pure: no MQTT library here.

Modelled on EMQX "File Transfer over MQTT", async variant. Two topic layouts, same payloads:
  device (mosquitto + our receiver): devices/{device}/file-async/{file_id}/init|{offset}/{sha}|fin/{size}/{sha},
                                     replies on devices/{device}/file-response
  emqx (EMQX native file transfer):  $file-async/{file_id}/..., replies on $file-response/{client_id}
Application receipts always travel on devices/{device}/receipts, after the warehouse committed.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

VSN = "0.1"
MAX_SEGMENT = 256 * 1024
RECEIVER_STATE = "province/receivers/{name}/state"
RECEIVER_STATE_FILTER = "province/receivers/+/state"

# reason codes in file-response (MQTT 5 reason code values, as EMQX uses them)
OK = 0
UNSPECIFIED = 0x80
IMPLEMENTATION_ERROR = 0x83
NOT_AUTHORIZED = 0x87
QUOTA_EXCEEDED = 0x97  # the receiver's disk is full
PAYLOAD_INVALID = 0x99  # checksum or size mismatch

Mode = Literal["device", "emqx"]


@dataclass(frozen=True, slots=True)
class Topics:
    device_id: str
    mode: Mode = "device"

    @property
    def base(self) -> str:
        return "$file-async" if self.mode == "emqx" else f"devices/{self.device_id}/file-async"

    def init(self, file_id: str) -> str:
        return f"{self.base}/{file_id}/init"

    def segment(self, file_id: str, offset: int, checksum: str) -> str:
        return f"{self.base}/{file_id}/{offset}/{checksum}"

    def fin(self, file_id: str, size: int, checksum: str) -> str:
        return f"{self.base}/{file_id}/fin/{size}/{checksum}"

    @property
    def response(self) -> str:
        return f"$file-response/{self.device_id}" if self.mode == "emqx" else f"devices/{self.device_id}/file-response"

    @property
    def receipts(self) -> str:
        return f"devices/{self.device_id}/receipts"


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed file-transfer topic, as the receiver sees it."""

    device_id: str
    file_id: str
    kind: Literal["init", "segment", "fin"]
    offset: int = 0
    size: int = 0
    checksum: str | None = None


def parse_topic(topic: str) -> Command | None:
    """devices/{device}/file-async/{file_id}/... -> Command; None for anything else."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "devices" or parts[2] != "file-async":
        return None
    device, file_id, rest = parts[1], parts[3], parts[4:]
    try:
        if rest == ["init"]:
            return Command(device, file_id, "init")
        if rest[0] == "fin" and len(rest) in (2, 3):
            return Command(device, file_id, "fin", size=int(rest[1]), checksum=rest[2] if len(rest) == 3 else None)
        if len(rest) in (1, 2):
            return Command(
                device, file_id, "segment", offset=int(rest[0]), checksum=rest[1] if len(rest) == 2 else None
            )
    except ValueError:
        return None
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def init_payload(
    *, name: str, size: int, checksum: str, segments_ttl: int = 7 * 86400, user_data: dict[str, Any] | None = None
) -> bytes:
    return json.dumps(
        {
            "name": name[:240],
            "size": size,
            "checksum": checksum,
            "expire_at": int(time.time()) + 30 * 86400,
            "segments_ttl": segments_ttl,
            "user_data": user_data or {},
        },
        ensure_ascii=False,
    ).encode()


@dataclass(frozen=True, slots=True)
class Response:
    """One answer on file-response. `offset` (our extension) is how many leading bytes the receiver holds;
    `receipt` (our extension) is set when the package is already in the warehouse."""

    topic: str
    reason_code: int
    reason_description: str = "success"
    offset: int | None = None
    receipt: dict[str, Any] | None = None
    packet_id: int = 0

    @property
    def ok(self) -> bool:
        return self.reason_code < 0x80


def response_payload(resp: Response) -> bytes:
    body: dict[str, Any] = {
        "vsn": VSN,
        "topic": resp.topic,
        "packet_id": resp.packet_id,
        "reason_code": resp.reason_code,
        "reason_description": resp.reason_description,
    }
    if resp.offset is not None:
        body["offset"] = resp.offset
    if resp.receipt is not None:
        body["receipt"] = resp.receipt
    return json.dumps(body, ensure_ascii=False).encode()


def parse_response(payload: bytes) -> Response | None:
    try:
        body = json.loads(payload)
        return Response(
            topic=str(body["topic"]),
            reason_code=int(body["reason_code"]),
            reason_description=str(body.get("reason_description", "")),
            offset=int(body["offset"]) if body.get("offset") is not None else None,
            receipt=body.get("receipt"),
            packet_id=int(body.get("packet_id", 0)),
        )
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Receipt:
    """The warehouse's verdict on a package, sent only after its database commit."""

    package_id: str
    status: Literal["accepted", "rejected"]
    sha256: str
    warehouse_id: str | None = None
    reason: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "package_id": self.package_id,
            "status": self.status,
            "sha256": self.sha256,
            "warehouse_id": self.warehouse_id,
            "reason": self.reason,
            "problems": list(self.problems),
            "at": self.at,
        }


def parse_receipt(body: Any) -> Receipt | None:
    try:
        status = body["status"]
        if status not in ("accepted", "rejected"):
            return None
        return Receipt(
            package_id=str(body["package_id"]),
            status=status,
            sha256=str(body.get("sha256", "")),
            warehouse_id=body.get("warehouse_id"),
            reason=body.get("reason"),
            problems=tuple(body.get("problems") or ()),
            at=str(body.get("at", "")),
        )
    except (KeyError, TypeError):
        return None


def receiver_state_payload(state: Literal["online", "offline"], name: str) -> bytes:
    return json.dumps({"state": state, "receiver": name, "at": int(time.time())}).encode()
