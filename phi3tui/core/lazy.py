"""Package attributes imported on first use (PEP 562), so a first paint loads only what it shows."""

from __future__ import annotations

from importlib import import_module


def lazy_attributes(package: str, table: dict[str, str], namespace: dict):
    """A module `__getattr__` for `package`: name -> the submodule (of `package`) that defines it.

    The value is stored in `namespace` (the package's globals) on first use, so later lookups do not come here."""

    def __getattr__(name: str):
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
