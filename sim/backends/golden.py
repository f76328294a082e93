"""The golden backend: the NumPy ISA simulator plus the golden cycle model."""

from __future__ import annotations

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.sim.golden.cycle_model import CycleModel
from llmaccel.sim.golden.isa_sim import GoldenMachine

from . import Backend, BackendRun

__all__ = ["GoldenBackend"]


class GoldenBackend(Backend):
    """Executes programs on :class:`GoldenMachine`; cycles are the cycle model's prediction.

    ``check_races`` (default on) proves every program race-free as it runs.
    """

    name = "golden"

    def __init__(self, cfg: AccelConfig, *, check_races: bool = True,
                 max_instructions: int = 2_000_000):
        super().__init__(cfg)
        self.machine = GoldenMachine(cfg, check_races=check_races)
        self.max_instructions = max_instructions

    def load_dram(self, addr: int, data) -> None:
        self.machine.load_dram(addr, data)

    def read_dram(self, addr: int, n: int) -> bytes:
        return self.machine.read_dram(addr, n)

    def run(self, base: int, *, max_cycles: int | None = None) -> BackendRun:
        res = self.machine.run(base, max_instructions=self.max_instructions, trace=True)
        rep = CycleModel(self.cfg).run(res.trace, res.gather_bases)
        st = res.stats
        counters = {
            "instructions": st.instructions, "per_unit": dict(st.per_unit),
            "gemm_macs": st.gemm_macs, "pim_macs": st.pim_macs,
            "dram_read_bytes": st.dram_read_bytes, "dram_write_bytes": st.dram_write_bytes,
            "busy": dict(rep.busy), "dram_commands": dict(rep.dram),
        }
        return BackendRun(res.status, rep.cycles, res.error, res.error_pc, res.message,
                          counters, cycles_source="model")

    def state(self) -> dict[str, np.ndarray]:
        return self.machine.state()
