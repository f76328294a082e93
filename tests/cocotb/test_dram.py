"""cocotb tests of the DRAM channel's Verilog under Verilator and Icarus (tb_dram.py)."""

from pathlib import Path

import pytest

from llmaccel.sim.cocotb.dram import PimHarness, cocotb_config
from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.tools import available_simulators

SIMULATORS = available_simulators()


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_dram_channel_verilog(simulator, seed):
    # The PIM tests use the same harness and configuration: one build serves both.
    run_cocotb(PimHarness(cocotb_config(), n_ports=2), name="dram_pim_harness",
               test_module="tb_dram", simulator=simulator, test_dir=Path(__file__).parent,
               seed=seed,
               extra_env={"LLMACCEL_DRAM_SCALE": "small" if simulator == "icarus" else "full"})
