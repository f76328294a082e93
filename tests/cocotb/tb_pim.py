"""cocotb bench of the PIM unit + the channel's PIM engines (PimHarness Verilog).

Driver (PimDriver, ReqDriver), monitors (CmdMonitor for the command trace and o_done,
RspMonitor), models (GoldenMachine for results, DramModel for cycles, the timing monitor for the
rules) and scoreboard (the asserts) come from ``llmaccel.sim.cocotb.dram``. The seed is cocotb's
``RANDOM_SEED`` (set and logged by the launcher)."""

import os
import random

import cocotb
import numpy as np

from llmaccel.hw.isa import Opcode
from llmaccel.sim.cocotb.dram import (
    ByteModel,
    CmdMonitor,
    CocotbBench,
    PimDriver,
    ReqDriver,
    RspMonitor,
    cocotb_config,
    gemv_layout,
    golden_pim,
    random_traffic,
)
from llmaccel.sim.golden.dram_model import DramModel
from llmaccel.sim.golden.dram_monitor import check_trace
from llmaccel.sw.asm import instr

N_PORTS = 2
SMALL = os.environ.get("LLMACCEL_PIM_SCALE") == "small"


def _seed(tag: str) -> int:
    seed = (cocotb.RANDOM_SEED * 1000003 + sum(map(ord, tag))) & 0xFFFFFFFF
    cocotb.log.info(f"{tag}: seed {seed}")
    return seed


async def run_program(bench, cfg, program, image, sp, window, *, stall=0.0, traffic=None,
                      rng=None):
    """Load, run, and check one program: results, rules, exact cycles."""
    rng = rng or random.Random(0)
    start, count = window
    before = await bench.read_acc(start, count)      # left by earlier tests: the guard bands
    await bench.load_dram(image)
    await bench.load_sp(sp)
    mon = CmdMonitor(bench)
    cocotb.start_soon(mon.run())
    drv = PimDriver(bench, rng, stall)
    tasks = [cocotb.start_soon(drv.send(program))]
    req, rsp = ReqDriver(bench, 0), RspMonitor(bench, 0, rng)
    if traffic:
        tasks += [cocotb.start_soon(req.send(traffic)),
                  cocotb.start_soon(rsp.run(sum(not r.write for r in traffic)))]
    for t in tasks:
        await t
    while len(mon.done) < len(program):
        await bench.tick()
    await bench.tick(4)
    end = bench.cycle
    gm = golden_pim(cfg, image, sp, program, acc=(start, before))
    np.testing.assert_array_equal(await bench.read_acc(start, count),
                                  gm.acc[start:start + count])
    check_trace(cfg, mon.trace)
    dm = DramModel(cfg, N_PORTS)
    for ins, c in zip(program, drv.presented, strict=True):
        dm.pim(c, ins)
    for r, c in zip(traffic or [], req.presented, strict=True):
        dm.present_addr(0, c, r.addr, r.write)
    dm.run(to_cycle=end)
    assert sorted(c for c in mon.trace if c[0] < end - 1) == \
        sorted(c for c in dm.trace if mon.first <= c[0] < end - 1)
    assert drv.accepted == [op.accept for op in dm.pim_ops]
    assert mon.done == [op.done for op in dm.pim_ops]
    if traffic:
        assert [d for _, d in rsp.got] == ByteModel(cfg, image).expected([traffic])[0]
        assert [c for c, _ in rsp.got] == [r.done for r in dm.requests[0] if not r.write]
    return dm


