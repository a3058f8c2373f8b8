"""The signing worker in front of a token that does not offer RSASSA-PSS.

SoftHSM2 always offers CKM_SHA256_RSA_PKCS_PSS and has no setting to hide a mechanism, so this double
changes exactly one thing: the mechanism list the worker reads (`appliance.sign.pkcs11.mechanisms`) loses
every *_PSS mechanism. Everything else — the token, the certificates, the login, the signatures — is the
real SoftHSM2. Run it with `monkeypatch.setattr(batch._Worker, "command", ("-m", "tests.nopss_worker"))`.
"""

from __future__ import annotations

import sys
from typing import Any

from appliance.sign import pkcs11, worker

_real_mechanisms = pkcs11.mechanisms


def _without_pss(token: Any) -> frozenset[str]:
    return frozenset(m for m in _real_mechanisms(token) if "PSS" not in m)


pkcs11.mechanisms = _without_pss  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(worker.main())
