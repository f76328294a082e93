"""cocotb tests of the GEMM core's Verilog under Verilator and Icarus (tb_gemm_core.py)."""

from pathlib import Path

import pytest

from llmaccel.sim.cocotb.gemm import GemmHarness, harness_config, harness_name
from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.tools import available_simulators

SIMULATORS = available_simulators()


def _run(size: int, simulator: str, seed: int, testcase: str | None = None) -> None:
    cfg = harness_config(size)
    scale = "small" if simulator == "icarus" else "full"
    run_cocotb(GemmHarness(cfg), name=harness_name(cfg), test_module="tb_gemm_core",
               simulator=simulator, test_dir=Path(__file__).parent, seed=seed,
               testcase=testcase,
               extra_env={"LLMACCEL_GEMM_SIZE": f"{size}x{size}", "LLMACCEL_GEMM_SCALE": scale})


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("size", [4, 8])
def test_gemm_core_verilog(size, simulator, seed):
    _run(size, simulator, seed)


@pytest.mark.slow  # the 16×16 Verilator build takes minutes on a shared 2-core machine
def test_gemm_core_verilog_16x16(seed):
    _run(16, "verilator", seed)
