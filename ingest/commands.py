"""`wsp` subcommands of the ingest package (registered by common.cli)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `wsp` parser."""
