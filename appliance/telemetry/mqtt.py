"""The telemetry publisher's paho-mqtt 2.x adapter (the only telemetry module that imports paho).

MQTT 5, TLS client certificate, a retained last will, QoS 1 publishes that wait for their PUBACK.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.errors import BrokerUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TelemetryLinkConfig:
    host: str
    port: int
    client_id: str  # must differ from the outbox sender's id (one will per connection)
    will_topic: str
    will_payload: bytes
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30


class TelemetryLink:
    """One MQTT connection with reconnects; `on_connect` runs in paho's thread after each (re)connect."""

    def __init__(self, cfg: TelemetryLinkConfig, on_connect: Any = None) -> None:
        self.cfg = cfg
        self.connected = threading.Event()
        self._on_connect_cb = on_connect
        self._refusals: dict[int, str] = {}  # mid -> PUBACK reason (>= 0x80), filled in paho's thread
        self._refusals_lock = threading.Lock()
        self.refused: str | None = None  # why the broker refused the last publish (None: it did not)
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=MQTTProtocolVersion.MQTTv5)
        if cfg.ca_file is not None:
            c.tls_set(
                ca_certs=str(cfg.ca_file),
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        c.will_set(cfg.will_topic, cfg.will_payload, qos=1, retain=True)
        c.reconnect_delay_set(1, 60)
        c.max_queued_messages_set(100)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            log.warning("telemetry connection refused: %s", reason_code)
            return
        self.connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        self.connected.clear()
        log.info("telemetry link down: %s", reason_code)

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: Any, _p: Any) -> None:
        # paho calls this before it marks the message published, so publish() always sees the reason
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            with self._refusals_lock:
                self._refusals[mid] = f"{reason_code} (0x{int(reason_code.value):02x})"

    def start(self) -> None:
        try:
            self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=True)
        except (OSError, ValueError) as err:
            raise BrokerUnreachable(f"{self.cfg.host}:{self.cfg.port}: {err}") from err
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float = 10.0) -> float | None:
        """QoS 1; the PUBACK round trip in ms, or None when not connected / not acknowledged in time /
        refused by the broker (an ACL denial shows only as a PUBACK reason code >= 0x80)."""
        self.refused = None
        if not self.connected.is_set():
            return None
        t0 = time.monotonic()
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return None
        with contextlib.suppress(RuntimeError, ValueError):  # not sent (yet): is_published() says so below
            info.wait_for_publish(timeout_s)
        with self._refusals_lock:
            refused = self._refusals.pop(info.mid, None)
        if refused is not None:
            self.refused = refused
            log.warning("the broker refused a publish on %s: %s", topic, refused)
            return None
        if not info.is_published():
            return None
        return (time.monotonic() - t0) * 1000.0

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
