"""sim/golden/cycle_model.py: SCALE-Sim formulas, DRAM command timing, program replay."""

import itertools

import pytest

from llmaccel.hw.config import AccelConfig, preset
from llmaccel.sim.golden.cycle_model import CycleModel, gemm_cycles, scalesim_cycles
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.timing_gemm import gemm_latency
from llmaccel.sw.asm import assemble, to_binary


def test_reference_example_from_references_md():
    # 16×16, M=128 N=384 K=128: OS 30,335, WS 33,407, IS 27,519.
    assert scalesim_cycles("os", 16, 16, 128, 384, 128) == 30335
    assert scalesim_cycles("ws", 16, 16, 128, 384, 128) == 33407
    assert scalesim_cycles("is", 16, 16, 128, 384, 128) == 27519


@pytest.mark.parametrize("size", [4, 8, 16])
def test_gemm_without_overlap_is_scalesim_os_exactly(size):
    cfg = AccelConfig(array_rows=size, array_cols=size, vector_lanes=size, gemm_overlap=False)
    for m, n, k in itertools.product([1, 5, size, 3 * size + 1, 64], [1, size + 2, 64],
                                     [1, 7, 64, 256]):
        folds = -(-m // size) * -(-n // size)
        assert gemm_cycles(cfg, m, n, k) == folds * (k + 2 * size - 2) - 1


def test_overlap_beats_scalesim_on_64_cubed_8x8():
    on, off = preset("default"), preset("default").replace(gemm_overlap=False)
    ideal = 64 ** 3 / 64
    assert ideal / gemm_cycles(off, 64, 64, 64) == pytest.approx(0.82, abs=0.01)
    assert ideal / gemm_cycles(on, 64, 64, 64) > 0.9


# The DRAM channel's timing tests live in tests/golden/test_dram_model.py.


def test_program_replay_respects_waits_and_overlap():
    cfg = preset("tiny")
    m = GoldenMachine(cfg)
    prog = assemble("""
        dma_load dram_addr=0x8000 rows=64 len=4 sram_addr=8192 sram_stride=4 dram_stride=4
        gemm m=16 n=16 k=16 b_addr=1024 c_stride=64
        vadd dst=acc:2048:4 src1=acc:0:4 src2=imm rows=4 wait=gemm
        halt
    """)
    m.load_dram(0, to_binary(prog))
    res = m.run(0, trace=True)
    rep = CycleModel(cfg).run(res.trace)
    t = {x.opcode.name: x for x in rep.timings}
    assert t["GEMM"].start < t["DMA_LOAD"].end          # independent: they overlap
    assert t["VADD"].start >= t["GEMM"].end             # waits for the GEMM
    assert rep.cycles >= max(t["DMA_LOAD"].end, t["VADD"].end)
    # busy is the RTL's busy_gemm counter: o_busy from the cycle after the handshake to o_done.
    assert rep.busy["GEMM"] == gemm_cycles(cfg, 16, 16, 16) + gemm_latency(cfg)
