"""Every SQL statement Hookline runs, in one named block of one `.sql` file per table.

`shared/sql/deliveries.sql` holds every statement on `deliveries`, each after a
`-- name: <name>` line (and, above it, comments saying why it reads as it does). A block
written `-- fragment: <name>` is not a statement but a piece that others include as
`{{name}}`: a column list, a scope rule. `{{tenancy.delivery_in_scope scope=$2}}` includes
a fragment of another file (`tenancy.sql`) with its `{scope}` written as `$2`, for a rule
whose parameter number differs between statements. Files are read once, at import.

    from shared.sql import queries
    _DELIVERIES_SQL = queries("deliveries").require("list_for_subscription", ...)
    await conn.fetch(_DELIVERIES_SQL["list_for_subscription"], ...)

A name that is not in the file raises `KeyError` naming the file, at import of the module
that asks for it (`Queries.require`), not at the first query.

A statement that names a table or a database, which a parameter cannot carry, writes it as
`{partition}` or `{database}`; its owner fills it in with `quote_identifier`, the one quoting
of identifiers in Hookline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^--\s*(name|fragment):\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(
    r"\{\{\s*(?:([a-z_][a-z0-9_]*)\.)?([a-z_][a-z0-9_]*)((?:\s+[a-z_]+=\$[0-9]+)*)\s*\}\}"
)
_ARGUMENT = re.compile(r"([a-z_]+)=(\$[0-9]+)")


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
    statements, fragments = _blocks(file, text)
    return Queries(
        file, {name: _include(file, body, fragments) for name, body in statements.items()}
    )


@cache
def queries(table: str) -> Queries:
    """The statements of `shared/sql/<table>.sql`, read once."""
    return parse(f"{table}.sql", _read(table))


def quote_identifier(name: str) -> str:
    """`name` as a Postgres identifier, quoted (a `"` inside doubled): safe for any name."""
    return '"' + name.replace('"', '""') + '"'


def _read(table: str) -> str:
    return resources.files(__package__).joinpath(f"{table}.sql").read_text(encoding="utf-8")


def _blocks(file: str, text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(statements, fragments) of one file, by name, as written."""
    statements: dict[str, str] = {}
    fragments: dict[str, str] = {}
    headers = list(_HEADER.finditer(text))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        kind, name = header.group(1), header.group(2)
        if name in statements or name in fragments:
            raise ValueError(f"shared/sql/{file}: {name!r} is defined twice")
        (fragments if kind == "fragment" else statements)[name] = _strip(text[header.end() : end])
    return statements, fragments


def _include(file: str, body: str, fragments: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        other, name, arguments = match.group(1), match.group(2), match.group(3)
        source = _blocks(f"{other}.sql", _read(other))[1] if other else fragments
        if name not in source:
            where = f"{other}.sql" if other else file
            raise ValueError(f"shared/sql/{file}: unknown fragment {{{{{name}}}}} in {where}")
        piece = source[name]
        for key, value in _ARGUMENT.findall(arguments):
            piece = piece.replace(f"{{{key}}}", value)
        return _include(f"{other}.sql" if other else file, piece, source)

    return _INCLUDE.sub(replace, body)


def _strip(body: str) -> str:
    """The statement without the comments that trail it (they belong to the next block)."""
    lines = body.strip("\n").splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).strip()
