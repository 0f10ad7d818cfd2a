"""Headless Chromium (Debian's `chromium`) for the tests that look at a page: MLflow's UI, the grid page.

Driven by Playwright's Python client on the system browser (`executable_path`), so nothing is
downloaded: never run `playwright install`. A machine without Chromium skips these tests with
`INSTALL_HINT`; `.ci/run` installs it. `VIDEOMAKER_CHROMIUM` names another binary (a path that
does not exist hides the browser, which is how the skip is tested).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_ENV = "VIDEOMAKER_CHROMIUM"
INSTALL_HINT = (
    "Chromium not found: install Debian's (`apt-get install -y chromium` as root; .ci/run does it), "
    f"or set {CHROMIUM_ENV} to a Chromium binary."
)
# As root Chromium needs --no-sandbox; without the networking flags its background connections (updates,
# sync, QUIC) are refused by a closed network and can stall the page. Playwright adds --headless and the profile.
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 60_000  # two shared cores: MLflow's UI bundle alone takes seconds to parse


def find_chromium() -> str | None:
    """The Chromium binary: `VIDEOMAKER_CHROMIUM` if set (None if it is not an executable), else `chromium` on PATH."""
    candidates = [os.environ[CHROMIUM_ENV]] if os.environ.get(CHROMIUM_ENV) else [shutil.which("chromium"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def require_chromium() -> str:
    """The binary, or skip the calling test saying how to install it."""
    binary = find_chromium()
    if binary is None:
        chosen = os.environ.get(CHROMIUM_ENV)
        pytest.skip(f"{CHROMIUM_ENV}={chosen!r} is not an executable. {INSTALL_HINT}" if chosen else INSTALL_HINT)
    return binary


@contextmanager
def chromium_page(*, width: int = 1400, height: int = 900) -> Iterator:
    """A Playwright page in a fresh headless Chromium with an empty profile (no stored UI state); closed after."""
    from playwright.sync_api import sync_playwright

    binary = require_chromium()
    with tempfile.TemporaryDirectory(prefix="videomaker-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=binary,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def screenshot(page, path: str | Path) -> Path:
    """Save what `page` shows now as a PNG at `path` and check it is not blank."""
    path = Path(path)
    page.screenshot(path=str(path))
    assert_not_blank(path.read_bytes(), name=str(path))
    return path


def assert_not_blank(png: bytes, *, name: str = "screenshot", min_colours: int = 16) -> None:
    """A rendered page, not an empty one: a sensible PNG size, and more than `min_colours` colours with no
    single colour covering almost all of it (a blank or unstyled page is one or two colours)."""
    from PIL import Image

    assert len(png) > 5_000, f"{name}: a {len(png)}-byte PNG is an empty page"
    image = Image.open(io.BytesIO(png)).convert("RGB")
    counts = image.getcolors(maxcolors=image.width * image.height)
    top = max(count for count, _ in counts)
    assert len(counts) > min_colours, f"{name}: only {len(counts)} colours, the page did not render"
    assert top < 0.98 * image.width * image.height, f"{name}: one colour covers {top / (image.width * image.height):.1%} of it"
