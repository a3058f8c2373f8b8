"""One typed settings object.

Sources, later ones winning: built-in defaults -> the TOML file (``/etc/appliance/appliance.toml``,
written by Ansible, or the file named by ``APPLIANCE_CONFIG``) -> ``APPLIANCE_*`` environment
variables (nested groups with ``__``, e.g. ``APPLIANCE_OCR__WORKERS=2``).

Build it once in ``cli.main`` and pass it down; there is no module-level instance.
The token PIN is never part of the settings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SYSTEM_CONFIG = Path("/etc/appliance/appliance.toml")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_DATA_DIR = REPO_ROOT / "var"


def config_file() -> Path | None:
    """The TOML file to read: $APPLIANCE_CONFIG, else the system file when it exists."""
    named = os.environ.get("APPLIANCE_CONFIG")
    if named:
        return Path(named)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


class ScannerSettings(BaseModel):
    device: str | None = None  # SANE device name; None = first device found, else the test scanner in dev
    resolution: int = 300
    mode: str | None = "Color"
    source: str | None = None
    lock_timeout_s: float = 300.0


class CameraSettings(BaseModel):
    kind: Literal["none", "uvc", "picamera"] = "none"
    uvc_source: str = "0"  # device index or a video file / URL
    dpi_hint: float = 200.0


class CaptureSettings(BaseModel):
    """The memory budget of capture (docs/performance.md): pages decode one at a time, each within a pixel
    budget, and one request (or intake) holds at most ``max_pages`` pages."""

    max_pages: int = Field(default=200, ge=1)  # per upload request / intake; more is refused with a sentence
    max_page_pixels: int = Field(default=35_000_000, ge=1_000_000)  # A4 at 600 dpi; larger pages are scaled down


class StorageSettings(BaseModel):
    """Disk-full is a normal day: below ``min_free_mb`` free in data_dir new captures are refused (reading,
    searching and signing go on). ``reserve_mb`` is kept as a spare file in data_dir, released when the
    disk fills all the same (by something else), so sign-in and signing still have room."""

    min_free_mb: int = Field(default=200, ge=0)
    reserve_mb: int = Field(default=16, ge=0)


class OcrSettings(BaseModel):
    lang: str = "vie"
    workers: int = Field(default=2, ge=1, le=16)  # pages OCRed in parallel, one tesseract thread each
    low_confidence: float = 70.0
    timeout_s: float = 180.0


class EncodeSettings(BaseModel):
    background_dpi: float = 100.0
    jpeg_quality: int = Field(default=45, ge=10, le=95)


class SignSettings(BaseModel):
    pkcs11_module: Path = Path("/usr/lib/softhsm/libsofthsm2.so")  # the token vendor's .so in production
    token_serial: str | None = None  # select tokens by serial, never by label
    # Root and intermediate CA certificates (PEM/DER files). Intermediates help build paths; a root is an
    # anchor only when its SHA-256 is pinned: by the product (appliance.sign.anchors: Ban Cơ yếu G2, NEAC)
    # or in `trusted_root_sha256`. Used before signing and by `appliance verify` (see docs/signing.md).
    trust_roots: list[Path] = []
    trusted_root_sha256: list[str] = []  # more roots provincial IT trusts (hex, colons allowed)
    # Circular 15/2025: RSASSA-PSS whenever the token can ("prefer"); "require" refuses tokens without
    # PSS; "legacy" signs PKCS#1 v1.5 (recorded). ECDSA keys sign ECDSA under every policy.
    signature_policy: Literal["prefer", "require", "legacy"] = "prefer"
    # Revocation unknown (offline, no cached CRL/OCSP answer still fresh): "warn" signs and records it,
    # "block" refuses. A revoked certificate is always refused.
    revocation_unknown: Literal["block", "warn"] = "warn"
    revocation_fetch: bool = True  # False: never go to the network, use cached answers only
    revocation_timeout_s: float = Field(default=5.0, gt=0, le=60)  # per CRL/OCSP request
    tsa_url: str | None = None  # RFC 3161 timestamp server; PAdES B-T when set and reachable
    organisation_name: str = "UBND xã (chưa cấu hình)"
    agency_code: str = "000.00.00.H00"
    result_code_pattern: str = r"^KQ\.[A-Z0-9.]+\.\d{6}$"  # unconfirmed in law: configurable
    result_code_template: str = "KQ.{agency}.{seq:06d}"


class RemoteProvider(BaseModel):
    """A remote signing service the deploying organisation has a contract with (docs/signing.md)."""

    kind: Literal["csc", "vnpt_smartca", "viettel_mysign"] = "csc"
    label: str = ""  # shown to officers, e.g. "VNPT SmartCA"
    url: str  # CSC: the part before /csc/v1/...; vendors: their base URL (before /sca/sp769/v1, /vtss/service)
    # Partner credentials of the organisation (CSC OAuth2 bearer token; SmartCA sp_id/sp_password as
    # client_id/client_secret; MySign client_id/client_secret/profile_id): from the systemd credentials
    # directory or the root-only config, never logged, never written to the database.
    token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    profile_id: str | None = None
    client_data: str | None = None
    request_timeout_s: float = Field(default=30.0, gt=0, le=300)
    poll_interval_s: float = Field(default=2.0, gt=0, le=60)  # SmartCA / MySign: status polled this often


class RemoteSettings(BaseModel):
    providers: dict[str, RemoteProvider] = {}  # name -> provider; officers pick one by name
    approval_timeout_s: float = Field(default=300.0, ge=10, le=3600)  # the officer confirms on the phone within


class WebSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    https_cert: Path | None = None  # the box's certificate (PEM); HTTPS when both are set
    https_key: Path | None = None
    # plain HTTP on an address other than loopback (officers would type their token PIN in clear): refused
    # unless this is set, or `appliance serve --insecure-http`
    insecure_http: bool = False
    idle_timeout_min: int = Field(default=30, ge=1)  # signed out after this long without a request
    upload_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # per request
    login_max_failures: int = Field(default=5, ge=1)  # wrong passwords before a temporary lockout
    login_lockout_min: int = Field(default=15, ge=1)


class OutboxSettings(BaseModel):
    """MQTT link to the province (docs/protocol.md). The device id is `Settings.device_id`."""

    host: str = "127.0.0.1"
    port: int = 8883
    # the broker's telemetry listener (health publisher; client id = certificate subject, provisioning.broker);
    # None: the same port as the outbox
    telemetry_port: int | None = None
    ca_file: Path | None = None  # the provincial CA; TLS is off only when all three are unset
    cert_file: Path | None = None  # this device's certificate, CN = device id
    key_file: Path | None = None
    topic_mode: Literal["device", "emqx"] = "device"  # device: devices/{id}/file-async/..., emqx: $file-async/...
    segment_size: int = Field(default=256 * 1024, ge=1024, le=256 * 1024)
    inflight: int = Field(default=4, ge=1, le=64)  # segments awaiting the receiver's answer
    rate_kbit: float = 0.0  # token-bucket cap on what the sender publishes; 0 = no cap
    windows: list[str] = []  # local "HH:MM-HH:MM" windows when packages may be sent; empty = always
    response_timeout_s: float = 30.0  # no answer for this long: ask the receiver where to resume
    receipt_timeout_s: float = 600.0  # transferred but no receipt for this long: ask again
    backoff_base_s: float = 5.0
    backoff_max_s: float = 900.0
    max_attempts: int = 50  # failed attempts before a package stops retrying by itself
    retention_days: int = 90  # receipted packages stay in the local archive this long
    keepalive_s: int = 30


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="APPLIANCE_",
        env_nested_delimiter="__",
        extra="ignore",
        secrets_dir=os.environ.get("CREDENTIALS_DIRECTORY") or None,
    )

    data_dir: Path = DEV_DATA_DIR
    database_url: str | None = None  # default: sqlite file in data_dir
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    commune_code: str = "00000"  # this box's commune (Decision 19/2025 code): the receiving centre of its dossiers
    # More accepted dossier-code forms (regular expressions, named groups agency / date / seq), for forms whose
    # legal text is unconfirmed; the forms in force are built in (appliance.domain)
    dossier_code_patterns: list[str] = []
    device_id: str = "dev-0000-01"
    scanner: ScannerSettings = ScannerSettings()
    camera: CameraSettings = CameraSettings()
    capture: CaptureSettings = CaptureSettings()
    storage: StorageSettings = StorageSettings()
    ocr: OcrSettings = OcrSettings()
    encode: EncodeSettings = EncodeSettings()
    sign: SignSettings = SignSettings()
    remote: RemoteSettings = RemoteSettings()
    web: WebSettings = WebSettings()
    outbox: OutboxSettings = OutboxSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)

    @field_validator("dossier_code_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"dossier_code_patterns: {pattern!r} is not a regular expression: {err}") from err
        return value

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'appliance.db'}"

    @property
    def originals_dir(self) -> Path:
        return self.data_dir / "originals"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
