"""The province's mosquitto configuration with revocation: provisioning.broker's TLS listener (client
certificate required, CN = username, per-device ACL patterns) plus ``crlfile``.

mosquitto reads the CRL when the listener starts; after a new CRL is written, restart (or reload) the broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from provisioning import broker


def conf_with_crl(base_conf: str, crl: Path) -> str:
    """Add ``crlfile`` to the listener block of a provisioning.broker config (the listener is its last block)."""
    if "\nlistener " not in base_conf:
        raise ValueError("the configuration has no listener")
    return base_conf.rstrip("\n") + f"\ncrlfile {crl}\n"


def write_province_broker(
    directory: Path,
    *,
    port: int,
    ca: Path,
    cert: Path,
    key: Path,
    crl: Path,
    receivers: Sequence[str],
    bind: str = "0.0.0.0",
    run_as_root: bool = False,
) -> broker.BrokerFiles:
    directory.mkdir(parents=True, exist_ok=True)
    acl = directory / "acl"
    acl.write_text(broker.acl_text(receivers))
    conf = directory / "mosquitto.conf"
    base = broker.mosquitto_conf(
        port=port, ca=ca, cert=cert, key=key, acl=acl, data_dir=directory, bind=bind, run_as_root=run_as_root
    )
    conf.write_text(conf_with_crl(base, crl))
    return broker.BrokerFiles(conf, acl)
