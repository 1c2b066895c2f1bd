"""docs/architecture.md stays true: every file and folder it names exists (issue 12).

The page answers "where is X" for a newcomer; a move that forgets it would send them to a
file that is gone.
"""

from __future__ import annotations

import re
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
_PAGE = _ROOT / "docs" / "architecture.md"
_TOP = ("services", "shared", "tests", "client", "chaos", "bench", "deploy", "docs", "scripts")
_PATH = re.compile(r"`((?:" + "|".join(_TOP) + r")/[A-Za-z0-9_./<>*-]*)`")


def _named_paths() -> list[str]:
    return sorted(set(_PATH.findall(_PAGE.read_text(encoding="utf-8"))))


def test_the_page_names_files() -> None:
    assert len(_named_paths()) > 40


def test_every_file_and_folder_the_page_names_exists() -> None:
    missing = []
    for named in _named_paths():
        # `shared/stores/<table>.py`, `shared/migrations/NNNN_*.sql`: a pattern, not a file.
        pattern = re.sub(r"<[a-z_]+>|NNNN", "*", named).rstrip("/")
        if not list(_ROOT.glob(pattern)):
            missing.append(named)

    assert missing == []
