"""Tests that need a program from outside Python (Chromium, Node, PostgreSQL).

Locally such a test skips, saying what to install; in CI (``CI`` set), where ``.ci/run``
installs everything, a missing program is a failure, so a test that matters never goes
quietly unrun.
"""

from __future__ import annotations

import os

import pytest


def missing(why: str) -> None:
    """Skip (locally) or fail (in CI) because ``why``."""
    if os.environ.get("CI"):
        pytest.fail(f"this test must run in CI, but {why}")
    pytest.skip(why)
