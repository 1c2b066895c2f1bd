"""Each owner of statements names, at import, exactly the statements it runs (issue 12).

`queries("x").require(...)` makes a statement missing from its `.sql` file fail at import;
it only does so when the list is complete, and a stale name hides a statement nobody runs.
"""

from __future__ import annotations

import ast
from importlib import resources
from pathlib import Path

import pytest

_OWNERS = sorted(
    [
        *(
            Path(str(entry))
            for entry in resources.files("shared.stores").iterdir()
            if entry.name.endswith(".py") and entry.name != "__init__.py"
        ),
        Path(str(resources.files("shared").joinpath("db.py"))),
    ]
)


def _required_and_used(source: str) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(names given to `require`, names subscripted) per module-level statements variable."""
    tree = ast.parse(source)
    required: dict[str, set[str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "require":
            for target in node.targets:
                assert isinstance(target, ast.Name)
                required[target.id] = {ast.literal_eval(arg) for arg in call.args}
        elif isinstance(call.func, ast.Name) and call.func.id == "queries":
            raise AssertionError(f"line {node.lineno}: queries(...) without .require(...)")
    used: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id in required and isinstance(node.slice, ast.Constant):
                used.setdefault(node.value.id, set()).add(node.slice.value)
    return required, used


@pytest.mark.parametrize("path", _OWNERS, ids=lambda p: p.name)
def test_an_owner_requires_exactly_the_statements_it_runs(path: Path) -> None:
    required, used = _required_and_used(path.read_text(encoding="utf-8"))

    assert required, f"{path.name} loads no statements"
    assert {name: sorted(names) for name, names in required.items()} == {
        name: sorted(used.get(name, set())) for name in required
    }
