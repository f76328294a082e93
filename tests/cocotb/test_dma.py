"""Launch tb_dma.py on the generated Verilog of the DMA engines under each available simulator."""

from pathlib import Path

import pytest

from llmaccel.hw.config import preset
from llmaccel.sim.cocotb.dma import DmaPair
from llmaccel.sim.cocotb.runner import run_cocotb
from llmaccel.sim.tools import available_simulators


@pytest.mark.parametrize("simulator", available_simulators())
def test_dma_engines_cocotb_tiny(simulator, seed):
    # Icarus runs ~30x slower than Verilator: smaller programs.
    scale = "1" if simulator == "verilator" else "0.3"
    run_cocotb(DmaPair(preset("tiny")), name="dma_pair_tiny", test_module="tb_dma",
               simulator=simulator, test_dir=Path(__file__).parent,
               extra_env={"LLMACCEL_DMA_CONFIG": "tiny", "LLMACCEL_DMA_SEED": str(seed % 1000),
                          "LLMACCEL_DMA_SCALE": scale})
