"""The golden backend: the NumPy ISA simulator plus the golden cycle model."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.system_model import SystemModel

from . import Backend, BackendRun, refresh_aligned

__all__ = ["GoldenBackend"]

#: Cycles the host is assumed to spend between two runs when no START cycle is given.
HOST_GAP = 16


class GoldenBackend(Backend):
    """Executes programs on :class:`GoldenMachine`; cycles are the cycle model's prediction.

    The machine state and the timing state (open DRAM rows, refresh phase) both persist from run
    to run, as in the hardware. The RTL's DRAM refresh runs from reset, so its cycle counts
    depend on when the host writes START; pass ``start_cycles`` (the RTL backend reports each
    run's in ``BackendRun.start_cycle``) to predict an RTL session exactly, otherwise each run is
    assumed to start ``HOST_GAP`` cycles after the previous one ended (with
    :attr:`~llmaccel.sim.backends.Backend.refresh_phase` set, at that phase's next cycle after).

    ``check_races`` (default on) proves every program race-free as it runs.
    """

    name = "golden"

    def __init__(self, cfg: AccelConfig, *, check_races: bool = True,
                 max_instructions: int = 2_000_000, start_cycles: Iterable[int] | None = None):
        super().__init__(cfg)
        self.machine = GoldenMachine(cfg, check_races=check_races)
        self.max_instructions = max_instructions
        self.model = SystemModel(cfg)
        self._starts = iter(start_cycles) if start_cycles is not None else None
        self._now = 0
        self.last_report = None

    def load_dram(self, addr: int, data) -> None:
        self.machine.load_dram(addr, data)

    def read_dram(self, addr: int, n: int) -> bytes:
        return self.machine.read_dram(addr, n)

    def load_acc(self, addr: int, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.int32).ravel()
        if addr < 0 or addr + v.size > self.machine.acc.size:
            raise ValueError(f"{v.size} ACC elements at {addr} do not fit the "
                             f"{self.machine.acc.size}-element accumulator")
        self.machine.acc[addr:addr + v.size] = v

    def run(self, base: int, *, max_cycles: int | None = None) -> BackendRun:
        if self._starts is not None:
            start = next(self._starts)
        elif self.refresh_phase is not None:
            start = refresh_aligned(self.cfg, self._now + HOST_GAP, self.refresh_phase)
        else:
            start = self._now + HOST_GAP
        program = self.machine.dram.copy()       # what the controller fetches from
        res = self.machine.run(base, max_instructions=self.max_instructions, trace=True)
        rep = self.model.run(res, start_cycle=start, base=base, program=program)
        #: The last run's :class:`~llmaccel.sim.golden.system_model.SystemReport` (every
        #: instruction's timing; ``llmaccel profile`` reads it).
        self.last_report = rep
        self._now = rep.end
        st = res.stats
        counters = {
            "instructions": st.instructions, "per_unit": dict(st.per_unit),
            "gemm_macs": st.gemm_macs, "pim_macs": st.pim_macs,
            "dram_read_bytes": st.dram_read_bytes, "dram_write_bytes": st.dram_write_bytes,
            "busy": dict(rep.busy), "raw": dict(rep.counters),
        }
        return BackendRun(res.status, rep.cycles, res.error, res.error_pc, res.message,
                          counters, cycles_source="model", start_cycle=start)

    def state(self) -> dict[str, np.ndarray]:
        return self.machine.state()
