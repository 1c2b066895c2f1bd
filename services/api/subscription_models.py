"""Request and response models of the subscriptions resource (CONTRACT section 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.api.schemas import NOT_NULL, PageQuery
from shared.errors import TargetRefused
from shared.matching import PATTERN_RE
from shared.models import TENANT_ID_PATTERN
from shared.signing import secret_bytes
from shared.targets import check_url_shape

URL_MAX = 2048
DESCRIPTION_MAX = 1024
PATTERNS_MAX = 64

Pattern = Annotated[str, StringConstraints(pattern=PATTERN_RE.pattern)]
Status = Literal["enabled", "disabled"]
DisabledReason = Literal["manual", "gone", "failing"]

_URL_DOC = "http(s) URL without credentials; a non-public target is refused."
_PATTERNS_DOC = "Exact types (`invoice.paid`), prefix wildcards (`invoice.*`) or `*`."
_SECRET_DOC = "`whsec_` + base64 of 24 to 64 bytes; generated when not given."


def _valid_url(url: str) -> str:
    try:
        check_url_shape(url)
    except TargetRefused as exc:
        raise ValueError(str(exc)) from None
    return url


def _valid_secret(secret: str) -> str:
    secret_bytes(secret)
    return secret


def _unique(patterns: list[str]) -> list[str]:
    return list(dict.fromkeys(patterns))


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks",
                    "event_types": ["invoice.*"],
                    "description": "billing",
                }
            ]
        },
    )

    url: str = Field(min_length=1, max_length=URL_MAX, description=_URL_DOC)
    event_types: list[Pattern] = Field(
        min_length=1, max_length=PATTERNS_MAX, description=_PATTERNS_DOC
    )
    description: str = Field("", max_length=DESCRIPTION_MAX)
    tenant_id: str | None = Field(None, pattern=TENANT_ID_PATTERN)
    secret: str | None = Field(
        None, pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", description=_SECRET_DOC
    )

    _url = field_validator("url")(_valid_url)
    _secret = field_validator("secret")(lambda v: v if v is None else _valid_secret(v))
    _patterns = field_validator("event_types")(_unique)


class SubscriptionPatch(BaseModel):
    """Only the fields given change; `tenant_id: null` removes the tenant."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, min_length=1, max_length=URL_MAX, description=_URL_DOC, json_schema_extra=NOT_NULL
    )
    event_types: list[Pattern] | None = Field(
        None,
        min_length=1,
        max_length=PATTERNS_MAX,
        description=_PATTERNS_DOC,
        json_schema_extra=NOT_NULL,
    )
    description: str | None = Field(None, max_length=DESCRIPTION_MAX, json_schema_extra=NOT_NULL)
    tenant_id: str | None = Field(None, pattern=TENANT_ID_PATTERN)
    status: Status | None = Field(
        None,
        description="`enabled` re-enables a disabled subscription; `disabled` pauses it.",
        json_schema_extra=NOT_NULL,
    )

    @field_validator("url", "event_types", "description", "status", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    _url = field_validator("url")(lambda v: v if v is None else _valid_url(v))
    _patterns = field_validator("event_types")(lambda v: v if v is None else _unique(v))


class SecretRotate(BaseModel):
    """Optional body of a rotation: the new secret, else one is generated."""

    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(
        None, pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", description=_SECRET_DOC
    )

    _secret = field_validator("secret")(lambda v: v if v is None else _valid_secret(v))


# A class name here is its published OpenAPI component name and its docstring that
# component's description. The sender's view of a subscription is
# `shared.subscriptions.SubscriptionTarget`.
class Subscription(BaseModel):
    """A subscription as lists show it: without its secret."""

    id: str
    url: str
    event_types: list[str]
    status: Status
    disabled_reason: DisabledReason | None
    description: str
    tenant_id: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still signs."
    )
    created_at: datetime
    updated_at: datetime


class SubscriptionWithSecret(Subscription):
    """A subscription with its current secret (create, rotate, get one)."""

    secret: str


class SubscriptionPage(BaseModel):
    data: list[Subscription]
    next_cursor: str | None


class SubscriptionQuery(PageQuery):
    event_type: str | None = Field(
        None,
        max_length=255,
        description="An event type: subscriptions that would receive it. A pattern "
        "(`invoice.*`, `*`): subscriptions listing exactly that pattern.",
        json_schema_extra=NOT_NULL,
    )
    status: Status | None = Field(None, json_schema_extra=NOT_NULL)
    tenant_id: str | None = Field(None, max_length=128, json_schema_extra=NOT_NULL)
