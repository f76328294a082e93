"""Cycle model: how many cycles a program takes, from the config alone.

The model replays a program's instruction stream (decoded by the golden simulator, which also
supplies the runtime values the timing depends on) through a model of the machine's timing:

* the controller dispatches one instruction per cycle into per-unit queues of
  ``config.queue_depth`` entries and stalls when a queue is full;
* each unit runs its instructions in order; an instruction starts when its unit is free and every
  earlier instruction of each unit in its ``wait`` mask has finished;
* GEMM takes :func:`gemm_cycles` (the SCALE-Sim output-stationary formula when
  ``gemm_overlap`` is off);
* DMA and PIM share one DRAM channel, modelled command by command by :class:`DramModel` (open
  rows, tRCD/tRP/tRAS/tRC/tRRD/tFAW/tCCD/tCL/tWR/tRTP, refresh every tREFI for tRFC);
* PIM_MAC streams one column per bank per tCCD_L after the row is open in every bank;
* vector instructions take one beat per row (``row_width / vector_lanes`` cycles per row) plus a
  fixed pipeline latency, and multi-cycle steps for VRECIP/VISQRT.

The per-unit timing functions are the contract with the RTL: each RTL issue updates its function
so the model stays exact (cycle-accuracy tests compare RTL counters with it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import ErrorCode, Instruction, Opcode, Space, Unit

from .dram_model import DramModel
from .timing_gemm import gemm_cycles, scalesim_cycles
from .timing_pim import PimTiming
from .timing_vec import vec_cycles

__all__ = [
    "CycleModel",
    "CycleReport",
    "DramModel",
    "gemm_cycles",
    "scalesim_cycles",
    "vec_cycles",
]

UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)


@dataclass
class InstrTiming:
    index: int
    pc: int
    opcode: Opcode
    dispatch: int
    start: int
    end: int


@dataclass
class CycleReport:
    """Cycles of one program run and where they went."""

    cycles: int
    busy: dict = field(default_factory=dict)        # unit name → busy cycles
    dram: dict = field(default_factory=dict)        # DramModel.stats
    timings: list = field(default_factory=list)     # InstrTiming per unit instruction
    counters: dict = field(default_factory=dict)    # hw/regs.py COUNTERS, as the RTL counts

    def utilisation(self, unit: str) -> float:
        return self.busy.get(unit, 0) / self.cycles if self.cycles else 0.0


class CycleModel:
    """Replays a list of ``(pc, Instruction)`` (a golden trace) through the timing model."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.dram = DramModel(cfg)
        self._pim = PimTiming(cfg, self.dram)

    def _dma_cycles(self, ins: Instruction, start: int, gather_base: int | None) -> int:
        cfg = self.cfg
        size = 4 if ins.space is Space.ACC else 1
        rows, n = ins.rows, ins.len
        if rows == 0 or n == 0:
            return start + 1
        base = ins.dram_addr if gather_base is None else gather_base
        write = ins.opcode is Opcode.DMA_STORE
        t = start
        last_col = None
        beats = 0
        done = start
        row_bytes = size if (ins.bcast and not write) else n * size
        for r in range(rows):
            a0 = base + r * ins.dram_stride
            for col_addr in range(a0 - a0 % cfg.col_bytes, a0 + row_bytes, cfg.col_bytes):
                if col_addr == last_col:
                    continue  # the engine keeps the last column it read
                last_col = col_addr
                bank, drow, _, _ = cfg.dram_map(col_addr)
                done = self.dram.column(t, bank, drow, write)
                t = done - cfg.timing.tBURST if write else t
            s0 = ins.sram_addr + r * ins.sram_stride
            beats += (s0 + n - 1) // cfg.row_width - s0 // cfg.row_width + 1
        return max(done, start + beats) + 1

    def _pim_cycles(self, ins: Instruction, start: int) -> int:
        """End of a PIM instruction offered to the PIM unit at ``start``: the cycle after its
        ``o_done`` (sim/golden/timing_pim.py; the channel state is shared with DMA)."""
        op = self._pim.issue(ins, start)
        return self._pim.finish(op) + 1

    def run(self, trace: list[tuple[int, Instruction]], gather_bases: dict | None = None,
            *, result=None, start_cycle: int = 0, program=None) -> CycleReport:
        """Cycles of a traced run, as the RTL counts them: delegated to
        :class:`~.system_model.SystemModel` (exact for the RTL top level).

        ``gather_bases`` maps a DMA_GATHER's trace index to the DRAM base address its index
        selected (the golden simulator knows it). ``result`` (the golden ``RunResult``) tells
        how the run ended; without it a trace ending in HALT is a complete run and any other
        trace is timed as if the program counter left DRAM after its last instruction.
        ``start_cycle`` is the cycle (after reset) of the START write: the DRAM refresh phase
        depends on it. ``program`` (DRAM bytes at START) only matters for runs that end in an
        error. ``busy`` in the report is the RTL's ``busy_*`` counters (``o_busy`` cycles),
        ``counters`` all of hw/regs.py's counters.
        """
        from .isa_sim import RunResult  # noqa: PLC0415
        from .system_model import SystemModel  # noqa: PLC0415

        if result is None:
            done = bool(trace) and trace[-1][1].opcode is Opcode.HALT
            last = trace[-1][0] + 32 if trace else 0
            result = RunResult(status="done" if done else "error",
                               error=ErrorCode.NONE if done else ErrorCode.PC_RANGE,
                               error_pc=0 if done else last, trace=list(trace),
                               gather_bases=dict(gather_bases or {}))
        elif gather_bases is not None:
            result = dataclasses.replace(result, trace=list(trace),
                                         gather_bases=dict(gather_bases))
        model = SystemModel(self.cfg)
        base = trace[0][0] if trace else None
        rep = model.run(result, start_cycle=start_cycle, base=base, program=program)
        timings = [InstrTiming(ev.index, ev.pc, ev.ins.opcode, ev.dispatch, ev.start, ev.end)
                   for ev in rep.events]
        return CycleReport(cycles=rep.cycles, busy=rep.busy, dram=dict(model.dram.stats),
                           timings=timings, counters=rep.counters)
