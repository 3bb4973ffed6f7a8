"""The model catalog: a versioned YAML file of models, limits and integer prices."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from guardstream.config.loader import load_model

PositiveInt = Annotated[int, Field(gt=0)]


class ModelSpec(BaseModel):
    """One model: its tokenizer family, limits, and prices in micro-dollars per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    family: str
    context_window: PositiveInt
    max_output_tokens: PositiveInt
    input_micros_per_mtok: Annotated[int, Field(ge=0)]
    output_micros_per_mtok: Annotated[int, Field(ge=0)]
    # Prompt tokens the provider served from its cache; absent: no discount (input price).
    # Reasoning tokens have no price of their own: they are completion tokens.
    cached_input_micros_per_mtok: Annotated[int, Field(ge=0)] | None = None


class Catalog(BaseModel):
    """The whole catalog file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: PositiveInt
    models: dict[str, ModelSpec]

    def get(self, model: str) -> ModelSpec | None:
        """The spec of a model id, or None when the catalog does not list it."""
        return self.models.get(model)


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog file; errors name the file and the field."""
    return load_model(
        Catalog,
        path,
        "the model catalog",
        "fix that entry (prices are integers)",
        unreadable_fix="set GUARDSTREAM_MODEL_CATALOG to a readable YAML file",
    )


@lru_cache(maxsize=4)
def cached_catalog(path: Path) -> Catalog:
    """The catalog at `path`, read once per process."""
    return load_catalog(path)
