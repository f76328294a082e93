"""Launch the vector unit's cocotb bench (tb_vector_unit.py) on the generated Verilog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.cocotb.vector_unit import VectorUnitHarness, bench_config
from llmaccel.sim.tools import available_simulators

#: Icarus runs ~30x slower than Verilator: a shorter random program there.
RANDOM_INSTRUCTIONS = {"verilator": 250, "icarus": 60}


def _run(simulator: str, lanes: int, seed: int) -> None:
    cfg = bench_config(lanes=lanes)
    run_cocotb(VectorUnitHarness(cfg), name=f"vector_unit_harness_l{lanes}",
               test_module="tb_vector_unit", simulator=simulator,
               test_dir=Path(__file__).parent, seed=seed,
               extra_env={"VU_LANES": str(lanes), "VU_SEED": str(seed),
                          "VU_RANDOM": str(RANDOM_INSTRUCTIONS[simulator])})


@pytest.mark.parametrize("simulator", available_simulators())
def test_vector_unit_cocotb(simulator, seed):
    _run(simulator, 4, seed)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LLMACCEL_SOAK") != "1", reason="soak test: set LLMACCEL_SOAK=1")
def test_vector_unit_cocotb_two_lanes(seed):
    """lanes < W on the Verilog too (a second Verilator build, so only in make soak)."""
    _run("verilator", 2, seed)
