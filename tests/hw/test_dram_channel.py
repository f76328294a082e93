"""hw/dram_channel.py on the Amaranth simulator: data, timing rules, exact cycles vs DramModel."""

import gc
import random

import pytest
from amaranth.sim import Simulator

from llmaccel.hw.config import AccelConfig, DramTiming, preset
from llmaccel.hw.dram_channel import STARVE_LIMIT, DramChannel, rsp_depth
from llmaccel.sim.cocotb.dram import (
    LINT_WAIVERS,
    ByteModel,
    Req,
    model_requests,
    random_traffic,
    trace_entry,
)
from llmaccel.sim.golden import dram_model
from llmaccel.sim.golden.dram_monitor import TimingViolationError, check_trace
from llmaccel.sim.lint import lint_verilog
from llmaccel.sim.tools import verilog_of

# Small DRAM: 4 banks × 16 rows × 8 columns, tiny timing except where a test needs more.
CFG = preset("tiny").replace(bank_rows=16, cols_per_row=8)
FAST_REF = CFG.replace(timing=DramTiming(tREFI=400, tRFC=40))


def run_channel(cfg, traffic, *, image=None, rsp_stall=0.0, rng=None, extra_cycles=0,
                host_dump=False, starve_limit=STARVE_LIMIT):
    """Drive ``traffic`` (per-port request lists) into a DramChannel; return what happened:
    presented/accepted cycles, responses (cycle, data) per port, the command trace, and (with
    ``host_dump``) the whole DRAM read back through the host port."""
    P = len(traffic)
    dut = DramChannel(cfg, P, image, starve_limit=starve_limit)
    rng = rng or random.Random(0)
    out = {"presented": [[] for _ in range(P)], "accepted": [[] for _ in range(P)],
           "rsp": [[] for _ in range(P)], "trace": [], "dump": None, "cycles": 0}
    n_reads = [sum(not r.write for r in reqs) for reqs in traffic]
    finished = [False] * P * 2

    def driver(p):
        async def bench(ctx):
            port = dut.ports[p].req
            c = 0
            for r in traffic[p]:
                for _ in range(r.gap):
                    await ctx.tick()
                    c += 1
                ctx.set(port.payload, {"addr": r.addr, "write": int(r.write),
                                       "wdata": list(r.wdata), "wmask": r.wmask})
                ctx.set(port.valid, 1)
                out["presented"][p].append(c)
                while True:
                    rdy = ctx.get(port.ready)
                    await ctx.tick()
                    c += 1
                    if rdy:
                        break
                out["accepted"][p].append(c - 1)
                ctx.set(port.valid, 0)
            finished[p] = True
        return bench

    def consumer(p):
        async def bench(ctx):
            rsp = dut.ports[p].rsp
            c = 0
            while len(out["rsp"][p]) < n_reads[p]:
                ready = int(rng.random() >= rsp_stall)
                ctx.set(rsp.ready, ready)
                valid = ctx.get(rsp.valid)
                data = int(ctx.get(rsp.payload).as_bits()) if valid else None
                await ctx.tick()
                c += 1
                if valid and ready:
                    out["rsp"][p].append((c - 1, data.to_bytes(cfg.col_bytes, "little")))
            ctx.set(rsp.ready, 0)
            finished[P + p] = True
        return bench

    async def monitor(ctx):
        c = 0
        while True:
            kind = int(ctx.get(dut.o_cmd.kind).value)
            if kind:
                out["trace"].append(trace_entry(c, kind, ctx.get(dut.o_cmd.bank),
                                                ctx.get(dut.o_cmd.row), ctx.get(dut.o_cmd.col)))
            await ctx.tick()
            c += 1
            out["cycles"] = c

    async def host(ctx):
        while not all(finished):
            await ctx.tick()
        # Long enough for the last accepted request to complete.
        await ctx.tick().repeat(extra_cycles + dram_model.starvation_bound(cfg, P, starve_limit))
        if host_dump:
            n = cfg.dram_bytes // cfg.col_bytes
            words = []
            ctx.set(dut.host.re, 1)
            for a in range(n):
                ctx.set(dut.host.addr, a)
                await ctx.tick()   # the read data of `a` are there after the edge
                words.append(int(ctx.get(dut.host.rdata).as_bits()))
            ctx.set(dut.host.re, 0)
            out["dump"] = b"".join(w.to_bytes(cfg.col_bytes, "little") for w in words)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for p in range(P):
        sim.add_testbench(driver(p))
        sim.add_testbench(consumer(p))
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(host)
    sim.run()
    return out


def check_data(cfg, traffic, out, image=None):
    exp = ByteModel(cfg, image).expected(traffic)
    for p in range(len(traffic)):
        assert [d for _, d in out["rsp"][p]] == exp[p], f"port {p} read data"


