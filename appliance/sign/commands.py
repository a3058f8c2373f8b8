"""CLI subcommands of the signing part (`token`, `sign`, `package`, `verify`)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this part's subcommands to the `appliance` parser. Each parser sets `handler`."""
    _ = (sub, argparse)
