"""The browser every browser test drives: Debian's chromium through Playwright, never a downloaded one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package: Playwright must never download a browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-proxy-server"]


def require_chromium() -> None:
    """Skip without chromium or Playwright, except where ARTSEG_REQUIRE_BROWSER=1 (CI installs both): fail there.

    Every browser test calls this first, so none skips silently where the browser is required.
    """
    problem = None if CHROMIUM.is_file() else f"{CHROMIUM} missing (apt-get install -y chromium)"
    if problem is None:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright missing (pip install playwright)"
    if problem is not None:
        if os.environ.get("ARTSEG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ARTSEG_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
