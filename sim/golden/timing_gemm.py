"""GEMM timing: cycles of one GEMM instruction on the output-stationary systolic array.

The RTL GEMM core (hw/gemm_core.py) must take exactly :func:`gemm_cycles`; the cycle-accuracy
tests compare its measured cycles with this function.
"""

from __future__ import annotations

from llmaccel.hw.config import AccelConfig

__all__ = ["gemm_cycles", "scalesim_cycles"]


def scalesim_cycles(dataflow: str, R: int, C: int, M: int, N: int, K: int) -> int:
    """SCALE-Sim v2 cycle count for folds run back to back (../shared/REFERENCES.md)."""
    ceil = lambda a, b: -(-a // b)  # noqa: E731
    if dataflow == "os":
        return ceil(M, R) * ceil(N, C) * (K + R + C - 2) - 1
    if dataflow == "ws":
        return ceil(K, R) * ceil(N, C) * (2 * R + C + M - 2) - 1
    if dataflow == "is":
        return ceil(K, R) * ceil(M, C) * (2 * R + C + N - 2) - 1
    raise ValueError(f"dataflow must be os, ws or is, not {dataflow!r}")


def gemm_cycles(cfg: AccelConfig, m: int, n: int, k: int) -> int:
    """Cycles of one GEMM instruction on the output-stationary array.

    Overlap off: folds one after another, exactly SCALE-Sim's OS count. Overlap on: each fold
    streams for ``max(k, C)`` cycles (operands of the next fold enter while the previous fold's
    results drain through the array's output shift path, which needs C cycles), and the skew of
    the first and last fold is paid once.
    """
    if m == 0 or n == 0:
        return 1
    R, C = cfg.array_rows, cfg.array_cols
    folds = -(-m // R) * -(-n // C)
    if not cfg.gemm_overlap:
        return scalesim_cycles("os", R, C, m, n, k)
    return folds * max(k, C) + R + C - 2
