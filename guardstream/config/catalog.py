"""The model catalog: a versioned YAML file of models, limits and integer prices."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardstream.errors import GuardstreamError

PositiveInt = Annotated[int, Field(gt=0)]


class ModelSpec(BaseModel):
    """One model: its tokenizer family, limits, and prices in micro-dollars per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    family: str
    context_window: PositiveInt
    max_output_tokens: PositiveInt
    input_micros_per_mtok: Annotated[int, Field(ge=0)]
    output_micros_per_mtok: Annotated[int, Field(ge=0)]


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
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GuardstreamError(
            f"cannot read the model catalog {path}: {exc.strerror}",
            "set GUARDSTREAM_MODEL_CATALOG to a readable YAML file",
        ) from exc
    except yaml.YAMLError as exc:
        raise GuardstreamError(f"{path} is not valid YAML: {exc}", "fix the file") from exc
    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise GuardstreamError(
            f"{path}: {where}: {first['msg']}", "fix that entry (prices are integers)"
        ) from exc


@lru_cache(maxsize=4)
def cached_catalog(path: Path) -> Catalog:
    """The catalog at `path`, read once per process."""
    return load_catalog(path)
