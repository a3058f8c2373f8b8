"""The national trust anchors the product ships, pinned by the SHA-256 of their certificate (DER).

Circular 15/2025/TT-BKHCN asks signing software to check the trust path to the national root before
signing. Vietnam has two roots a commune meets:
- the Ban Cơ yếu Chính phủ root "RootCA chuyên dùng Chính phủ G2" for public-duty (chuyên dùng công vụ)
  certificates, published at http://ca.gov.vn/pki/pub/crt/rootcag2.crt;
- the NEAC "Vietnam National Root CA" (vnrca256) above every licensed public CA (VNPT-CA, Viettel-CA,
  FPT-CA, BKAV-CA, MISA ...), published at https://rootca.gov.vn/crt/vnrca256.p7b.

The product ships fingerprints, not the certificates: the box had no internet when this was written, and a
fingerprint is enough to recognise the root wherever it comes from (a token that carries its chain, a PEM
file provincial IT configures, the certificates embedded in a signed PDF). A certificate is an anchor only
when it is self-signed and its SHA-256 is one of these pins or one provincial IT adds
(`sign.trusted_root_sha256`); see appliance.sign.trust.

Provenance (docs/signing.md): G2's fingerprint was checked here against a copy of rootcag2.crt from a public
GitHub mirror (the bytes hash to this pin; tests/data/rootcag2.pem). The NEAC fingerprint comes from the
same mirror's notes (the issue quotes its first and last bytes); its certificate could not be fetched here,
so it is marked unconfirmed: confirm both at deployment against ca.gov.vn / rootca.gov.vn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PinnedAnchor:
    name: str  # the root's subject CN
    organisation: str
    sha256: str  # lowercase hex of the certificate's DER, no separators
    scope: str  # "public-duty" (Ban Cơ yếu) | "public" (NEAC, licensed public CAs)
    published_at: str
    confirmed: bool  # True: the certificate's bytes were seen to hash to this pin


PINNED_ANCHORS: tuple[PinnedAnchor, ...] = (
    PinnedAnchor(
        name="RootCA chuyên dùng Chính phủ G2",
        organisation="Ban Cơ yếu Chính phủ",
        sha256="f04ba4b459a7c9a1b971ad9b1cb833e695a80c79aea63b174b66a70edfe2fdb8",
        scope="public-duty",
        published_at="http://ca.gov.vn/pki/pub/crt/rootcag2.crt",
        confirmed=True,
    ),
    PinnedAnchor(
        name="Vietnam National Root CA",
        organisation="Ministry of Information and Communications (NEAC)",
        sha256="bac8bf609ab420a8ee1780d74f4de5c7f7184959d2a7375b0a75e4c29f0908e7",
        scope="public",
        published_at="https://rootca.gov.vn/crt/vnrca256.p7b",
        confirmed=False,
    ),
)


def normalise_fingerprint(value: str) -> str:
    """'F0:4B:A4 ...' or 'f04ba4...' -> 'f04ba4...'; ValueError unless 64 hex digits."""
    hexed = "".join(ch for ch in value.strip().lower() if ch not in ": ")
    if len(hexed) != 64 or any(ch not in "0123456789abcdef" for ch in hexed):
        raise ValueError(f"not a SHA-256 fingerprint: {value!r}")
    return hexed


def pinned(sha256: str) -> PinnedAnchor | None:
    """The shipped anchor with this fingerprint, if any."""
    return next((a for a in PINNED_ANCHORS if a.sha256 == sha256), None)
