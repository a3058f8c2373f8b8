"""The payloads the box publishes (docs/telemetry.md holds their JSON Schema, generated from these models).

Topics (the device id is the certificate CN, see provisioning.broker):
- `devices/{id}/status`    retained; `Status` (online / offline on a clean stop / lost as the last will)
- `devices/{id}/telemetry` `Reading` (kind "reading"), `Counters` (kind "counters", daily) and
                           `Incident` (kind "incident", an officer's "Báo sự cố")

A value the box cannot determine is `null` ("unknown"), never zero.

Every timestamp carries its offset (a naive one is refused: the box always sends UTC, and a naive value
cannot be compared with the province's own), every integer is bounded so that it fits the province's
columns (32-bit counters, 64-bit byte counts and sequence numbers), and identifiers are length-limited to
their columns: one malformed payload is rejected here instead of failing in the database.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

SCHEMA_VERSION = 1

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
Instant = AwareDatetime  # ISO 8601 with an offset ("Z" or "+07:00"); a naive timestamp is refused
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]  # things counted: packages, dossiers, refusals
Bytes = Annotated[int, Field(ge=0, le=INT64_MAX)]
Days = Annotated[int, Field(ge=-INT32_MAX, le=INT32_MAX)]
Version = Annotated[int, Field(ge=0, le=INT32_MAX)]
DeviceId = Annotated[str, Field(min_length=1, max_length=100)]
CommuneCode = Annotated[str, Field(max_length=20)]
Short = Annotated[str, Field(max_length=64)]  # boot id, software version


class _Model(BaseModel):
    # A field this version does not know is dropped, not refused: a box upgraded before its province
    # still reports (additive fields only within a schema version; bounds still apply to known fields).
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Status(_Model):
    """Retained connection state. `boot_id` + `seq` identify the session: a will whose session is older than
    the newest `online` seen is stale and must be ignored."""

    state: Literal["online", "offline", "lost"]
    device_id: DeviceId
    boot_id: Short  # /proc/sys/kernel/random/boot_id: changes at every boot
    seq: Annotated[int, Field(ge=0, le=INT64_MAX)]  # connection sequence within this boot (like Sparkplug's bdSeq)
    at: Instant | None = None  # the box's clock; null in the will (it is written before it fires)
    version: Short = ""
    denied: Count = 0  # telemetry publishes the broker refused (PUBACK >= 0x80, an ACL denial) since the last status
    denied_reason: Annotated[str, Field(max_length=500)] = ""
    v: Version = SCHEMA_VERSION


class Certificate(_Model):
    owner: str  # subject common name
    role: Literal["officer", "organisation"]
    serial: str
    not_after: Instant
    days_to_expiry: Days
    usable_for_signing: bool  # has non-repudiation and is not a CA certificate


class Token(_Model):
    serial: str
    label: str
    model: str
    pin_state: str  # appliance.sign.token.PinState: ok / count_low / final_try / locked / ...
    certificates: list[Certificate] = []


class Scanner(_Model):
    present: bool
    devices: list[str] = []  # "vendor model (name)"


class Camera(_Model):
    configured: str  # settings.camera.kind: none / uvc / picamera
    present: bool | None  # None: not configured, or not determinable


class Disk(_Model):
    path: str
    total_bytes: Bytes
    free_bytes: Bytes
    used_pct: float
    written_bytes: Bytes | None = None  # since boot, from /sys/block/*/stat (the SD card's wear proxy)
    device: str | None = None  # block device holding the data partition, e.g. mmcblk0p2


class Power(_Model):
    """Raspberry Pi `vcgencmd get_throttled` decoded; all null off a Pi."""

    throttled_raw: str | None = None  # e.g. "0x50005"
    under_voltage_now: bool | None = None
    freq_capped_now: bool | None = None
    throttled_now: bool | None = None
    soft_temp_limit_now: bool | None = None
    under_voltage_since_boot: bool | None = None
    freq_capped_since_boot: bool | None = None
    throttled_since_boot: bool | None = None
    soft_temp_limit_since_boot: bool | None = None


class Memory(_Model):
    total_bytes: Bytes
    available_bytes: Bytes
    used_pct: float


class Clock(_Model):
    synchronized: bool | None  # NTP / chrony says the clock is synchronised; None: cannot tell
    source: str  # "timedatectl", "adjtimex" or "unknown"
    offset_ms: float | None = None


class Outbox(_Model):
    depth: Count | None  # packages not yet receipted
    oldest_age_s: float | None  # age of the oldest unsent package
    last_receipt_at: Instant | None
    receipted_bytes_24h: Bytes | None  # what the link actually carried in the last day
    link_rtt_ms: float | None = None  # MQTT PUBACK round trip of the previous telemetry publish
    # what the sender published since `bytes_since` (counters that only grow; null before its first run):
    # segment bytes, everything published (topics + payloads), segment bytes sent more than once
    payload_bytes: Bytes | None = None
    wire_bytes: Bytes | None = None
    resent_bytes: Bytes | None = None
    bytes_since: Instant | None = None


class Link(_Model):
    """The broadband link to the province: a TCP (and, when configured, TLS) connect to the outbox's broker
    under a short deadline (no MQTT session: the sender's own stays undisturbed), plus what the outbox
    actually carried. `reachable` is null when the probe could not tell (no broker configured)."""

    host: Annotated[str, Field(max_length=255)]
    port: Annotated[int, Field(ge=0, le=65535)]
    tls: bool  # the handshake includes TLS with the device certificate
    reachable: bool | None
    connect_ms: float | None = None  # TCP connect time: one round trip to the broker
    handshake_ms: float | None = None  # TCP connect + TLS handshake
    error: Annotated[str, Field(max_length=300)] | None = None  # why it is not reachable, one line
    # the last package transfer the receiver completed (outbox-traffic.json): bytes, seconds, when
    last_transfer_bytes: Bytes | None = None
    last_transfer_s: float | None = None
    last_transfer_at: Instant | None = None
    throughput_bps: float | None = None  # last_transfer_bytes * 8 / last_transfer_s (bits per second)
    last_delivery_at: Instant | None = None  # the warehouse's last receipt


class FleetRun(_Model):
    """The last fleet-management (Ansible) run, from the file the role writes (docs/telemetry.md)."""

    finished_at: Instant | None = None
    result: str | None = None  # ok / failed / changed
    playbook: str | None = None
    version: str | None = None


class RosterEntry(_Model):
    """One officer's (or the organisation's) certificate as the box last saw it (appliance.roster).

    Only what the certificate itself shows travels: no PIN, no account data beyond the username."""

    username: Short  # "" for the organisation's certificate
    role: Literal["officer", "organisation"]
    verdict: Literal["missing", "valid", "expiring", "expired", "revoked", "mismatch"]
    subject: Annotated[str, Field(max_length=500)] | None = None
    serial: Annotated[str, Field(max_length=80)] | None = None
    issuer: Annotated[str, Field(max_length=500)] | None = None
    not_after: Instant | None = None
    key: Annotated[str, Field(max_length=32)] | None = None  # "rsa-2048", "ec-256"
    pss: bool | None = None  # the token / credential offers RSASSA-PSS (Circular 15/2025)
    revocation: Annotated[str, Field(max_length=16)] | None = None  # good / revoked / unknown / not_checked
    last_seen: Instant | None = None


class ReadingError(_Model):
    item: str
    error: str  # "timeout after 5 s" or the exception's one-line text


class Reading(_Model):
    kind: Literal["reading"] = "reading"
    v: Version = SCHEMA_VERSION
    device_id: DeviceId
    commune_code: CommuneCode
    boot_id: Short
    at: Instant  # the box's own clock when the collection started
    historical: bool = False  # true when taken while offline and sent later
    version: Short  # software version
    uptime_s: float | None = None
    scanner: Scanner | None = None
    camera: Camera | None = None
    tokens: list[Token] | None = None
    disk: Disk | None = None
    cpu_temp_c: float | None = None
    power: Power | None = None
    memory: Memory | None = None
    clock: Clock | None = None
    outbox: Outbox | None = None
    fleet: FleetRun | None = None
    link: Link | None = None  # broadband to the province
    roster: Annotated[list[RosterEntry], Field(max_length=500)] | None = None  # officers' certificates
    errors: list[ReadingError] = []  # readings that failed or timed out (their field stays null)


MAX_AGENCIES = 200  # deciding agencies in one day's split; the box folds the smallest beyond into OTHER_AGENCIES
OTHER_AGENCIES = "*"


class AgencyCounts(_Model):
    """One deciding agency's share of a day's dossiers (Decree 118/2025: a centre also receives dossiers that
    another commune or a provincial agency decides). Backlog work has no dossier and is not split."""

    agency: Annotated[str, Field(min_length=1, max_length=64)]  # unit or agency code, or OTHER_AGENCIES
    dossiers_received: Count
    components_digitized: Count
    results_electronic: Count
    reused: Count


class Counters(_Model):
    """Decision 766 counters for one local day (the box's timezone), recomputed and resent daily."""

    kind: Literal["counters"] = "counters"
    v: Version = SCHEMA_VERSION
    device_id: DeviceId
    commune_code: CommuneCode
    day: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]  # YYYY-MM-DD
    at: Instant
    historical: bool = False
    dossiers_received: Count
    components_digitized: Count  # dossiers with at least one digitized component
    results_electronic: Count  # results issued electronically (signed, with a result code)
    reused: Count  # dossiers that reused already digitized data
    backlog_digitized: Count = 0
    # the same day split per deciding agency (Decree 118/2025); null from a box that does not split
    by_deciding_agency: Annotated[list[AgencyCounts], Field(max_length=MAX_AGENCIES)] | None = None

    @field_validator("by_deciding_agency")
    @classmethod
    def _one_row_per_agency(cls, rows: list[AgencyCounts] | None) -> list[AgencyCounts] | None:
        if rows is not None and len({r.agency for r in rows}) != len(rows):
            raise ValueError("an agency appears more than once")
        return rows


