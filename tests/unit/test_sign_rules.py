"""Pure signing rules: the pinned national roots, which configured roots are trusted, the algorithm choice."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.errors import CertificateKeyTooSmall, SignatureAlgorithmUnavailable
from appliance.sign.anchors import PINNED_ANCHORS, normalise_fingerprint, pinned
from appliance.sign.policy import ECDSA, PKCS1, PSS, choose_algorithm
from appliance.sign.token import CertInfo
from appliance.sign.trust import configured_store, load_certificates, sha256

DATA = Path(__file__).resolve().parents[1] / "data"
NOW = dt.datetime.now(dt.UTC)

# As published with issue 12 (Ban Cơ yếu, ca.gov.vn) and by the NEAC mirror (rootca.gov.vn, first and last
# bytes quoted in the issue; confirm at deployment).
G2 = "F0:4B:A4:B4:59:A7:C9:A1:B9:71:AD:9B:1C:B8:33:E6:95:A8:0C:79:AE:A6:3B:17:4B:66:A7:0E:DF:E2:FD:B8"
NEAC_START, NEAC_END = "bac8bf60", "0908e7"


def test_national_roots_are_pinned_by_fingerprint() -> None:
    g2, neac = PINNED_ANCHORS
    assert g2.name == "RootCA chuyên dùng Chính phủ G2" and g2.sha256 == normalise_fingerprint(G2)
    assert neac.name == "Vietnam National Root CA"
    assert neac.sha256.startswith(NEAC_START) and neac.sha256.endswith(NEAC_END) and not neac.confirmed
    assert pinned(g2.sha256) is g2 and pinned("00" * 32) is None


def test_the_g2_certificate_hashes_to_its_pin_and_is_an_anchor_when_configured() -> None:
    (cert,) = load_certificates(DATA / "rootcag2.pem")
    assert sha256(cert) == PINNED_ANCHORS[0].sha256
    store = configured_store([DATA / "rootcag2.pem"], [], NOW)
    assert [sha256(c) for c in store.anchors] == [PINNED_ANCHORS[0].sha256] and store.refused == ()


def _self_signed(subject: x509.Name, tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "root.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_an_impostor_with_a_national_roots_name_is_refused(tmp_path: Path) -> None:
    (g2,) = load_certificates(DATA / "rootcag2.pem")
    impostor = _self_signed(g2.subject, tmp_path)
    store = configured_store([impostor], [], NOW)
    assert store.anchors == () and "is not pinned" in store.refused[0]


def test_provincial_it_pins_its_own_root(tmp_path: Path) -> None:
    root = _self_signed(x509.Name.from_rfc4514_string("CN=Provincial Test Root,C=VN"), tmp_path)
    (cert,) = load_certificates(root)
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    assert configured_store([root], [], NOW).anchors == ()
    assert configured_store([root], [fingerprint], NOW).anchors == (cert,)
    with pytest.raises(ValueError):
        configured_store([root], ["not-a-fingerprint"], NOW)


RSA = CertInfo(
    cka_id="01", label="", subject="CN=A", common_name="A", organisation="", issuer="CN=CA", serial="1",
    not_before=NOW, not_after=NOW, days_to_expiry=1, key_usage=("content_commitment",), non_repudiation=True,
    is_ca=False, sha256="00", role="officer", key_type="rsa", key_bits=2048,
)  # fmt: skip
SOFTHSM = frozenset({"SHA256_RSA_PKCS", "SHA256_RSA_PKCS_PSS", "RSA_PKCS", "RSA_PKCS_PSS", "ECDSA"})


@pytest.mark.parametrize(
    ("policy", "mechanisms", "name", "note"),
    [
        ("prefer", SOFTHSM, PSS, ""),
        ("require", SOFTHSM, PSS, ""),
        ("legacy", SOFTHSM, PKCS1, "legacy_policy"),
        ("prefer", frozenset({"SHA256_RSA_PKCS"}), PKCS1, "token_without_pss"),
        ("prefer", frozenset({"RSA_PKCS"}), PKCS1, "token_without_pss"),
    ],
)
def test_rsa_algorithm_by_policy(policy: str, mechanisms: frozenset[str], name: str, note: str) -> None:
    chosen = choose_algorithm(RSA, mechanisms, policy)
    assert (chosen.name, chosen.note, chosen.fallback) == (name, note, bool(note))


def test_refusals() -> None:
    with pytest.raises(SignatureAlgorithmUnavailable):
        choose_algorithm(RSA, frozenset({"SHA256_RSA_PKCS"}), "require")
    with pytest.raises(CertificateKeyTooSmall):
        choose_algorithm(replace(RSA, key_bits=1024), SOFTHSM, "prefer")
    with pytest.raises(CertificateKeyTooSmall):
        choose_algorithm(replace(RSA, key_type="ec", key_bits=224), SOFTHSM, "prefer")
    with pytest.raises(SignatureAlgorithmUnavailable):
        choose_algorithm(replace(RSA, key_type="dsa", key_bits=0), SOFTHSM, "prefer")


def test_ecdsa_hashed_or_raw() -> None:
    ec_cert = replace(RSA, key_type="ec", key_bits=256)
    assert choose_algorithm(ec_cert, SOFTHSM, "legacy") == choose_algorithm(ec_cert, SOFTHSM, "require")
    assert choose_algorithm(ec_cert, SOFTHSM, "prefer").raw  # SoftHSM2 has CKM_ECDSA only
    hashed = choose_algorithm(ec_cert, frozenset({"ECDSA_SHA256"}), "prefer")
    assert hashed.name == ECDSA and not hashed.raw
