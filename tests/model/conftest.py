"""Fixtures of the model tier: those of the `wsp send` tests (shared with the system tier)."""

from tests.send_helpers import excerpt, original, stage

__all__ = ["excerpt", "original", "stage"]
