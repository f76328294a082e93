"""PIM instruction timing: cycles of PIM_WRGB, PIM_MAC and PIM_READ on hw/pim_unit.py.

The PIM unit shares the DRAM channel, so its timing depends on the channel's state (open rows,
timing windows, refresh, requests in flight). It is computed by the same command-level model as
the channel, :class:`~.dram_model.DramModel`, which also holds the PIM front-end; this module is
the instruction-level view of it.

"Cycles of an instruction": from the cycle its ``i_cmd`` transfer happens (valid and ready
high) to the cycle ``o_done`` is high. For one instruction on an idle channel with its rows
closed (docs/dram_pim.md derives these):

* ``PIM_WRGB`` of n scratchpad rows (n = rows spanned by ``SP[sram_addr : sram_addr+len]``):
  ``5 + (n-1)·P`` (grant 2, start, rows every P = max(1, ⌈W·tBURST/32⌉), flush); 3 when
  ``len = 0``.
* ``PIM_READ`` of n accumulator rows: ``4 + (n-1)·Q``, Q = max(1, ⌈4W·tBURST/32⌉); 3 when
  ``nslots = 0``.
* ``PIM_MAC``: bank b opens its row with ACT at a_b (banks in order, tRRD/tFAW apart, PRE
  first when another row is open), streams ``ncols`` columns from a_b + tRCD every tCCD_L, and
  the instruction is done ``MAC_LATENCY + 1`` = 6 cycles after the last bank's last column
  (hw/pim_mac.py's pipeline).
"""

from __future__ import annotations

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode

from .dram_model import DramModel, PimOp, read_row_period, wrgb_row_period

__all__ = ["PimTiming", "pim_cycles", "read_row_period", "walk_rows", "wrgb_row_period"]


def walk_rows(cfg: AccelConfig, ins: Instruction) -> int:
    """SRAM rows a PIM_WRGB or PIM_READ walks (rows its element range touches)."""
    W = cfg.row_width
    n = ins.len if ins.opcode is Opcode.PIM_WRGB else ins.nslots * cfg.dram_banks
    if n == 0:
        return 0
    return (ins.sram_addr + n - 1) // W - ins.sram_addr // W + 1


class PimTiming:
    """PIM instructions one after another on a channel (shared with DMA through ``dram``).

    ``issue(ins, cycle)`` offers ``ins`` on the unit's ``i_cmd`` from ``cycle`` on and returns
    its :class:`~.dram_model.PimOp` with ``accept`` (handshake cycle) and ``done`` (the cycle
    ``o_done`` is high). MACs overlap: the unit accepts the next instruction while the banks
    still work on the previous MAC, so a caller issuing a sequence should offer each
    instruction from ``accept + 1`` of the previous one, not from its ``done``.
    """

    def __init__(self, cfg: AccelConfig, dram: DramModel | None = None):
        self.cfg = cfg
        self.dram = dram if dram is not None else DramModel(cfg)

    def issue(self, ins: Instruction, cycle: int) -> PimOp:
        op = self.dram.pim(cycle, ins)
        self.dram.run(until=lambda: op.accept is not None)
        return op

    def finish(self, op: PimOp) -> int:
        """Simulate until ``op`` is done; return its done cycle."""
        self.dram.run(until=lambda: op.done is not None)
        return op.done

    def run(self, program: list[Instruction], cycle: int = 0) -> list[PimOp]:
        """Issue ``program`` back to back from ``cycle``; simulate to the end."""
        ops = []
        for ins in program:
            op = self.issue(ins, cycle)
            ops.append(op)
            cycle = op.accept + 1
        self.dram.run()
        return ops


def pim_cycles(cfg: AccelConfig, ins: Instruction) -> int:
    """Cycles of one PIM instruction alone on an idle channel (all rows closed, no refresh
    due): ``done - accept`` of an instruction offered at cycle 0."""
    pt = PimTiming(cfg)
    op = pt.issue(ins, 0)
    return pt.finish(op) - op.accept
