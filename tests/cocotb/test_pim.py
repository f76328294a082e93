"""cocotb tests of the PIM unit's Verilog (with the channel) under Verilator and Icarus."""

import os
from pathlib import Path

import pytest

from llmaccel.sim.cocotb.dram import PimHarness, cocotb_config
from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.tools import available_simulators

SIMULATORS = available_simulators()


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_pim_verilog(simulator, seed):
    # Same harness and configuration as tests/cocotb/test_dram.py: one build serves both.
    run_cocotb(PimHarness(cocotb_config(), n_ports=2), name="dram_pim_harness",
               test_module="tb_pim", simulator=simulator, test_dir=Path(__file__).parent,
               seed=seed,
               extra_env={"LLMACCEL_PIM_SCALE": "small" if simulator == "icarus" else "full"})


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LLMACCEL_SOAK") != "1",
                    reason="a second Verilator build; runs with make soak (LLMACCEL_SOAK=1)")
def test_pim_benchmark_model_equals_rtl():
    # `llmaccel bench pim` on the tiny preset (its own Verilator build): every figure of the
    # model equals the RTL and the results equal the golden model.
    import argparse

    from llmaccel.sw.bench import pim

    result = pim.run(argparse.Namespace(config="tiny", shapes="proj 64x64,256x64"))
    assert result["model_equals_rtl"] and result["results_equal_golden"]
    assert all(g["mac_cycles"] == g["mac_cycles_model"] for g in result["gemvs"])
    assert "attn.proj 64x64" in pim.report(result)