@cocotb.test()
@cocotb.parametrize(stall=[0.0, 0.5])
async def random_gemvs(dut, stall):
    cfg = cocotb_config()
    seed = _seed(f"gemv-{stall}")
    rng = np.random.default_rng(seed)
    bench = CocotbBench(dut, cfg, N_PORTS)
    await bench.start()
    shapes = [(64, 16), (100, 13)] if SMALL else [(64, 16), (100, 13), (480, 8), (256, 32)]
    image = np.zeros(cfg.dram_bytes, dtype=np.uint8)
    program, sp_parts = [], []
    row, acc, sp_addr = 0, 3, 1
    for K, N in shapes:
        case = gemv_layout(cfg, K, N, rng=rng, row0=row, sp_addr=sp_addr, acc_addr=acc,
                           image=image)
        image = np.frombuffer(case.image, dtype=np.uint8).copy()
        program += case.program
        sp_parts.append((sp_addr, case.x))
        row += case.mac_count if 32 * cfg.cols_per_row < K else -(-case.mac_count // 1)
        acc += -(-N // cfg.dram_banks) * cfg.dram_banks + 5
        sp_addr += K + 7
    sp = np.zeros(sp_addr, dtype=np.int8)
    for a, x in sp_parts:
        sp[a:a + x.size] = x
    await run_program(bench, cfg, program, image.tobytes(), sp, (0, acc + 8), stall=stall,
                      rng=random.Random(seed))


@cocotb.test()
async def pim_with_port_traffic(dut):
    cfg = cocotb_config()
    seed = _seed("mixed")
    rng = np.random.default_rng(seed)
    bench = CocotbBench(dut, cfg, N_PORTS)
    await bench.start()
    case = gemv_layout(cfg, 64, 32, rng=rng, row0=2)
    traffic = random_traffic(cfg, random.Random(seed), 1, 10 if SMALL else 30, rows=2,
                             row_base=8, gap=15)[0]
    await run_program(bench, cfg, case.program * 2, case.image, case.sp, (0, 40),
                      traffic=traffic)


@cocotb.test()
async def int32_wraps_with_long_accumulation(dut):
    # Weights and inputs at −128: each column adds 32·2^14; 8 columns per MAC, accumulated
    # over enough MACs to pass 2^31 and wrap (Icarus: fewer MACs, no wrap, same check).
    cfg = cocotb_config()
    bench = CocotbBench(dut, cfg, N_PORTS)
    await bench.start()
    image = np.full(cfg.dram_bytes, 0x80, dtype=np.uint8).tobytes()
    sp = np.full(256, -128, dtype=np.int8)
    n = 20 if SMALL else 600
    prog = [instr(Opcode.PIM_WRGB, sram_addr=0, gb_addr=0, len=256)]
    prog += [instr(Opcode.PIM_MAC, row=5, col=0, ncols=8, kc=8, gb_chunk=0, slot=7,
                   accumulate=int(i > 0)) for i in range(n)]
    prog.append(instr(Opcode.PIM_READ, slot=7, nslots=1, sram_addr=8))
    await run_program(bench, cfg, prog, image, sp, (4, 12))
    if not SMALL:
        assert n * 8 * 32 * 128 * 128 > 2**31


@cocotb.test()
async def timing_sweep(dut):
    # Every instruction's accept and done cycle equals the model (run_program checks them):
    # MACs over ncols × kc with row hits and misses, WRGB/READ over lengths and alignments.
    cfg = cocotb_config()
    seed = _seed("sweep")
    rng = np.random.default_rng(seed)
    bench = CocotbBench(dut, cfg, N_PORTS)
    await bench.start()
    image = rng.integers(0, 256, size=cfg.dram_bytes, dtype=np.int64).astype(np.uint8)
    sp = rng.integers(-128, 128, size=1024, dtype=np.int64).astype(np.int8)
    # The whole buffer and every slot get defined values first (earlier tests leave theirs).
    prog = [instr(Opcode.PIM_WRGB, sram_addr=0, gb_addr=0, len=512)]
    prog += [instr(Opcode.PIM_MAC, row=0, col=0, ncols=8, kc=1, gb_chunk=s // 8, slot=s)
             for s in range(0, cfg.pim_slots, 8)]
    ncols_set = (1, 3, 8) if SMALL else (1, 2, 3, 5, 8)
    for i, ncols in enumerate(ncols_set):
        for kc in sorted({1, 2, ncols}):
            row = (i * 3 + kc) % 4 if SMALL else (i * 5 + kc) % 7
            prog.append(instr(Opcode.PIM_MAC, row=row, col=8 - ncols, ncols=ncols, kc=kc,
                              gb_chunk=kc % 3, slot=ncols, accumulate=kc & 1))
    for s_addr, n in ((0, 1), (3, 5), (17, 9)) if SMALL else \
            ((0, 1), (3, 5), (17, 9), (6, 12), (1, 16)):
        prog.append(instr(Opcode.PIM_READ, slot=n % 4, nslots=n, sram_addr=s_addr))
        prog.append(instr(Opcode.PIM_WRGB, sram_addr=s_addr * 7, gb_addr=s_addr * 11,
                          len=n * 13))
    await run_program(bench, cfg, prog, image.tobytes(), sp, (0, 80))
