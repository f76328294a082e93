"""hw/sram.py: banks of two read ports and one write port behind a crossbar: per-client ports,
1-cycle reads, per-lane writes, fixed-priority arbitration per bank port, same-row write merges,
``o_conflict``, read-during-write, initial contents (Amaranth simulator, tiny preset and small
variants of it)."""

import gc
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from llmaccel.hw.config import preset
from llmaccel.hw.isa import Space
from llmaccel.hw.sram import Sram
from llmaccel.sim.lint import lint_verilog
from llmaccel.sim.tools import verilog_of

CFG = preset("tiny")
W = CFG.row_width
BITS = {Space.SP: 8, Space.ACC: 32}
#: Bank rows that are not a power of two (12 SP rows and 24 ACC rows in banks of 3).
ODD = CFG.replace(sp_bytes=12 * W, acc_elems=24 * W, sp_banks=4, acc_banks=8)
#: One bank per SRAM.
ONE = CFG.replace(sp_banks=1, acc_banks=1)
ALL_LANES = (1 << W) - 1


def pack(space, lanes) -> int:
    b = BITS[space]
    return sum((int(v) & ((1 << b) - 1)) << (b * j) for j, v in enumerate(lanes))


def unpack(space, value) -> list[int]:
    b = BITS[space]
    out = []
    for j in range(W):
        v = (value >> (b * j)) & ((1 << b) - 1)
        out.append(v - (1 << b) if v >> (b - 1) else v)
    return out


def rand_row(rng, space):
    lo, hi = (-128, 127) if space is Space.SP else (-2**31, 2**31 - 1)
    return [rng.randint(lo, hi) for _ in range(W)]


def rand_init(rng, space, cfg=CFG):
    """Random contents for every row of an SRAM, as rows and as the flat ``init`` list."""
    depth = cfg.sp_rows if space is Space.SP else cfg.acc_rows
    rows = [rand_row(rng, space) for _ in range(depth)]
    return rows, [v for row in rows for v in row]


def run(dut, bench):
    """Simulate ``bench``; every read port starts idle (the read signature's ``en`` resets to 1,
    which would make an unused client occupy its bank port)."""
    async def idle_first(ctx):
        for name in dut.read_names:
            ctx.set(dut.read_port(name).en, 0)
        await bench(ctx)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(idle_first)
    sim.run()


async def write(ctx, port, addr, lanes, en):
    ctx.set(port.addr, addr)
    ctx.set(port.data, lanes)
    ctx.set(port.en, en)


def row(ctx, dut, addr) -> list[int]:
    return unpack(dut.space, ctx.get(dut.row_data(addr)))


def got(ctx, port) -> list[int]:
    return [int(v) for v in ctx.get(port.data)]


@pytest.mark.parametrize("space", [Space.SP, Space.ACC])
def test_every_port_reads_and_writes_with_one_cycle_latency(space, seed):
    rng = random.Random(seed)
    dut = Sram(CFG, space, ["a", "b", "c"], ["x", "y"], second_read_port=["b"])
    depth = dut.depth
    model = {}

    async def bench(ctx):
        for wname in ("x", "y"):
            port = dut.write_port(wname)
            for _ in range(6):
                addr, lanes = rng.randrange(depth), rand_row(rng, space)
                en = rng.randrange(1, 1 << W)
                await write(ctx, port, addr, lanes, en)
                await ctx.tick()
                ctx.set(port.en, 0)
                old = model.get(addr, [0] * W)
                model[addr] = [lanes[j] if en >> j & 1 else old[j] for j in range(W)]
        for rname in ("a", "b", "c"):
            port = dut.read_port(rname)
            for addr, want in model.items():
                ctx.set(port.addr, addr)
                ctx.set(port.en, 1)
                await ctx.tick()
                ctx.set(port.en, 0)
                assert got(ctx, port) == want, (rname, addr)
                # The data holds while en is low, whatever the address does.
                ctx.set(port.addr, (addr + dut.bank_rows) % depth)
                await ctx.tick()
                assert got(ctx, port) == want

    run(dut, bench)


@pytest.mark.parametrize(("space", "cfg"), [(Space.SP, CFG), (Space.ACC, CFG), (Space.SP, ODD),
                                            (Space.ACC, ODD), (Space.SP, ONE)],
                         ids=["sp", "acc", "sp-odd", "acc-odd", "sp-one-bank"])
