"""A property-based run of schemathesis against the live API, from its own `/openapi.json`.

Every operation gets generated requests, valid and invalid; the run fails on any 5xx and on
any response the document does not describe (status, content type, headers, body schema).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.settings import Settings
from tests.support import API_TOKEN
from tests.support.ingest import running_ingest

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
MAX_EXAMPLES = int(os.environ.get("HOOKLINE_SCHEMATHESIS_EXAMPLES", "12"))


async def test_the_api_conforms_to_its_openapi_document(settings: Settings, tmp_path: Path) -> None:
    async with running_ingest(settings) as api:
        st = Path(sys.executable).with_name("schemathesis")
        process = await asyncio.create_subprocess_exec(
            str(st),
            "run",
            f"{api.base}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            "20240611",
            "--workers",
            "1",
            "--no-shrink",
            "--request-timeout",
            "10",
            "--header",
            f"Authorization: Bearer {API_TOKEN}",
            "--report-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await process.communicate()
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
