"""The province's mosquitto configuration with revocation: provisioning.broker's two TLS listeners (client
certificate required, client id = certificate identity, per-device ACLs) plus ``crlfile`` on each.

mosquitto reads the CRL when a listener starts; after a new CRL is written, restart the broker. The ACL
files are re-read on SIGHUP (``systemctl reload mosquitto``): enough after enrolling boxes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from provisioning import broker, registry


def registered_devices(con: sqlite3.Connection) -> list[str]:
    """The device ids the telemetry ACL names: every registered box that is not retired."""
    return [d.device_id for d in registry.list_devices(con)]


def write_province_broker(
    directory: Path,
    *,
    port: int,
    telemetry_port: int,
    ca: Path,
    cert: Path,
    key: Path,
    crl: Path,
    receivers: Sequence[str],
    devices: Iterable[str],
    bind: str = "0.0.0.0",  # the province broker listens for the communes
    run_as_root: bool = False,
) -> broker.BrokerFiles:
    return broker.write_broker_config(
        directory,
        port=port,
        telemetry_port=telemetry_port,
        ca=ca,
        cert=cert,
        key=key,
        receivers=receivers,
        devices=devices,
        bind=bind,
        crl=crl,
        run_as_root=run_as_root,
    )