def test_random_traffic_on_different_banks_never_conflicts(space, cfg, seed):
    """Every cycle (but the idle ones) several readers and writers use different bank ports at
    once: every read returns the model's row (read-first), every write lands whole, data holds
    while en is low, and ``o_conflict`` stays low."""
    rng = random.Random(seed)
    readers, writers = ["r0", "r1", "r2", "r3"], ["w0", "w1", "w2"]
    rows, init = rand_init(rng, space, cfg)
    dut = Sram(cfg, space, readers, writers, init=init, second_read_port=["r1", "r3"])
    nb, R = dut.n_banks, dut.bank_rows
    model = [list(r) for r in rows]
    # A few rows per bank (the first and last included), so reads see earlier writes often.
    hot = [[b * R + k for k in sorted({0, 1 % R, R - 1})] for b in range(nb)]
    reads = writes = 0

    async def bench(ctx):
        nonlocal reads, writes
        last = {}           # reader → (bank, data of its last read)
        last_user = {}      # (bank, bank read port) → the reader that used it last
        for cycle in range(300):
            idle = rng.random() < 0.1
            expect = {}
            free = {p: rng.sample(range(nb), nb) for p in (0, 1)}
            wfree = rng.sample(range(nb), nb)
            wrote = {}      # bank → row written this cycle
            for name in writers:
                port = dut.write_port(name)
                if idle or not wfree or rng.random() < 0.3:
                    ctx.set(port.en, 0)
                    continue
                b = wfree.pop()
                addr, lanes, en = rng.choice(hot[b]), rand_row(rng, space), rng.randrange(1, 1 << W)
                await write(ctx, port, addr, lanes, en)
                wrote[b] = (addr, lanes, en)
            for name in readers:
                port, p = dut.read_port(name), dut.read_port_index[name]
                if idle or not free[p] or rng.random() < 0.25:
                    ctx.set(port.en, 0)
                    continue
                b = free[p].pop()
                # Often the row written this cycle: the read returns its old contents.
                addr = wrote[b][0] if b in wrote and rng.random() < 0.5 else rng.choice(hot[b])
                ctx.set(port.addr, addr)
                ctx.set(port.en, 1)
                expect[name] = (b, list(model[addr]))
                last_user[(b, p)] = name
            assert ctx.get(dut.o_conflict) == 0, f"cycle {cycle}"
            await ctx.tick()
            for addr, lanes, en in wrote.values():
                model[addr] = [lanes[j] if en >> j & 1 else model[addr][j] for j in range(W)]
                writes += 1
            for name in readers:
                port, p = dut.read_port(name), dut.read_port_index[name]
                if name in expect:
                    last[name] = expect[name]
                    reads += 1
                elif name not in last or last_user.get((last[name][0], p)) != name:
                    continue   # another reader has used the bank port since: data not held
                assert got(ctx, port) == last[name][1], (cycle, name)
        for name in readers + writers:
            port = dut.read_port(name) if name in readers else dut.write_port(name)
            ctx.set(port.en, 0)
        for addr in range(dut.depth):
            assert row(ctx, dut, addr) == model[addr], addr

    run(dut, bench)
    assert reads > 300 and writes > 200    # the traffic did happen


@pytest.mark.parametrize("order", [("x", "y"), ("y", "x")])
def test_two_readers_on_one_bank_port_first_listed_wins(order, seed):
    rng = random.Random(seed)
    space = Space.ACC
    rows, init = rand_init(rng, space)
    dut = Sram(CFG, space, [*order, "z"], ["w"], init=init)
    addr = {"x": 3, "y": dut.bank_rows - 1}    # both in bank 0, both on read port 0
    hi, _ = order

    async def bench(ctx):
        for name in order:
            ctx.set(dut.read_port(name).addr, addr[name])
            ctx.set(dut.read_port(name).en, 1)
        assert ctx.get(dut.o_conflict) == 1
        await ctx.tick()
        for name in order:
            ctx.set(dut.read_port(name).en, 0)
        assert ctx.get(dut.o_conflict) == 0
        # The winner reads its row; the loser receives the winner's row.
        assert got(ctx, dut.read_port(hi)) == rows[addr[hi]]
        for name in order:
            assert got(ctx, dut.read_port(name)) == rows[addr[hi]], name
        # One at a time, both read correctly.
        for name in order:
            ctx.set(dut.read_port(name).en, 1)
            await ctx.tick()
            ctx.set(dut.read_port(name).en, 0)
            assert got(ctx, dut.read_port(name)) == rows[addr[name]], name

    run(dut, bench)


