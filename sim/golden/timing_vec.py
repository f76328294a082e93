"""Vector unit timing: cycles of one vector instruction.

The RTL vector unit (hw/vector_unit.py) takes exactly :func:`vec_cycles`; tests/hw and
tests/cocotb compare the two over random programs and sweeps.

**Cycles of an instruction** are counted from the cycle *S* in which its ``i_cmd`` handshake
completes (``valid`` and ``ready`` both high) to the cycle *D* in which ``o_done`` is high:
``vec_cycles = D − S``. The unit runs one instruction at a time and is ready again in *D*, so
back-to-back instructions start ``vec_cycles`` apart, which is exactly how the cycle model
chains them (``start = previous end``). Every write of the instruction reaches the SRAM before
*D*. No ``prev`` argument is needed: instructions never overlap, so there is no hazard timing.

With ``W`` the row width, ``L`` the lanes and ``B = W / L`` beats per row:

=====================================  ================================================
instruction                            cycles
=====================================  ================================================
any with ``rows = 0`` (not VLUTLD)     1
VADD VSUB VMUL VMAX VMIN VLUT VMASK    ``rows·B + 6``
VRECIP                                 ``rows·B·31 + 6``  (31 quotient bits per beat)
VISQRT                                 ``rows·B·16 + 6``  (16 root bits per beat)
VREDSUM VREDMAX VARGMAX                ``rows·B + 5``, plus ``log2 W`` when horizontal
VTRANS                                 ``(rows + 1)·W + 3``  (``rows`` W×W blocks)
VLUTLD                                 ``256 / W + 2``
=====================================  ================================================

The ``+ 6`` is the pipeline: issue, operand, compute, select, requantise, write, then
``o_done``; an iterative step (reciprocal, square root) occupies the compute stage for its step
count, and a new beat enters it every step-count cycles. A reduction bypasses the select and
requantise stages (the reducer loads the write register itself, its result saturated), hence
``+ 5``; a horizontal one adds one registered adder or comparator tree level per halving of W.
VTRANS streams a block in while the previous one streams out (one row per cycle each way,
full-row width whatever L is), and VLUTLD writes one accumulator row of table entries per cycle.
The select stage exists for the clock only (docs/vector_unit.md): it costs one cycle per
element-wise, VRECIP and VISQRT instruction.
"""

from __future__ import annotations

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode

__all__ = ["ISQRT_STEPS", "RECIP_STEPS", "RED_LATENCY", "VEC_PIPE_LATENCY", "vec_cycles"]

VEC_PIPE_LATENCY = 6       # issue, operand, compute, select, requantise, write → done
RED_LATENCY = 5            # issue, operand, accumulate, result, write → done
RECIP_STEPS = 31           # restoring division of a 31-bit numerator: one quotient bit per cycle
ISQRT_STEPS = 16           # digit-by-digit square root of a 31-bit value: one root bit per cycle
TRANS_LATENCY = 3          # issue, buffer, write → done
LUTLD_LATENCY = 2          # issue, table write → done

_REDUCTIONS = (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX)


def vec_cycles(cfg: AccelConfig, ins: Instruction) -> int:
    """Cycles of one vector instruction, from its ``i_cmd`` handshake to its ``o_done``."""
    W = cfg.row_width
    beats = W // cfg.vector_lanes
    op = ins.opcode
    if op is Opcode.VLUTLD:
        return 256 // W + LUTLD_LATENCY
    rows = ins.rows
    if rows == 0:
        return 1
    if op is Opcode.VTRANS:
        return (rows + 1) * W + TRANS_LATENCY
    if op in _REDUCTIONS:
        tree = (W - 1).bit_length() if ins.horizontal else 0
        return rows * beats + RED_LATENCY + tree
    steps = RECIP_STEPS if op is Opcode.VRECIP else ISQRT_STEPS if op is Opcode.VISQRT else 1
    return rows * beats * steps + VEC_PIPE_LATENCY