class Incident(_Model):
    """'Báo sự cố': an officer's short text plus the box's health at that moment."""

    kind: Literal["incident"] = "incident"
    v: Version = SCHEMA_VERSION
    device_id: DeviceId
    commune_code: CommuneCode
    incident_id: Annotated[str, Field(min_length=1, max_length=36)]  # uuid4, so a resend is recognised
    at: Instant
    historical: bool = False
    reporter: Annotated[str, Field(max_length=200)]
    text: str = Field(max_length=2000)
    snapshot: Reading | None = None


Message = Annotated[Reading | Counters | Incident, Field(discriminator="kind")]
MESSAGE = TypeAdapter(Message)


def parse_message(data: bytes | str) -> Reading | Counters | Incident:
    """One `devices/{id}/telemetry` payload (raises pydantic.ValidationError on anything else)."""
    return MESSAGE.validate_json(data)


class OpenAlert(_Model):
    alert: str  # certificate:<serial> / pin_locked / disk / lost / outbox / ...
    message: str  # plain Vietnamese
    opened_at: Instant


class AlertState(_Model):
    """Published by the province (retained) whenever a box's set of open alerts changes; `alerts` is empty
    once every alert cleared."""

    device_id: DeviceId
    commune_code: CommuneCode
    at: Instant
    alerts: list[OpenAlert]
    v: Version = SCHEMA_VERSION


def json_schemas() -> dict[str, object]:
    """JSON Schema of every payload, by topic."""
    return {
        "devices/{id}/status": Status.model_json_schema(),
        "devices/{id}/telemetry": MESSAGE.json_schema(),
        "province/alerts/{id}": AlertState.model_json_schema(),
    }


def schema_markdown() -> str:
    """The JSON Schema section of docs/telemetry.md (`python -m appliance.telemetry.schema` prints it)."""
    import json

    parts = []
    for topic, schema in json_schemas().items():
        body = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True)
        parts.append(f"### `{topic}`\n\n```json\n{body}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":  # pragma: no cover
    print(schema_markdown())  # noqa: T201
