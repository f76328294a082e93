"""hw/dram_bank.py on the Amaranth simulator: the storage, whole or split into power-of-two
memories (timing state is covered through the channel, tests/hw/test_dram_channel.py)."""

import random

import pytest
from amaranth.sim import Simulator

from llmaccel.hw.config import preset
from llmaccel.hw.dram_bank import DramBank, storage_names, storage_pieces


def test_storage_pieces_are_the_binary_decomposition_largest_first():
    assert storage_pieces(2560) == [(0, 2048), (2048, 512)]
    assert storage_pieces(56) == [(0, 32), (32, 16), (48, 8)]
    assert storage_pieces(4096) == [(0, 4096)]
    assert storage_names(56) == ["mem0", "mem1", "mem2"]
    # Power-of-two banks keep their one memory named as before (backdoors, sw/fpga.py).
    for name in ("default", "tiny", "large"):
        cfg = preset(name)
        assert storage_names(cfg.bank_rows * cfg.cols_per_row) == ["mem"]
    fpga = preset("fpga")
    assert storage_names(fpga.bank_rows * fpga.cols_per_row) == ["mem0", "mem1"]


@pytest.mark.parametrize("bank_rows", [7, 8])
def test_reads_writes_and_hold_across_pieces(bank_rows, seed):
    # 7 rows × 8 columns = 56 entries: three memories of 32, 16 and 8; 8 rows: one memory.
    cfg = preset("tiny").replace(bank_rows=bank_rows, cols_per_row=8)
    depth = bank_rows * cfg.cols_per_row
    rng = random.Random(seed)
    init = [rng.getrandbits(8 * cfg.col_bytes) for _ in range(depth)]
    dut = DramBank(cfg, init)
    model = list(init)
    full = (1 << cfg.col_bytes) - 1

    def word(ctx):
        return int(ctx.get(dut.rd_data).as_bits())

    async def bench(ctx):
        ctx.set(dut.rd_en, 1)
        for a in range(depth):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            assert word(ctx) == model[a], a
        # Byte-masked writes, some to the first and last entry of each piece.
        edges = [e for base, n in storage_pieces(depth) for e in (base, base + n - 1)]
        for a in edges + [rng.randrange(depth) for _ in range(20)]:
            data, mask = rng.getrandbits(8 * cfg.col_bytes), rng.choice([full, rng.randrange(full)])
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, data.to_bytes(cfg.col_bytes, "little"))
            ctx.set(dut.wr_mask, mask)
            await ctx.tick()
            bits = sum(0xFF << 8 * i for i in range(cfg.col_bytes) if mask >> i & 1)
            model[a] = model[a] & ~bits | data & bits
        ctx.set(dut.wr_mask, 0)
        for a in range(depth):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            assert word(ctx) == model[a], a
        # rd_data holds while rd_en is low, whichever piece the address points at meanwhile
        # and even when the held word is overwritten.
        for a in (depth - 1, 0, depth // 2):
            ctx.set(dut.rd_en, 1)
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            held = model[a]
            ctx.set(dut.rd_en, 0)
            for b in (0, depth - 1, a, rng.randrange(depth)):
                ctx.set(dut.rd_addr, b)
                model[a] = rng.getrandbits(8 * cfg.col_bytes)
                ctx.set(dut.wr_addr, a)
                ctx.set(dut.wr_data, model[a].to_bytes(cfg.col_bytes, "little"))
                ctx.set(dut.wr_mask, full)
                await ctx.tick()
                assert word(ctx) == held, (a, b)
            ctx.set(dut.wr_mask, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
