"""Cycle model: how many cycles a program takes on the RTL, predicted from the config alone.

:class:`CycleModel` replays a golden trace (the instructions the golden simulator executed, with
the run-time values timing depends on, such as gather indices) through
:class:`~.system_model.SystemModel`, which composes the exact timing of every part:

* the controller's fetch, checker pipeline and dispatch into per-unit queues, wait masks,
  fences and gather serialisation (sim/golden/system_model.py);
* GEMM: :mod:`.timing_gemm` (SCALE-Sim's output-stationary count with overlap off);
* vector unit: :mod:`.timing_vec`; DMA engines: :mod:`.timing_dma`; PIM: :mod:`.timing_pim`;
* the DRAM channel, command by command, shared by fetch, DMA and PIM: :mod:`.dram_model`.

Each RTL unit has a test that its cycles equal its timing function, and the top-level tests
check that the RTL's cycle and performance counters equal this model's prediction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import ErrorCode, Instruction, Opcode, Unit

from .dram_model import DramModel
from .timing_gemm import gemm_cycles, scalesim_cycles
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
