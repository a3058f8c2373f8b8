"""Fixtures for the integration tests."""

# SoftHSM2 token, test CA and NSS db fixtures for the signing tests (helper "sign").
from tests.softhsm import fresh_hsm, hsm, nssdb, odd_token, shared_token  # noqa: F401
