"""Every SQL statement Hookline runs, in one named block of one `.sql` file per table.

`shared/sql/deliveries.sql` holds every statement on `deliveries`, each after a
`-- name: <name>` line (and, above it, comments saying why it reads as it does). A block
written `-- fragment: <name>` is not a statement but a piece that others include as
`{{name}}`: a column list, a scope rule. Files are read once, at import.

    from shared.sql import queries
    DELIVERIES = queries("deliveries")
    await conn.fetch(DELIVERIES["list_for_subscription"], ...)

A name that is not in the file raises `KeyError` naming the file, at import of the module
that asks for it (`Queries.require`), not at the first query.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


class Queries(Mapping[str, str]):
    """The statements of one `.sql` file, by name."""

    def __init__(self, file: str, statements: dict[str, str]) -> None:
        self.file = file
        self._statements = statements

    def __getitem__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"no statement {name!r} in shared/sql/{self.file}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)

    def require(self, *names: str) -> Queries:
        """Fail now, at import, when a statement a module needs is missing."""
        for name in names:
            self[name]
        return self


def parse(file: str, text: str) -> Queries:
    """Split `text` into its named statements, with fragments included."""
    blocks: dict[str, tuple[str, str]] = {}
    headers = list(_HEADER.finditer(text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        kind, name = header.group(1), header.group(2)
        if name in blocks:
            raise ValueError(f"shared/sql/{file}: {name!r} is defined twice")
        blocks[name] = (kind, _strip(text[header.end() : end]))
    fragments = {name: body for name, (kind, body) in blocks.items() if kind == "fragment"}
    statements = {
        name: _include(file, body, fragments)
        for name, (kind, body) in blocks.items()
        if kind == "name"
    }
    return Queries(file, statements)


@cache
def queries(table: str) -> Queries:
    """The statements of `shared/sql/<table>.sql`, read once."""
    file = f"{table}.sql"
    text = resources.files(__package__).joinpath(file).read_text(encoding="utf-8")
    return parse(file, text)


def _include(file: str, body: str, fragments: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in fragments:
            raise ValueError(f"shared/sql/{file}: unknown fragment {{{{{name}}}}}")
        return _include(file, fragments[name], fragments)

    return _INCLUDE.sub(replace, body)


def _strip(body: str) -> str:
    """The statement without the comments that trail it (they belong to the next block)."""
    lines = body.strip("\n").splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).strip()
