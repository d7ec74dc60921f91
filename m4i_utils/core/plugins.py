"""Name -> ``"module:attribute"`` tables (the attack and model registries), resolved only when used, so
that registering an entry costs one line and imports nothing at start-up."""

from __future__ import annotations

import importlib
from typing import Any


def resolve(table: dict[str, str], name: str, what: str, plural: str) -> Any:
    """The attribute that ``table[name]`` points to (``"package.module:attribute"``).

    Raises:
        ValueError: ``name`` is not in ``table``; the message lists the registered ``plural``.
    """
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; registered {plural}: {sorted(table)}")
    module, attribute = table[name].split(":")
    return getattr(importlib.import_module(module), attribute)
