"""What every handler may use, held by the aiohttp application under `CONTEXT`."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.ingest.intake import Intake
from services.ingest.publisher import Publisher
from shared.event_types import Catalogue
from shared.secretbox import SecretBox
from shared.settings import Settings
from shared.targets import TargetPolicy


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    pool: asyncpg.Pool
    box: SecretBox
    catalogue: Catalogue
    intake: Intake
    publisher: Publisher
    targets: TargetPolicy


CONTEXT: web.AppKey[ApiContext] = web.AppKey("hookline_api_context", ApiContext)
