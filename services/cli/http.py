"""The CLI's HTTP client of Hookline's API: bearer token, JSON in and out, problem details.

Blocking (urllib): one request per command, nothing to overlap. Every failure is an
`ApiError` carrying the exit code the command ends with.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 30.0
EXIT_API_ERROR = 1
"""The API refused the request (4xx): fix the request."""
EXIT_USAGE = 2
"""The command line was wrong (argparse uses 2 as well)."""
EXIT_UNAVAILABLE = 3
"""The API could not be reached, or failed (5xx): try again later."""


@dataclass
class ApiError(Exception):
    """A request that did not succeed; `exit_code` is the command's."""

    exit_code: int
    message: str
    status: int | None = None
    problem: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """What to print on stderr: the problem's title and detail, then each invalid field."""
        fields = self.problem.get("errors") or []
        if not fields:
            return [f"error: {self.message}"]
        # The detail repeats the fields; one line each reads better.
        head = f"error: {self.status} {self.problem.get('title', '')}".rstrip() + ":"
        return [head, *(f"  {e.get('field', '?')}: {e.get('message', '')}" for e in fields)]


class ApiClient:
    """Requests against `base_url` (`http://host:port`) with `Authorization: Bearer <token>`."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty one); raises ApiError."""
        url = self.base_url + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(
                EXIT_UNAVAILABLE, f"cannot reach the API at {self.base_url}: {reason}"
            ) from None
        return json.loads(raw) if raw else None


def _http_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        problem = json.loads(raw) if raw else {}
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    title = problem.get("title") or exc.reason
    detail = problem.get("detail") or raw.decode(errors="replace").strip()[:500]
    message = f"{exc.code} {title}" + (f": {detail}" if detail and detail != title else "")
    code = EXIT_UNAVAILABLE if exc.code >= 500 else EXIT_API_ERROR
    return ApiError(code, message, exc.code, problem)
