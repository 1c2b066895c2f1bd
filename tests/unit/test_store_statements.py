"""One owner per table: each `.sql` file is run by its table's store alone, which names, at
import, exactly the statements it runs (issue 12).

`queries("x").require(...)` makes a statement missing from its `.sql` file fail at import;
it only does so when the list is complete, and a stale name hides a statement nobody runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
_SQL_FILES = sorted(p.stem for p in (_ROOT / "shared" / "sql").glob("*.sql"))
_OWNER_OF = {name: f"shared/stores/{name}.py" for name in _SQL_FILES}
_OWNER_OF["schema_migrations"] = "shared/db.py"
"""The one module that runs each file's statements: the table's store (the migrator for
its own table)."""


def _loaded_files(path: Path) -> list[str]:
    """The `.sql` files a module asks for with `queries("<file>")`."""
    return [
        node.args[0].value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "queries"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


_LOADERS = {
    str(path.relative_to(_ROOT)): _loaded_files(path)
    for folder in ("services", "shared")
    for path in sorted((_ROOT / folder).rglob("*.py"))
    if path.name != "__init__.py" or path.parent.name != "sql"
}
_OWNERS = sorted(_ROOT / module for module, files in _LOADERS.items() if files)


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

    assert {name: sorted(names) for name, names in required.items()} == {
        name: sorted(used.get(name, set())) for name in required
    }


def test_each_sql_file_is_run_by_its_tables_store_alone() -> None:
    loaded_by: dict[str, list[str]] = {}
    for module, files in _LOADERS.items():
        for file in files:
            loaded_by.setdefault(file, []).append(module)

    assert loaded_by == {name: [_OWNER_OF[name]] for name in _SQL_FILES}


@pytest.mark.parametrize("file", _SQL_FILES)
def test_every_statement_of_a_file_is_run_by_its_owner(file: str) -> None:
    from shared.sql import queries

    required, _ = _required_and_used((_ROOT / _OWNER_OF[file]).read_text(encoding="utf-8"))
    run = set().union(*required.values())

    assert sorted(set(queries(file)) - run) == []
