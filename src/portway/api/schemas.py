"""Shared pydantic building blocks: camelCase JSON, strict unknown-field rejection, pages, names."""

from __future__ import annotations

import re
from typing import Annotated, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SLUG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_SLUG = re.compile(SLUG_PATTERN)


class Model(BaseModel):
    """Base of every request and response body: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", from_attributes=True
    )


class Page(Model, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page"
    )


def _display_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _slug_name(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            "must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
        )
    return value


DisplayName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_display_name)]
"""A human name (API keys, workspaces): 1-100 printable characters."""

SlugName = Annotated[
    str,
    # The pattern is documented, not enforced by pydantic, so a violation gets the friendlier
    # message of `_slug_name`.
    Field(
        min_length=1,
        max_length=100,
        examples=["prod-db"],
        json_schema_extra={"pattern": SLUG_PATTERN},
    ),
    AfterValidator(_slug_name),
]
"""A name used on command lines and in environment variable names (agents, tunnels)."""

Label = Annotated[
    str, Field(max_length=200), AfterValidator(lambda v: _display_name(v) if v else v)
]

Limit = Annotated[int, Field(ge=1, le=200, description="Page size, at most 200")]
