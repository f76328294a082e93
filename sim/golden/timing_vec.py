"""Vector unit timing: cycles of one vector instruction.

The RTL vector unit (hw/vector_unit.py) must take exactly :func:`vec_cycles`.
"""

from __future__ import annotations

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode

__all__ = ["vec_cycles"]

VEC_PIPE_LATENCY = 4       # read, compute, requantise, write
RECIP_STEPS = 32           # restoring division: one quotient bit per cycle
ISQRT_STEPS = 16           # digit-by-digit square root: one result bit per cycle


def vec_cycles(cfg: AccelConfig, ins: Instruction) -> int:
    """Cycles of one vector instruction."""
    beats = cfg.row_width // cfg.vector_lanes
    op = ins.opcode
    if op is Opcode.VLUTLD:
        return 256 // cfg.vector_lanes + VEC_PIPE_LATENCY
    rows = ins.rows
    if op is Opcode.VTRANS:
        return rows * cfg.row_width * beats * 2 + VEC_PIPE_LATENCY
    per_row = beats
    if op is Opcode.VRECIP:
        per_row = beats * RECIP_STEPS
    elif op is Opcode.VISQRT:
        per_row = beats * ISQRT_STEPS
    extra = cfg.vector_lanes.bit_length() if (op in (Opcode.VREDSUM, Opcode.VREDMAX,
                                                     Opcode.VARGMAX) and ins.horizontal) else 0
    return rows * per_row + VEC_PIPE_LATENCY + extra