def check_exact(cfg, traffic, out, **kw):
    dm = model_requests(cfg, traffic, out["presented"], to_cycle=out["cycles"], **kw)
    model_trace = [c for c in dm.trace if c[0] < out["cycles"] - 1]
    rtl_trace = [c for c in out["trace"] if c[0] < out["cycles"] - 1]
    assert rtl_trace == model_trace, _first_diff(rtl_trace, model_trace)
    for p in range(len(traffic)):
        assert out["accepted"][p] == [r.accept for r in dm.requests[p]], f"port {p} accepts"
        reads = [r.done for r in dm.requests[p] if not r.write]
        assert [c for c, _ in out["rsp"][p]] == reads, f"port {p} response cycles"
    return dm


def check_dump(cfg, traffic, out):
    """Every byte of DRAM, written or not (guard bands around every write), matches the
    model after the traffic (``run_channel(..., host_dump=True)``)."""
    model = ByteModel(cfg)
    for reqs in traffic:
        for r in reqs:
            model.apply(r)
    assert out["dump"] == model.mem.tobytes()


def _first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at {i}: rtl {x} model {y}; rtl {a[max(0, i-3):i+3]} " \
                   f"model {b[max(0, i-3):i+3]}"
    return f"lengths differ: rtl {len(a)} model {len(b)}"


def test_constants_match_model():
    assert STARVE_LIMIT == dram_model.STARVE_LIMIT
    for cfg in (CFG, preset("default"), FAST_REF):
        assert rsp_depth(cfg) == dram_model.rsp_depth(cfg)


def test_single_port_hits_and_misses_exact(seed):
    rng = random.Random(seed)
    traffic = random_traffic(CFG, rng, 1, 40, rows=3, banks=2)
    image = bytes(rng.randrange(256) for _ in range(CFG.dram_bytes))
    out = run_channel(CFG, traffic, image=image)
    check_data(CFG, traffic, out, image)
    check_trace(CFG, out["trace"])
    check_exact(CFG, traffic, out)


def test_three_ports_random_traffic_exact_with_refresh(seed):
    rng = random.Random(seed)
    traffic = random_traffic(FAST_REF, rng, 3, 30, rows=3, gap=3)
    out = run_channel(FAST_REF, traffic, rng=rng, host_dump=True)
    check_data(FAST_REF, traffic, out)
    counts = check_trace(FAST_REF, out["trace"])
    assert counts["REF"] >= 1 and counts["PRE"] > 0
    check_exact(FAST_REF, traffic, out)
    check_dump(FAST_REF, traffic, out)


@pytest.mark.parametrize("tcl", [1, 2, 3], ids=["tCL1", "tCL2", "tCL3"])
def test_shortest_read_latencies_exact(seed, tcl):
    """tCL + tBURST = 2: a column command drives the block RAMs directly; 3 (the ``fpga``
    preset's) and 4: it reaches them a cycle late, from registers, with no stage and with one
    stage between the block RAM and the port's FIFO. Read data, every byte of DRAM and every
    command cycle match the model, with block-RAM timing: back-to-back columns, refresh,
    writes then reads of the same columns."""
    rng = random.Random(seed)
    cfg = CFG.replace(timing=DramTiming(
        tCCD_S=1, tCCD_L=1, tRCD=1, tRP=1, tRAS=1, tRC=2, tRRD_S=1, tRRD_L=1, tFAW=1,
        tREFI=200, tRFC=2, tCL=tcl, tWR=1, tRTP=1, tBURST=1))
    traffic = random_traffic(cfg, rng, 3, 40, rows=2, gap=1, write_frac=0.5)
    out = run_channel(cfg, traffic, rng=rng, host_dump=True)
    check_data(cfg, traffic, out)
    assert check_trace(cfg, out["trace"])["REF"] >= 1
    check_exact(cfg, traffic, out)
    check_dump(cfg, traffic, out)


def test_valid_stalls_and_rsp_backpressure(seed):
    rng = random.Random(seed)
    traffic = random_traffic(CFG, rng, 2, 40, rows=2, banks=2, gap=4, write_frac=0.3)
    out = run_channel(CFG, traffic, rsp_stall=0.6, rng=rng)
    check_data(CFG, traffic, out)
    check_trace(CFG, out["trace"])


