"""cocotb testbench of the DMA engines (DmaPair: DmaLoad and DmaStore with every port exposed).

Python plays the DRAM (the behavioural responder's model, with random stalls on ``req.ready``
and ``rsp.valid``) and the SRAMs (read-first, per-lane writes); the driver feeds ``i_cmd`` with
random gaps; the scoreboard compares every memory with GoldenMachine, guard bands included, and
every instruction's cycles with sim/golden/timing_dma.py. Launched by test_dma.py; the
environment names the config (``LLMACCEL_DMA_CONFIG``), the seed and a size scale (Icarus gets
smaller cases).
"""

import itertools
import os
import random

import cocotb
import numpy as np

from llmaccel.hw.config import preset
from llmaccel.hw.isa import Opcode, Space
from llmaccel.sim.cocotb.dma import (
    check_run,
    gather_case,
    golden_run,
    random_images,
    random_transfer,
    run_cocotb_program,
)

CFG = preset(os.environ.get("LLMACCEL_DMA_CONFIG", "tiny"))
SEED = int(os.environ.get("LLMACCEL_DMA_SEED", "1"))
SCALE = float(os.environ.get("LLMACCEL_DMA_SCALE", "1"))


def _count(n: int) -> int:
    return max(2, round(n * SCALE))


@cocotb.test()
@cocotb.parametrize(stalls=[False, True])
async def loads_and_stores_match_golden_and_timing(dut, stalls):
    """Random loads and stores (both spaces, any alignment, strides of both signs, bcast,
    overlaps, bank and row crossings), one at a time; exact cycles when nothing stalls."""
    seed = SEED * 10 + stalls
    cocotb.log.info(f"seed={seed}")
    rng = random.Random(seed)
    images = random_images(CFG, np.random.default_rng(seed))
    program = [random_transfer(CFG, rng, rng.choice([Opcode.DMA_LOAD, Opcode.DMA_STORE]))
               for _ in range(_count(14))]
    expected = golden_run(CFG, images, program)
    latency, interval = (3, 1) if stalls else (6, 2)
    stall = 0.3 if stalls else 0.0
    rec = await run_cocotb_program(dut, CFG, program, images, latency=latency,
                                   interval=interval, req_stall=stall, rsp_stall=stall,
                                   gap=0.3, seed=seed)
    check_run(CFG, program, images, expected, rec,
              timing=None if stalls else {"latency": latency, "interval": interval})


@cocotb.test()
async def gather_table_ends_and_out_of_range(dut):
    """Gathers of the first and last entry of a table ending at the last DRAM byte, then a
    negative index and one past the end: o_error with o_gather_checked, nothing written."""
    seed = SEED * 10 + 2
    cocotb.log.info(f"seed={seed}")
    rng = random.Random(seed)
    images = random_images(CFG, np.random.default_rng(seed))
    program = [gather_case(CFG, images, rng, index=idx, space=space, entries=8, rows=rows)
               for idx, space, rows in ((0, Space.SP, 1), (7, Space.ACC, 2), (-1, Space.SP, 1),
                                        (8, Space.ACC, 1), (7, Space.SP, 1))]
    expected = golden_run(CFG, images, program)
    assert expected.errors == [False, False, True, True, False]
    rec = await run_cocotb_program(dut, CFG, program, images, latency=5, gap=0.2, seed=seed)
    check_run(CFG, program, images, expected, rec, timing={"latency": 5, "interval": 1})
    assert all(c is not None and c <= e for c, e in zip(rec.checked, rec.ends, strict=True))


@cocotb.test()
async def both_engines_back_to_back(dut):
    """Loads (DRAM low half → SP) and stores (ACC → DRAM high half) issued back to back on both
    engines at once: each engine accepts its next instruction in its o_done cycle, and both
    keep their own exact timing."""
    seed = SEED * 10 + 3
    cocotb.log.info(f"seed={seed}")
    rng = random.Random(seed)
    images = random_images(CFG, np.random.default_rng(seed))
    half = CFG.dram_bytes // 2
    program = []
    for _ in range(_count(6)):
        program.append(random_transfer(CFG, rng, Opcode.DMA_LOAD, space=Space.SP,
                                       dram_range=(0, half)))
        program.append(random_transfer(CFG, rng, Opcode.DMA_STORE, space=Space.ACC,
                                       dram_range=(half, CFG.dram_bytes)))
    expected = golden_run(CFG, images, program)
    rec = await run_cocotb_program(dut, CFG, program, images, latency=4, serial=False,
                                   seed=seed)
    check_run(CFG, program, images, expected, rec, timing={"latency": 4, "interval": 1})
    for unit in (Opcode.DMA_LOAD, Opcode.DMA_STORE):
        idx = [i for i, ins in enumerate(program) if ins.opcode is unit]
        assert all(rec.starts[b] == rec.ends[a] for a, b in itertools.pairwise(idx))
