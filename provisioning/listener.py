"""Which boxes the province broker's telemetry ACL names (``broker-acl --telemetry``).

The broker configuration itself is ``provisioning.broker.province_conf`` (``python -m provisioning
broker-config``): mosquitto reads the CRL when a listener starts, so restart it after a new CRL; the ACL
files are re-read on SIGHUP (``systemctl reload mosquitto``), enough after enrolling boxes.
"""

from __future__ import annotations

import sqlite3

from provisioning import registry


def registered_devices(con: sqlite3.Connection) -> list[str]:
    """The device ids the telemetry ACL names: every registered box that is not retired."""
    return [d.device_id for d in registry.list_devices(con)]
