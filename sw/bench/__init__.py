"""Benchmarks: ``llmaccel bench NAME [--json]``.

Each benchmark is a module here (``gemm``, ``pim``, ``pimgemm``, ``dma``, ``model``, ``e2e``,
``simspeed``, ``fpga``)
defining::

    DESCRIPTION: str
    def add_arguments(parser: argparse.ArgumentParser) -> None   # optional
    def run(args: argparse.Namespace) -> dict                      # figures, JSON-serialisable
    def report(result: dict) -> str                                # human-readable table

Benchmarks print measured figures; they never assert on wall-clock time. Results are recorded
in docs/performance.md with the command, the machine and the date.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

__all__ = ["available", "load"]


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if not m.name.startswith("_"))


def load(name: str):
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

    if name not in available():
        raise LlmaccelError(f"unknown benchmark {name!r}; choose one of "
                            f"{', '.join(available()) or '(none yet)'}")
    return importlib.import_module(f"{__name__}.{name}")
