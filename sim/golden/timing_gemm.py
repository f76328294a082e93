"""GEMM timing: cycles of GEMM instructions on the output-stationary systolic array.

The RTL GEMM core (``hw/gemm_core.py``) takes exactly what this module says; the cycle-accuracy
tests (``tests/hw/test_gemm_core.py``, ``tests/cocotb/test_gemm_core.py``) compare measured
cycles with these functions. docs/gemm.md derives every formula.

Terms (R × C array, W = max(R, C), an instruction with ``m``, ``n``, ``k``):

* A **fold** is one R × C block of the output: ``F = ⌈m/R⌉·⌈n/C⌉`` folds (an instruction with
  ``m = 0`` or ``n = 0`` is one empty fold with ``k = 0`` that writes nothing).
* A fold streams ``k`` operand beats (one SP row of A and one of B per beat) into the array and
  ends with an **end-of-fold** (eof) beat, in which every PE hands its finished sum to its result
  register and restarts its accumulator. The eof beat of fold f is also the first operand beat of
  fold f+1 when that fold can start at once; otherwise it is a beat of its own.
* The **period** P is the distance between the eof beats of consecutive folds:
  ``max(k, C)`` with overlap (the C result rows of a fold leave through the result shift chain,
  one per cycle, while the next fold computes) and ``k + R + C − 2`` without (the next fold
  enters only when the previous one's last MAC is done — SCALE-Sim's fold time).

**Cycles of an instruction** (:func:`gemm_cycles`) are counted the way SCALE-Sim counts them:
from the cycle of the first MAC (PE (0,0), k = 0, first fold) to the cycle of the last MAC
(PE (R−1, C−1), k = K−1, last fold), i.e. ``(F−1)·P + k + R + C − 3``. Without overlap this is
exactly ``scalesim_cycles("os", …) = F·(k + R + C − 2) − 1``.

At the unit's ports, for an instruction whose ``i_cmd`` handshake happens in cycle ``h`` while
the array is idle, ``o_done`` is high in cycle ``h + gemm_cycles + gemm_latency`` —
``gemm_latency = C + 3``: one cycle to latch the instruction, one for the SRAM read, and C + 1
to drain the last fold's last result row after its last MAC. When instructions follow each
other, their folds continue back to back; :class:`GemmTimeline` gives exact handshake and done
cycles for any sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmaccel.hw.config import AccelConfig

__all__ = [
    "GemmEvent",
    "GemmTimeline",
    "gemm_cycles",
    "gemm_folds",
    "gemm_gap",
    "gemm_latency",
    "gemm_period",
    "scalesim_cycles",
]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def scalesim_cycles(dataflow: str, R: int, C: int, M: int, N: int, K: int) -> int:
    """SCALE-Sim v2 cycle count for folds run back to back (../shared/REFERENCES.md)."""
    if dataflow == "os":
        return _ceil(M, R) * _ceil(N, C) * (K + R + C - 2) - 1
    if dataflow == "ws":
        return _ceil(K, R) * _ceil(N, C) * (2 * R + C + M - 2) - 1
    if dataflow == "is":
        return _ceil(K, R) * _ceil(M, C) * (2 * R + C + N - 2) - 1
    raise ValueError(f"dataflow must be os, ws or is, not {dataflow!r}")


def _overlap(cfg: AccelConfig, overlap: bool | None) -> bool:
    return cfg.gemm_overlap if overlap is None else bool(overlap)


def gemm_folds(cfg: AccelConfig, m: int, n: int, k: int) -> tuple[int, int]:
    """``(folds, beats per fold)`` the array runs for an instruction (an empty one is 1 × 0)."""
    if m == 0 or n == 0:
        return 1, 0
    return _ceil(m, cfg.array_rows) * _ceil(n, cfg.array_cols), k


def gemm_gap(cfg: AccelConfig, k: int, overlap: bool | None = None) -> int:
    """Cycles between the previous fold's eof beat and the first operand beat of a fold with
    ``k`` beats (0: the first operand beat *is* the previous fold's eof beat)."""
    R, C = cfg.array_rows, cfg.array_cols
    if _overlap(cfg, overlap):
        return max(C - k, 0)
    return R + C - 2


def gemm_period(cfg: AccelConfig, k: int, overlap: bool | None = None) -> int:
    """Distance between the eof beats of two consecutive folds with ``k`` beats each."""
    return gemm_gap(cfg, k, overlap) + k


def gemm_cycles(cfg: AccelConfig, m: int, n: int, k: int, overlap: bool | None = None) -> int:
    """Cycles of one GEMM instruction, first MAC to last MAC (SCALE-Sim's measure).

    Overlap off: exactly ``scalesim_cycles("os", R, C, m, n, k)``. Overlap on:
    ``(F−1)·max(k, C) + k + R + C − 3``. ``overlap`` overrides ``cfg.gemm_overlap`` (the test
    harnesses switch it at run time).
    """
    R, C = cfg.array_rows, cfg.array_cols
    folds, beats = gemm_folds(cfg, m, n, k)
    return (folds - 1) * gemm_period(cfg, beats, overlap) + beats + R + C - 3


def gemm_latency(cfg: AccelConfig) -> int:
    """``o_done`` cycle minus handshake cycle minus :func:`gemm_cycles`, for an instruction that
    finds the array idle: latch (1) + SRAM read (1) + drain after the last MAC (C + 1)."""
    return cfg.array_cols + 3


@dataclass(frozen=True)
class GemmEvent:
    """Port-level timing of one instruction (absolute cycles)."""

    handshake: int   # cycle in which i_cmd.valid and i_cmd.ready are both high
    first_beat: int  # cycle of the first beat it issues to the array (SRAM read or eof)
    last_eof: int    # cycle of its last fold's eof beat
    done: int        # cycle in which o_done is high for it


class GemmTimeline:
    """Exact port timing of a sequence of GEMM instructions on the RTL core.

    ``i_cmd.ready`` is high whenever the core has issued every beat of its current instruction
    except possibly the pending eof beat, so the next instruction is accepted in the cycle of
    its predecessor's last operand beat and its first fold continues without a bubble. Call
    :meth:`issue` in order with the cycle from which each instruction is offered (``valid``
    high); it returns the instruction's :class:`GemmEvent`.
    """

    def __init__(self, cfg: AccelConfig, overlap: bool | None = None):
        self.cfg = cfg
        self.overlap = _overlap(cfg, overlap)
        self.ready_from = 0           # first cycle in which i_cmd.ready is high again
        self.last_eof: int | None = None

    def issue(self, offered: int, m: int, n: int, k: int) -> GemmEvent:
        cfg = self.cfg
        folds, beats = gemm_folds(cfg, m, n, k)
        gap = gemm_gap(cfg, beats, self.overlap)
        h = max(offered, self.ready_from)
        first = h + 1
        if self.last_eof is not None:
            first = max(first, self.last_eof + gap)
        last_eof = first + beats + (folds - 1) * gemm_period(cfg, beats, self.overlap)
        # The last beat of the instruction: its last operand beat, or its last eof beat when
        # its folds have no operand beats.
        self.ready_from = last_eof - 1 if beats else last_eof
        self.last_eof = last_eof
        done = last_eof + cfg.array_rows + 2 * cfg.array_cols - 1
        return GemmEvent(h, first, last_eof, done)
