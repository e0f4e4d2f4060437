"""Suite-wide fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _output_width_is_the_tests_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text output's layout depends on $COLUMNS (vpmu.cli): a runner or terminal must not choose
    it for a test; tests that want a width set it themselves."""
    monkeypatch.delenv("COLUMNS", raising=False)
