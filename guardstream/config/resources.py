"""Where guardstream's data files are: the Avro schemas and the default YAML config.

The repository's root folders `schemas/` and `config/` are the source of truth. A wheel
ships copies of them inside the package, as `guardstream/_data/schemas` and
`guardstream/_data/config` (pyproject.toml, `force-include`); a source checkout (an
editable install) has no such copies and reads the root folders themselves. This module is
the one place that knows both layouts.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # .../guardstream
_PACKAGED = _PACKAGE / "_data"  # what a wheel ships
_CHECKOUT = _PACKAGE.parent  # the source checkout that holds guardstream/


def data_dir(name: str) -> Path:
    """The folder of data files called `name` (``"schemas"`` or ``"config"``).

    The packaged copy when guardstream runs from an installed wheel, else the folder of the
    source checkout. When neither exists the checkout path is returned, so the error that
    follows names the file that was expected.
    """
    packaged = _PACKAGED / name
    if packaged.is_dir():
        return packaged
    return _CHECKOUT / name


def data_file(name: str, filename: str) -> Path:
    """A file in one of the data folders, e.g. ``data_file("config", "models.yaml")``."""
    return data_dir(name) / filename
