"""cocotb testbench of the vector unit on its generated Verilog (VectorUnitHarness: the unit with
its SP and ACC memories). Launched by test_vector_unit.py under Verilator and Icarus.

Driver, monitor, model and scoreboard come from llmaccel.sim.cocotb.vector_unit, the same
stimulus and model the Amaranth-simulator tests use. Environment: VU_LANES (vector lanes of the
bench config), VU_SEED, VU_RANDOM (instructions per random program; smaller under Icarus).
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from llmaccel.sim.cocotb.vector_unit import (
    CocotbCmdDriver,
    CocotbWriteMonitor,
    VecModel,
    VecScoreboard,
    VecStimulus,
    bench_config,
    check_composite,
    cocotb_load,
    edge_cases,
    layernorm_case,
    softmax_case,
)

CFG = bench_config(lanes=int(os.environ.get("VU_LANES", "4")))
SEED = int(os.environ.get("VU_SEED", "1"))
N_RANDOM = int(os.environ.get("VU_RANDOM", "200"))
EDGE_NAMES = [c.name for c in edge_cases(CFG)]
#: The unit's tables survive a reset and the tests run one after another in one simulation, so
#: each test's model starts from the tables the previous test left.
LUT = {"tables": np.zeros((CFG.lut_tables, 256), np.int16)}


async def _start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i_cmd__valid.value = 0
    dut.host_sp_wr__en.value = 0
    dut.host_acc_wr__en.value = 0
    await ClockCycles(dut.clk, 2)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _run(dut, sp, acc, program, expected, *, rng=None, stall=0.0) -> VecScoreboard:
    """Load the memories, drive the program, and let the monitor and scoreboard check every
    instruction (whole memories and cycles) at its o_done."""
    await _start(dut)
    await cocotb_load(dut, CFG, sp, acc)
    sb = VecScoreboard(CFG, sp, acc, expected)
    monitor = CocotbWriteMonitor(dut, CFG, sb)
    cocotb.start_soon(monitor.run())
    await FallingEdge(dut.clk)
    driver = CocotbCmdDriver(dut, rng=rng, stall=stall)
    for ins in program:
        await driver.send(ins)
        assert not monitor.errors, monitor.errors[0]
    limit = monitor.cycle + 2000
    while not sb.finished() and not monitor.errors:
        assert monitor.cycle < limit, "the vector unit did not finish (watchdog)"
        await FallingEdge(dut.clk)
    assert not monitor.errors, monitor.errors[0]
    assert sb.finished()
    assert int(dut.o_busy.value) == 0
    LUT["tables"] = expected[-1].lut
    return sb


@cocotb.test()
@cocotb.parametrize(stall=[0.0, 0.4])
async def random_program(dut, stall):
    """Random legal instructions over a small region (so they depend on each other), back to
    back and with random gaps on i_cmd."""
    rng = random.Random(SEED + int(stall * 10))
    stim = VecStimulus(CFG, rng)
    sp, acc = stim.memories()
    program, expected = stim.program(VecModel(CFG, sp, acc, LUT["tables"]), N_RANDOM)
    sb = await _run(dut, sp, acc, program, expected, rng=rng, stall=stall)
    dut._log.info("%d instructions, %d cycles", len(program), sum(c for _, c, _ in sb.cycles))


@cocotb.test()
@cocotb.parametrize(name=EDGE_NAMES)
async def edge_case(dut, name):
    """The directed corners of every opcode (saturation, shifts 0..63, INT32_MIN², VRECIP of
    ≤ 0, VISQRT of 0 / negative / INT32_MAX, argmax ties, negative mask coefficients, ...)."""
    (case,) = [c for c in edge_cases(CFG, SEED) if c.name == name]
    await _run(dut, case.sp, case.acc, case.program, case.expected(CFG, LUT["tables"]))


@cocotb.test()
@cocotb.parametrize(kind=["layernorm", "layernorm_zero_variance", "softmax", "softmax_equal"])
async def composite(dut, kind):
    """numerics.layernorm_int / softmax_int as the compiler's instruction sequences; the
    memories must hold exactly what the numerics function computes."""
    rng = random.Random(SEED)
    if kind.startswith("layernorm"):
        case = layernorm_case(CFG, rng, 8, constant=kind.endswith("variance"))
    else:
        case = softmax_case(CFG, rng, 8, equal=kind.endswith("equal"))
    expected = case.expected(CFG, LUT["tables"])
    sb = await _run(dut, case.sp, case.acc, case.program, expected)
    check_composite(case, sb.sp, sb.acc, CFG.row_width)