def test_readers_of_one_bank_on_different_bank_ports_both_read(seed):
    rng = random.Random(seed)
    space = Space.SP
    names = ["gemm_a", "gemm_b", "vec1", "vec2"]
    rows, init = rand_init(rng, space)
    dut = Sram(CFG, space, names, [], init=init, second_read_port=["gemm_b", "vec2"])
    R = dut.bank_rows
    # gemm_a and gemm_b share bank 2, vec1 and vec2 share bank 0.
    addr = {"gemm_a": 2 * R + 5, "gemm_b": 2 * R + 9, "vec1": 0, "vec2": R - 1}

    async def bench(ctx):
        for name, a in addr.items():
            ctx.set(dut.read_port(name).addr, a)
            ctx.set(dut.read_port(name).en, 1)
        assert ctx.get(dut.o_conflict) == 0
        await ctx.tick()
        for name, a in addr.items():
            assert got(ctx, dut.read_port(name)) == rows[a], name

    run(dut, bench)


def test_read_data_holds_and_follows_the_bank_of_the_last_read(seed):
    rng = random.Random(seed)
    space = Space.ACC
    rows, init = rand_init(rng, space)
    dut = Sram(CFG, space, ["a", "b"], [], init=init)
    R = dut.bank_rows
    a, b = dut.rd_a, dut.rd_b

    async def bench(ctx):
        async def read(port, addr):
            ctx.set(port.addr, addr)
            ctx.set(port.en, 1)
            await ctx.tick()
            ctx.set(port.en, 0)

        await read(a, R + 7)                      # bank 1
        assert got(ctx, a) == rows[R + 7]
        # a idles with an address in bank 0 while b reads bank 0 and bank 2 through the same
        # port index: a's data is bank 1's and holds.
        ctx.set(a.addr, 7)
        for addr in (7, 2 * R, R - 1):
            await read(b, addr)
            assert got(ctx, b) == rows[addr]
            assert got(ctx, a) == rows[R + 7]
        await ctx.tick()
        assert got(ctx, a) == rows[R + 7]
        await read(a, 7)                          # bank 0 after bank 1
        assert got(ctx, a) == rows[7]
        await read(a, R + 1)                      # and back to bank 1
        assert got(ctx, a) == rows[R + 1]
        # The limit of holding: a read of a's bank through its port by b replaces a's data.
        await read(b, R + 2)
        assert got(ctx, a) == got(ctx, b) == rows[R + 2]

    run(dut, bench)


@pytest.mark.parametrize("space", [Space.SP, Space.ACC])
def test_two_ports_writing_different_lanes_of_one_row_both_land(space, seed):
    rng = random.Random(seed)
    addr = rng.randrange(CFG.acc_rows)
    old, a, b = (rand_row(rng, space) for _ in range(3))
    dut_init = [0] * (addr * W) + old
    dut = Sram(CFG, space, ["r"], ["x", "y"], init=dut_init)
    mask_x = 0b0101
    mask_y = 0b0010   # lane 3 is written by neither and keeps its old value

    async def bench(ctx):
        await write(ctx, dut.wr_x, addr, a, mask_x)
        await write(ctx, dut.wr_y, addr, b, mask_y)
        assert ctx.get(dut.o_conflict) == 0     # a merge, not a conflict
        await ctx.tick()
        ctx.set(dut.wr_x.en, 0)
        ctx.set(dut.wr_y.en, 0)
        assert row(ctx, dut, addr) == [a[0], b[1], a[2], old[3]]

    run(dut, bench)


@pytest.mark.parametrize("order", [("x", "y", "z"), ("z", "y", "x")])
def test_same_lane_from_two_ports_first_listed_port_wins(order, seed):
    rng = random.Random(seed)
    space = Space.ACC
    dut = Sram(CFG, space, ["r"], list(order))
    addr = rng.randrange(dut.depth)
    vals = {n: rand_row(rng, space) for n in order}
    masks = {"x": 0b0111, "y": 0b1110, "z": 0b1001}   # every lane is contested

    async def bench(ctx):
        for name in order:
            await write(ctx, dut.write_port(name), addr, vals[name], masks[name])
        assert ctx.get(dut.o_conflict) == 0
        await ctx.tick()
        for name in order:
            ctx.set(dut.write_port(name).en, 0)
        want = [next(vals[n][j] for n in order if masks[n] >> j & 1) for j in range(W)]
        assert row(ctx, dut, addr) == want

    run(dut, bench)


