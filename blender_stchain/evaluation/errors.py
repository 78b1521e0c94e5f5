"""One-line errors of the evaluation command (the CLI prints them; exit code 1)."""

from __future__ import annotations

import importlib

from ..contracts.errors import StchainError


class EvalError(StchainError):
    """A benchmark folder, result or option that cannot be evaluated; the message says what to do."""


def need(module: str, package: str):
    """Import an optional dependency or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EvalError(f"evaluation needs {package}: pip install {package} "
                        f"(or pip install 'blender_stchain[eval]')") from None
