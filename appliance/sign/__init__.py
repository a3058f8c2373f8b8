"""Signing with the plugged-in token: PAdES marks, ASiC-E packages, verification."""
