"""The paho-mqtt 2.x adapter (the only module that imports paho). MQTT 5, QoS 1, TLS client certificates.

Everything paho reports arrives as an `Event` on one queue, so the caller's loop owns all state:
no bookkeeping and no locks in paho's thread (a lock taken in on_publish while publish() waits for
paho's own message mutex deadlocks). PUBACK reason codes >= 0x80 are failures (a broker ACL denial
shows up only there). on_publish can fire before publish() returns (paho #482); the mid -> topic map is
read only when the caller takes the event, after its publish() returned, in the same thread.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.errors import BrokerUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    kind: Literal["connected", "disconnected", "message", "puback", "refused"]
    topic: str = ""
    payload: bytes = b""
    mid: int = 0
    reason_code: int = 0
    reason: str = ""
    retain: bool = False  # a message: the broker's stored copy (sent on subscribing), not a live publish


@dataclass(frozen=True, slots=True)
class LinkConfig:
    host: str
    port: int
    client_id: str
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400  # 0 = clean session each time
    inflight: int = 20
    subscriptions: tuple[str, ...] = ()
    will_topic: str | None = None
    will_payload: bytes = b""


class Link:
    """One MQTT 5 connection with automatic reconnect; events on `self.events`."""

    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg
        self.events: queue.Queue[Event] = queue.Queue()
        self._pending: dict[int, str] = {}  # mid -> topic, until PUBACK (caller's thread only)
        self.connected = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=MQTTProtocolVersion.MQTTv5)
        if cfg.ca_file is not None:
            c.tls_set(
                ca_certs=str(cfg.ca_file),
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        c.max_inflight_messages_set(cfg.inflight)
        c.max_queued_messages_set(cfg.inflight * 4)  # paho's queue is memory only: keep it bounded
        c.reconnect_delay_set(1, 30)
        if cfg.will_topic:
            c.will_set(cfg.will_topic, cfg.will_payload, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    # --- paho callbacks (paho's thread) ---
    def _on_connect(self, client: Any, _u: Any, flags: Any, reason_code: Any, _p: Any) -> None:
        if reason_code.is_failure:
            self.events.put(Event("refused", reason_code=reason_code.value, reason=str(reason_code)))
            return
        for topic in self.cfg.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self.events.put(Event("connected", reason=str(getattr(flags, "session_present", ""))))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason_code: Any, _p: Any) -> None:
        self.connected.clear()
        self.events.put(Event("disconnected", reason_code=getattr(reason_code, "value", 0), reason=str(reason_code)))

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.events.put(Event("message", topic=msg.topic, payload=bytes(msg.payload), retain=bool(msg.retain)))

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason_code: Any, _p: Any) -> None:
        code = int(getattr(reason_code, "value", 0))
        self.events.put(Event("puback", mid=mid, reason_code=code, reason=str(reason_code)))

    # --- caller's side ---
    def start(self) -> None:
        """Connect in the background; reconnects by itself. Raises only on a bad TLS setup."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        try:
            self.client.connect_async(
                self.cfg.host,
                self.cfg.port,
                self.cfg.keepalive_s,
                clean_start=self.cfg.session_expiry_s == 0,
                properties=props,
            )
        except (OSError, ValueError) as err:
            raise BrokerUnreachable(f"{self.cfg.host}:{self.cfg.port}: {err}") from err
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """QoS 1 publish; the PUBACK comes back as an Event. Returns the mid (0 when not connected).
        Call it only from the thread that takes the events."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._pending[info.mid] = topic  # paho may still deliver it after a reconnect
        if len(self._pending) > 10_000:
            self._pending.pop(next(iter(self._pending)))
        return int(info.mid) if info.rc == paho.MQTT_ERR_SUCCESS else 0

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event (None after `timeout`, or at once with timeout=0); PUBACKs carry their topic."""
        try:
            ev = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            return None
        if ev.kind == "puback":
            return Event(
                "puback", topic=self._pending.pop(ev.mid, ""), mid=ev.mid, reason_code=ev.reason_code, reason=ev.reason
            )
        return ev

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
