"""The browser tier: every test here needs Chromium, node and playwright-core, or is skipped."""

from __future__ import annotations

import pytest

from tests.browser.driver import need_browser


@pytest.fixture(autouse=True)
def _browser_present() -> None:
    need_browser()
