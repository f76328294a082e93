"""cocotb testbench of the GEMM core on its generated Verilog (through GemmHarness).

Launched by tests/cocotb/test_gemm_core.py. Environment:

* ``LLMACCEL_GEMM_SIZE``: array size ``RxC`` (selects ``harness_config``);
* ``LLMACCEL_GEMM_SCALE``: ``full`` (Verilator) or ``small`` (Icarus, ~30× slower).

Driver (``CmdDriver``), monitor (``PortMonitor``), model (``GoldenMachine`` + ``GemmTimeline``)
and scoreboard (``check_acc`` / ``check_timing``) are shared with the Amaranth tests in
``llmaccel.sim.cocotb.gemm``. The seed is cocotb's ``RANDOM_SEED`` (set by the launcher and
logged).
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from llmaccel.sim.cocotb.gemm import (
    GemmJob,
    harness_config,
    isolated_cycles,
    model_cycles,
    random_gemm,
    random_state,
    run_job,
)
from llmaccel.sim.golden.timing_gemm import gemm_cycles, gemm_latency, scalesim_cycles


def _setup():
    R, C = (int(x) for x in os.environ["LLMACCEL_GEMM_SIZE"].split("x"))
    cfg = harness_config((R, C))
    small = os.environ.get("LLMACCEL_GEMM_SCALE", "full") == "small"
    return cfg, small


async def _reset(dut) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i_cmd__valid.value = 0
    dut.i_overlap.value = 1
    dut.host_sp_wen.value = 0
    dut.host_acc_wen.value = 0
    dut.host_acc_raddr.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _rngs(tag: str):
    seed = (cocotb.RANDOM_SEED * 1000003 + sum(map(ord, tag))) & 0xFFFFFFFF
    cocotb.log.info(f"{tag}: seed {seed}")
    return random.Random(seed), np.random.default_rng(seed)


def _isolating_gaps(cfg, program, overlap):
    """Idle cycles after each handshake so that the next instruction finds the array idle."""
    gaps = [0]
    for ins in program[:-1]:
        gaps.append(gemm_cycles(cfg, ins.m, ins.n, ins.k, overlap=overlap)
                    + gemm_latency(cfg) + 2)
    return gaps


@cocotb.test()
@cocotb.parametrize(overlap=[True, False])
async def random_programs(dut, overlap):
    """Random GEMM sequences (back to back and with random gaps, accumulate chains on the same
    C, shapes that are not multiples of the array): ACC and guard bands equal the golden
    model, handshake and done cycles equal GemmTimeline."""
    cfg, small = _setup()
    await _reset(dut)
    r, rng = _rngs(f"random_programs overlap={overlap}")
    R, C = cfg.array_rows, cfg.array_cols
    for _ in range(2 if small else 6):
        sp, acc = random_state(rng, cfg, extreme=r.random() < 0.25)
        program = []
        for _ in range(r.randrange(1, 4 if small else 6)):
            if program and r.random() < 0.3:
                p = program[-1]
                program.append(random_gemm(r, cfg, p.m, p.n, r.randrange(0, 2 * C + 2),
                                           accumulate=1, c_addr=p.c_addr, c_stride=p.c_stride))
                continue
            mx = 2 if small else 3
            m = r.choice([0, 1, r.randrange(1, mx * R + 1)])
            n = r.choice([1, r.randrange(1, mx * C + 1)])
            k = r.choice([0, 1, C - 1, r.randrange(1, 2 * C + 3)])
            program.append(random_gemm(r, cfg, m, n, k, accumulate=r.randrange(2)))
        gaps = [r.choice([0, 0, 1, 2, 7]) for _ in program]
        await run_job(dut, GemmJob(cfg, sp, acc, program, gaps=gaps, overlap=overlap))


@cocotb.test()
@cocotb.parametrize(overlap=[True, False])
async def cycle_sweep(dut, overlap):
    """Each shape alone on an idle array: done − handshake − latency equals SCALE-Sim's OS
    count without overlap and gemm_cycles with it."""
    cfg, small = _setup()
    await _reset(dut)
    r, rng = _rngs(f"cycle_sweep overlap={overlap}")
    R, C = cfg.array_rows, cfg.array_cols
    if small:
        shapes = [(1, 1, 1), (R, C, C), (R + 1, C + 2, 3), (2 * R, C, 0)]
    else:
        shapes = [(m, n, k) for m in (1, R, 2 * R + 3) for n in (1, C + 2)
                  for k in (0, 1, C - 1, C, 2 * C + 1)]
    sp, acc = random_state(rng, cfg)
    program = [random_gemm(r, cfg, m, n, k, accumulate=r.randrange(2)) for m, n, k in shapes]
    job = GemmJob(cfg, sp, acc, program, gaps=_isolating_gaps(cfg, program, overlap),
                  overlap=overlap)
    res = await run_job(dut, job)
    measured = isolated_cycles(job, res["handshakes"], res["dones"])
    assert None not in measured, "an instruction of the sweep did not find the array idle"
    assert measured == model_cycles(job)
    if not overlap:
        assert measured == [scalesim_cycles("os", R, C, m, n, k) for m, n, k in shapes]
    cocotb.log.info(f"cycles {list(zip(shapes, measured, strict=True))}")


@cocotb.test()
async def wrapping_accumulate(dut):
    """Extreme operands (−128/127) accumulated onto ACC values near INT32_MAX/MIN: the sums
    wrap exactly as the golden model's int32."""
    cfg, small = _setup()
    await _reset(dut)
    r, rng = _rngs("wrapping_accumulate")
    R, C = cfg.array_rows, cfg.array_cols
    sp, acc = random_state(rng, cfg, extreme=True, acc_near_max=True)
    sp[: 4 * cfg.row_width * C] = -128  # a block of −128 only: products of +16384 each
    k = C + 1 if small else 3 * C
    first = random_gemm(r, cfg, R + 1, C + 1, k, accumulate=1)
    program = [first, random_gemm(r, cfg, first.m, first.n, k, accumulate=1,
                                  c_addr=first.c_addr, c_stride=first.c_stride)]
    await run_job(dut, GemmJob(cfg, sp, acc, program, overlap=True))
