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

import argparse
import importlib
import pkgutil
from pathlib import Path

__all__ = ["add_refresh_phase_argument", "available", "load", "refresh_phase"]


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                  if not m.name.startswith("_"))


def load(name: str):
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

    if name not in available():
        raise LlmaccelError(f"unknown benchmark {name!r}; choose one of "
                            f"{', '.join(available()) or '(none yet)'}")
    return importlib.import_module(f"{__name__}.{name}")


def add_refresh_phase_argument(parser: argparse.ArgumentParser) -> None:
    """``--refresh-phase``: where in the DRAM refresh interval every run starts."""
    parser.add_argument(
        "--refresh-phase", default="bench", metavar="CYCLES|bench|free",
        help="start every program this many cycles after a DRAM refresh falls due, the host "
             "idling until then, so the figures do not move with how long the host's loads "
             "took; 'bench' (default): tRFC + 64, as bench pimgemm; 'free': start as soon as "
             "the host is ready")


def refresh_phase(args: argparse.Namespace, cfg) -> int | None:
    """The ``--refresh-phase`` of ``args`` for ``cfg`` in cycles (None for 'free')."""
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415
    from llmaccel.sim.backends import bench_refresh_phase  # noqa: PLC0415

    v = str(args.refresh_phase)
    if v == "free":
        return None
    if v == "bench":
        return bench_refresh_phase(cfg)
    try:
        phase = int(v, 0)
    except ValueError:
        raise LlmaccelError(f"--refresh-phase takes a cycle count, 'bench' or 'free', not "
                            f"{v!r}") from None
    if not 0 <= phase < cfg.timing.tREFI:
        raise LlmaccelError(f"--refresh-phase {phase} is outside 0..{cfg.timing.tREFI - 1} "
                            f"(tREFI of config {cfg.name!r})")
    return phase
