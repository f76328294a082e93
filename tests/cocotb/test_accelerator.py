"""Launch tb_accelerator.py on the accelerator's Verilog under each available simulator."""

import importlib.util
import sys
from pathlib import Path

import pytest

from llmaccel.hw.accelerator import Accelerator
from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.tools import available_simulators


def _bench():
    spec = importlib.util.spec_from_file_location(
        "llmaccel_tb_accelerator", Path(__file__).with_name("tb_accelerator.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# A cold Verilator build of the whole accelerator takes about four minutes on two cores, beyond
# the default run's budget; Icarus builds it in seconds.
SIMS = [pytest.param(s, marks=pytest.mark.slow) if s == "verilator" else s
        for s in available_simulators()]


@pytest.mark.parametrize("simulator", SIMS)
def test_accelerator_host_interface_cocotb(simulator, seed):
    tb = _bench()
    run_cocotb(Accelerator(tb.CFG, image=tb.image()), name="accelerator_tiny",
               test_module="tb_accelerator", simulator=simulator,
               test_dir=Path(__file__).parent,
               extra_env={"LLMACCEL_ACCEL_SEED": str(seed % 1000)})
