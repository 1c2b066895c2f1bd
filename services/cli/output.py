"""How the CLI prints answers: `--json` as is, otherwise tables and key/value blocks."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

Column = tuple[str, Callable[[dict[str, Any]], Any]]
_WIDTH_MAX = 60


def text(value: Any) -> str:
    """One cell: lists joined with commas, None as `-`, long text cut."""
    if value is None:
        shown = "-"
    elif isinstance(value, list):
        shown = ",".join(str(v) for v in value) or "-"
    elif isinstance(value, dict):
        shown = json.dumps(value, separators=(",", ":"))
    else:
        shown = str(value)
    return shown if len(shown) <= _WIDTH_MAX else shown[: _WIDTH_MAX - 1] + "…"


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], out: TextIO) -> None:
    """An aligned table with a header line; `(none)` when there are no rows."""
    if not rows:
        print("(none)", file=out)
        return
    cells = [[text(get(row)) for _, get in columns] for row in rows]
    heads = [name for name, _ in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    for line in [heads, *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


def block(item: dict[str, Any], keys: Sequence[str], out: TextIO) -> None:
    """`key: value` lines for one resource, the keys in the order given (absent ones skipped)."""
    present = [k for k in keys if k in item]
    width = max((len(k) for k in present), default=0)
    for key in present:
        value = item[key]
        if isinstance(value, dict):
            shown = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, list):
            shown = ", ".join(str(v) for v in value) or "-"
        else:
            shown = "-" if value is None else str(value)
        print(f"{key.ljust(width)}  {shown}", file=out)


def as_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), file=out)
