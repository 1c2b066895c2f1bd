"""The alerts load in Prometheus, fire when they should (promtool), and each has a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/hookline/hookline/blob/main/docs/runbook.md#"


def alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yaml").read_text())
    return [r for g in rules["groups"] for r in g["rules"]]


TEST_FILES = ("alerts_test.yaml", "alerts_slow_test.yaml")
"""Minute-by-minute cases, and the cases about days (evaluated hourly, to stay fast)."""


def promtool_path() -> str:
    found = shutil.which("promtool")
    assert found, (
        "promtool is missing: `make install` installs it as root (Debian package"
        " `prometheus`); otherwise `sudo apt-get install prometheus`"
    )
    return found


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_path(), *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", "alerts.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    """deploy/prometheus/alerts_test.yaml: the stalled consumer, absent series, target down
    under each way of scraping, and the silent cases beside them."""
    done = promtool("test", "rules", *TEST_FILES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_promtool_case() -> None:
    cases = [
        case
        for name in TEST_FILES
        for case in yaml.safe_load((PROMETHEUS / name).read_text())["tests"]
    ]
    firing = {
        t["alertname"]
        for case in cases
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert {a["alert"] for a in alerts()} <= firing


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: f"{a['alert']}-{a['expr'][:20]}")
def test_each_alert_links_its_runbook_section(alert: dict[str, Any]) -> None:
    url = alert["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_URL)
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.M)}
    assert url.removeprefix(RUNBOOK_URL) in anchors
    assert url.removeprefix(RUNBOOK_URL) == alert["alert"].lower()