@pytest.mark.parametrize("order", [("x", "y"), ("y", "x")])
def test_writes_to_different_rows_of_one_bank_first_listed_wins(order, seed):
    rng = random.Random(seed)
    space = Space.SP
    dut = Sram(CFG, space, ["r"], list(order))
    R = dut.bank_rows
    hi, lo = order
    addr = {"x": R + 5, "y": 2 * R - 1}     # both in bank 1
    vals = {n: rand_row(rng, space) for n in order}

    async def bench(ctx):
        for name in order:
            await write(ctx, dut.write_port(name), addr[name], vals[name], ALL_LANES)
        assert ctx.get(dut.o_conflict) == 1
        await ctx.tick()
        assert row(ctx, dut, addr[hi]) == vals[hi]
        assert row(ctx, dut, addr[lo]) == [0] * W       # lost
        # In different banks both land, without a conflict.
        far = {"x": 5, "y": 3 * R + 2}
        for name in order:
            await write(ctx, dut.write_port(name), far[name], vals[name], ALL_LANES)
        assert ctx.get(dut.o_conflict) == 0
        await ctx.tick()
        for name in order:
            ctx.set(dut.write_port(name).en, 0)
        assert ctx.get(dut.o_conflict) == 0
        for name in order:
            assert row(ctx, dut, far[name]) == vals[name], name

    run(dut, bench)


@pytest.mark.parametrize("space", [Space.SP, Space.ACC])
def test_read_during_write_returns_the_old_row_then_the_new(space, seed):
    rng = random.Random(seed)
    old, new = rand_row(rng, space), rand_row(rng, space)
    addr = 17
    dut = Sram(CFG, space, ["r"], ["w"], init=[0] * (addr * W) + old)

    async def bench(ctx):
        ctx.set(dut.rd_r.addr, addr)
        ctx.set(dut.rd_r.en, 1)
        await write(ctx, dut.wr_w, addr, new, ALL_LANES)
        await ctx.tick()
        ctx.set(dut.wr_w.en, 0)
        assert got(ctx, dut.rd_r) == old     # read-first
        await ctx.tick()
        assert got(ctx, dut.rd_r) == new

    run(dut, bench)


@pytest.mark.parametrize("cfg", [CFG, ODD], ids=["tiny", "odd"])
def test_initial_contents_are_elements_in_row_major_order_over_the_banks(cfg, seed):
    rng = np.random.default_rng(seed)
    R = cfg.acc_bank_rows
    n = (R + 1) * W + 2      # past the first bank boundary, ending mid-row
    init = rng.integers(-2**31, 2**31, n, dtype=np.int64)
    dut = Sram(cfg, Space.ACC, ["r"], [], init=init)

    async def bench(ctx):
        flat = []
        for r in range(R + 3):
            flat += row(ctx, dut, r)
        assert flat == [*init.tolist(), *[0] * (W - 2), *[0] * W]
        assert ctx.get(dut.banks[1][0]) == ctx.get(dut.row_data(R))

    run(dut, bench)
    assert len(dut.banks) == cfg.acc_banks and dut.depth == cfg.acc_rows
    assert all(bank.depth == R for bank in dut.banks)
    with pytest.raises(IndexError):
        dut.row_data(dut.depth)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"space": 1, "read_ports": ["a"], "write_ports": []}, "space must be a Space"),
    ({"space": Space.SP, "read_ports": ["a b"], "write_ports": []}, "identifier"),
    ({"space": Space.SP, "read_ports": ["a"], "write_ports": ["x", "x"]}, "unique"),
    ({"space": Space.SP, "read_ports": [], "write_ports": []}, "at least one port"),
    ({"space": Space.SP, "read_ports": ["a"], "write_ports": [],
      "init": [0] * (CFG.sp_bytes + 1)}, "at most"),
    ({"space": Space.SP, "read_ports": ["a"], "write_ports": ["x"],
      "second_read_port": ["x"]}, "not read ports"),
    ({"space": Space.SP, "read_ports": ["a"], "write_ports": [],
      "second_read_port": ["b"]}, "not read ports"),
])
@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_constructor_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sram(CFG, **kwargs)
    gc.collect()   # the half-built object warns when collected: here, where it is filtered


def test_sram_verilog_is_lint_clean():
    dut = Sram(CFG, Space.ACC, ["load", "store", "ctrl"], ["load", "vec"],
               second_read_port=["ctrl"])
    lint_verilog(verilog_of(dut, "sram_acc"), "sram_acc")
