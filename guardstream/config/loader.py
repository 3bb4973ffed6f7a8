"""Reading a YAML file into a pydantic model, with errors that name the file and the field.

Every YAML file guardstream reads (the model catalog, the tiers file, tenant files) goes
through here, so they all fail the same way: one line, the file, the field, the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from guardstream.errors import GuardstreamError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path, what: str, unreadable_fix: str = "check the path") -> Any:
    """The parsed contents of a YAML file.

    `what` names the file in the error when it cannot be read (``"the tiers file"``), and
    `unreadable_fix` is the fix printed with it.
    """
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GuardstreamError(
            f"cannot read {what} {path}: {exc.strerror}", unreadable_fix
        ) from exc
    except yaml.YAMLError as exc:
        raise GuardstreamError(f"{path} is not valid YAML: {exc}", "fix the file") from exc


def validation_error(
    path: Path, exc: ValidationError, fix: str, prefix: str = ""
) -> GuardstreamError:
    """One line for the first problem pydantic found: ``FILE: a.b.field: message``.

    `prefix` is put before the field path when the model validated one part of the file
    (``"tenants[3]."``).
    """
    first = exc.errors()[0]
    where = prefix + ".".join(str(p) for p in first["loc"])
    return GuardstreamError(f"{path}: {where}: {first['msg']}", fix)


def validate(model: type[M], raw: Any, path: Path, fix: str, prefix: str = "") -> M:
    """`raw` (read from `path`) as a `model`; a validation error names the file and field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(path, exc, fix, prefix) from exc


def load_model(
    model: type[M], path: Path, what: str, fix: str, unreadable_fix: str = "check the path"
) -> M:
    """Read the YAML file at `path` and validate it as a `model`.

    `what` names the file when it cannot be read, `unreadable_fix` is the fix for that, and
    `fix` the fix printed with a validation error.
    """
    return validate(model, read_yaml(path, what, unreadable_fix), path, fix)
