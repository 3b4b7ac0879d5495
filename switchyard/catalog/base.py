"""The base every catalog model (and every destination's config) is built on."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not silently mean a default) and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
