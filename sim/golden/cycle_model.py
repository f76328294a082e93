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

from collections import deque
from dataclasses import dataclass, field

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode, Space, Unit

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
    timings: list = field(default_factory=list)     # InstrTiming per instruction

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

    def run(self, trace: list[tuple[int, Instruction]], gather_bases: dict | None = None
            ) -> CycleReport:
        """Cycles of a traced run. ``gather_bases`` maps a DMA_GATHER's trace index to the DRAM
        base address its index selected (the golden simulator knows it)."""
        cfg = self.cfg
        gather_bases = gather_bases or {}
        unit_free = dict.fromkeys(UNITS, 0)
        last_end = dict.fromkeys(UNITS, 0)           # end of the latest instruction per unit
        starts = {u: deque() for u in UNITS}        # start cycles, for queue occupancy
        busy = {u.name: 0 for u in UNITS}
        channel_free = 0
        dispatch = 0
        timings = []
        end_all = 0
        for i, (pc, ins) in enumerate(trace):
            unit = ins.unit
            dispatch += 1
            if unit is not None and len(starts[unit]) >= cfg.queue_depth:
                dispatch = max(dispatch, starts[unit][-cfg.queue_depth])
            waits = UNITS if ins.opcode is Opcode.HALT else [u for u in UNITS if u in ins.wait]
            ready = max([dispatch + 1] + [last_end[u] for u in waits])
            if unit is None:
                end = ready + (0 if ins.opcode is Opcode.NOP else 1)
                dispatch = max(dispatch, ready)   # the controller itself waits
                timings.append(InstrTiming(i, pc, ins.opcode, dispatch, ready, end))
                end_all = max(end_all, end)
                continue
            start = max(ready, unit_free[unit])
            if unit in (Unit.LOAD, Unit.STORE) or ins.opcode is Opcode.PIM_MAC:
                start = max(start, channel_free)
            if unit in (Unit.LOAD, Unit.STORE):
                end = self._dma_cycles(ins, start, gather_bases.get(i))
                channel_free = end
            elif unit is Unit.PIM:
                end = self._pim_cycles(ins, start)
                if ins.opcode is Opcode.PIM_MAC:
                    channel_free = end
            elif unit is Unit.GEMM:
                end = start + gemm_cycles(cfg, ins.m, ins.n, ins.k)
            else:
                end = start + vec_cycles(cfg, ins)
            starts[unit].append(start)
            unit_free[unit] = end
            last_end[unit] = end
            busy[unit.name] += end - start
            timings.append(InstrTiming(i, pc, ins.opcode, dispatch, start, end))
            end_all = max(end_all, end)
        return CycleReport(cycles=end_all, busy=busy, dram=dict(self.dram.stats),
                           timings=timings)