def test_row_hit_and_miss_latency_match_model():
    t = CFG.timing
    a = CFG.dram_addr
    reqs = [Req(0, a(1, 3, 0) // 32, False), Req(0, a(1, 3, 1) // 32, False),
            Req(0, a(1, 5, 0) // 32, False)]
    out = run_channel(CFG, [reqs])
    d = dram_model.DramModel(CFG)
    expect = [d.column(c, 1, r, False) for c, r in zip(out["presented"][0], (3, 3, 5),
                                                       strict=True)]
    got = [c for c, _ in out["rsp"][0]]
    assert got == expect
    # closed bank: accept, ACT next cycle, tRCD, RD, tCL + tBURST
    assert got[0] == 1 + t.tRCD + t.tCL + t.tBURST
    # hit: tCCD_L after the first RD
    assert got[1] == got[0] + t.tCCD_L
    # conflict: PRE after tRAS, tRP, ACT (tRC), tRCD
    assert got[2] == 1 + max(t.tRAS + t.tRP, t.tRC) + t.tRCD + t.tCL + t.tBURST


def test_refresh_every_trefi():
    cfg = FAST_REF
    t = cfg.timing
    rng = random.Random(5)
    traffic = random_traffic(cfg, rng, 1, 6, rows=2, gap=300)
    out = run_channel(cfg, traffic, extra_cycles=3 * t.tREFI)
    counts = check_trace(cfg, out["trace"], refresh_slack=t.tRAS + t.tRP + 8,
                         end_cycle=out["cycles"])
    assert counts["REF"] == out["cycles"] // t.tREFI
    check_exact(cfg, traffic, out)


def test_starvation_bound_holds():
    cfg = CFG
    limit = 16
    a = cfg.dram_addr
    # Port 0 streams row hits to bank 0 row 0; port 1 wants row 1 of the same bank.
    hog = [Req(0, a(0, 0, c % 8) // 32, False) for c in range(60)]
    victim = [Req(1, a(0, 1, 1) // 32, False, gap=10)]
    out = run_channel(cfg, [hog, victim], starve_limit=limit)
    check_data(cfg, [hog, victim], out)
    check_trace(cfg, out["trace"])
    dm = check_exact(cfg, [hog, victim], out, starve_limit=limit)
    v = dm.requests[1][0]
    wait = v.issue - (v.accept + 1)
    assert limit <= wait <= dram_model.starvation_bound(cfg, 2, limit)
    # Without the urgency rule port 1 would wait for the whole hog stream.
    assert v.issue < dm.requests[0][-1].issue


def test_monitor_catches_a_violation_in_a_real_trace():
    rng = random.Random(3)
    traffic = random_traffic(CFG, rng, 1, 10, rows=2, banks=1)
    out = run_channel(CFG, traffic)
    trace = out["trace"]
    check_trace(CFG, trace)
    i = next(i for i, c in enumerate(trace) if c[1] == "RD")
    bad = [*trace[:i], (trace[i][0] - 1, *trace[i][1:]), *trace[i + 1:]]
    with pytest.raises(TimingViolationError, match=r"tRCD|tCCD"):
        check_trace(CFG, bad)


# 12 rows per bank, not a power of two: the top of DRAM is 12 · 4 · 8 columns.
ROWS12 = FAST_REF.replace(bank_rows=12)


def test_top_rows_of_a_non_power_of_two_dram_exact(seed):
    rng = random.Random(seed)
    image = bytes(rng.randrange(256) for _ in range(ROWS12.dram_bytes))
    traffic = random_traffic(ROWS12, rng, 2, 30, rows=3, row_base=9, gap=2)
    out = run_channel(ROWS12, traffic, image=image, rng=rng, host_dump=True)
    check_data(ROWS12, traffic, out, image)
    check_trace(ROWS12, out["trace"])
    check_exact(ROWS12, traffic, out)
    assert max(c[3] for c in out["trace"] if c[1] == "ACT") == 11
    model = ByteModel(ROWS12, image)
    for reqs in traffic:
        for r in reqs:
            model.apply(r)
    assert out["dump"] == model.mem.tobytes()


def test_host_backdoor_ignores_columns_above_the_top():
    cfg = ROWS12
    n = cfg.dram_bytes // cfg.col_bytes
    dut = DramChannel(cfg, 1)
    rng = random.Random(1)
    words = {a: rng.getrandbits(8 * cfg.col_bytes) for a in (0, n - 1, n, n + 37)}
    assert n + 37 < 1 << len(dut.host.addr)
    dump = []

    async def host(ctx):
        ctx.set(dut.host.we, 1)
        ctx.set(dut.host.wmask, (1 << cfg.col_bytes) - 1)
        for a, w in words.items():
            ctx.set(dut.host.addr, a)
            ctx.set(dut.host.wdata, w.to_bytes(cfg.col_bytes, "little"))
            await ctx.tick()
        ctx.set(dut.host.we, 0)
        ctx.set(dut.host.re, 1)
        for a in range(n):
            ctx.set(dut.host.addr, a)
            await ctx.tick()
            dump.append(int(ctx.get(dut.host.rdata).as_bits()))
        ctx.set(dut.host.re, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()
    want = [0] * n
    want[0], want[n - 1] = words[0], words[n - 1]
    assert dump == want


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_constructor_checks():
    with pytest.raises(ValueError, match="n_ports must be a positive integer"):
        DramChannel(CFG, 0)
    with pytest.raises(ValueError, match="image must fit"):
        DramChannel(CFG, 1, bytes(CFG.dram_bytes + 1))
    gc.collect()   # the half-built components warn when collected: here, under the filter


def test_verilog_lint_clean():
    lint_verilog(verilog_of(DramChannel(AccelConfig(name="lint", dram_banks=4,
                                                    dram_bank_groups=2, bank_rows=8,
                                                    cols_per_row=4), 2), "dram_channel"),
                 "dram_channel", extra_waivers=LINT_WAIVERS)
