"""The reliability settings: their defaults and how they are written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HOOKLINE_* variable and no .env from the developer's shell may leak in."""
    for name in list(os.environ):
        if name.startswith("HOOKLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = Settings()
    assert settings.queue_type == "classic"
    assert settings.liveness_bound == 60.0
    assert settings.quorum_delivery_limit == 50
    assert settings.overdue_after == 3600.0


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_QUEUE_TYPE", "quorum")
    monkeypatch.setenv("HOOKLINE_LIVENESS_BOUND", "2m")
    monkeypatch.setenv("HOOKLINE_OVERDUE_AFTER", "30m")
    settings = Settings()
    assert (settings.queue_type, settings.liveness_bound, settings.overdue_after) == (
        "quorum",
        120.0,
        1800.0,
    )


def test_an_unknown_queue_type_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_QUEUE_TYPE", "mirrored")
    with pytest.raises(ValueError, match="queue_type"):
        Settings()
