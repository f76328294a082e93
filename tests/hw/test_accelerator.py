"""The whole accelerator (hw/accelerator.py) under the Amaranth simulator, `tiny` preset.

Every program runs on the RTL and on GoldenMachine: at the end SP, ACC and the DRAM regions the
program stores to (with guard bands) equal the golden state, and the RTL's ``cycles`` counter and
every other counter equal sim/golden/system_model.py's prediction. The host interface is tested
register by register through the Wishbone bus.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from llmaccel.hw.accelerator import Accelerator
from llmaccel.hw.config import AccelConfig, preset
from llmaccel.hw.isa import ErrorCode, Opcode, Space, Unit
from llmaccel.hw.regs import COUNTERS, ID_VALUE, HostMem, Reg, Status, counter_offset
from llmaccel.hw.wishbone import CTRL_LATENCY
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.system_model import SystemModel
from llmaccel.sw.asm import assemble, to_binary

CFG = preset("tiny")


# -------------------------------------------------------------------------------------------
# Harness.
class Bus:
    """Wishbone classic initiator for an async testbench; counts cycles (cycle 0 = the first
    cycle after reset, as the DRAM channel counts them)."""

    def __init__(self, ctx, bus):
        self.ctx = ctx
        self.bus = bus
        self.cycle = 0

    async def tick(self, n: int = 1):
        for _ in range(n):
            await self.ctx.tick()
            self.cycle += 1

    async def _access(self, addr: int, we: int, value: int = 0, sel: int = 0xF) -> tuple:
        ctx, bus = self.ctx, self.bus
        if ctx.get(bus.ack):
            # The previous access is acknowledged in this cycle: a new one starts in the next.
            await self.tick()
        ctx.set(bus.adr, addr >> 2)
        ctx.set(bus.we, we)
        ctx.set(bus.dat_w, value)
        ctx.set(bus.sel, sel)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)
        start = self.cycle
        while True:
            await self.tick()
            if ctx.get(bus.ack):
                break
        data = ctx.get(bus.dat_r)
        ctx.set(bus.cyc, 0)
        ctx.set(bus.stb, 0)
        ctx.set(bus.we, 0)
        return start, data

    async def write(self, addr: int, value: int, sel: int = 0xF) -> int:
        """Write; returns the cycle in which the write took effect."""
        start, _ = await self._access(addr, 1, value, sel)
        return start

    async def read(self, addr: int) -> int:
        return (await self._access(addr, 0))[1]

    async def read64(self, name: str) -> int:
        lo = await self.read(counter_offset(name))
        hi = await self.read(counter_offset(name) + 4)
        return lo | hi << 32

    async def read_mem(self, mem: HostMem, addr: int, nwords: int) -> list[int]:
        await self.write(Reg.MEM_SEL, mem)
        await self.write(Reg.MEM_ADDR, addr)
        return [await self.read(Reg.MEM_DATA) for _ in range(nwords)]

    async def write_mem(self, mem: HostMem, addr: int, words: list[int]) -> None:
        await self.write(Reg.MEM_SEL, mem)
        await self.write(Reg.MEM_ADDR, addr)
        for w in words:
            await self.write(Reg.MEM_DATA, w)


@dataclass
class RtlRun:
    status: int
    error: ErrorCode
    error_pc: int
    start: int                       # the cycle START took effect
    counters: dict
    sp: np.ndarray
    acc: np.ndarray
    dram: dict = field(default_factory=dict)     # byte address → bytes read back
    starts: dict = field(default_factory=dict)   # unit → i_cmd handshake cycles, in order
    dones: dict = field(default_factory=dict)    # unit → o_done cycles, in order


def _rows(values: np.ndarray, W: int, bits: int) -> list[int]:
    raw = values.astype("<i1" if bits == 8 else "<i4").tobytes()
    step = W * bits // 8
    return [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]


def _unrows(rows: list[int], W: int, bits: int) -> np.ndarray:
    step = W * bits // 8
    raw = b"".join(r.to_bytes(step, "little") for r in rows)
    return np.frombuffer(raw, dtype="<i1" if bits == 8 else "<i4").copy()


def run_rtl(cfg: AccelConfig, image: bytes, *, sp: np.ndarray | None = None,
            acc: np.ndarray | None = None, base: int | list[int] = 0, watchdog: int = 0,
            dram_ranges: list[tuple[int, int]] = (), lead: int = 3,
            max_cycles: int = 400_000) -> RtlRun | list[RtlRun]:
    """Run the program at ``base`` of ``image`` on the RTL (or the programs at a list of bases,
    one after another on the same instance, clearing the counters with each START); SP/ACC
    start as given (loaded into the memories directly), the first START write begins ``lead``
    cycles after reset."""
    dut = Accelerator(cfg, image=image)
    W = cfg.row_width
    bases = base if isinstance(base, list) else [base]
    runs: list[dict] = []
    units = {u: unit for u, unit in ((Unit.LOAD, dut.load), (Unit.STORE, dut.store),
                                     (Unit.GEMM, dut.gemm), (Unit.PIM, dut.pim),
                                     (Unit.VEC, dut.vec)) if unit is not None}
    mon = {"starts": {u: [] for u in units}, "dones": {u: [] for u in units}}

    async def tb(ctx):
        b = Bus(ctx, dut.bus)
        if sp is not None:
            for i, r in enumerate(_rows(sp, W, 8)):
                if r:
                    ctx.set(dut.sp.row_data(i), r)
        if acc is not None:
            for i, r in enumerate(_rows(acc, W, 32)):
                if r:
                    ctx.set(dut.acc.row_data(i), r)
        await b.tick(lead)
        await b.write(Reg.WATCHDOG, watchdog)
        for pb in bases:
            out = {}
            mon["starts"] = {u: [] for u in units}
            mon["dones"] = {u: [] for u in units}
            await b.write(Reg.PROG_BASE, pb)
            out["start"] = await b.write(Reg.CTRL, 3)
            # The controller sees START CTRL_LATENCY cycles after the write (a bus read of
            # STATUS could come no earlier); this peeks at the controller directly.
            await b.tick(CTRL_LATENCY)
            while ctx.get(dut.ctrl.o_status) == Status.RUNNING:
                await b.tick()
                assert b.cycle - out["start"] < max_cycles, "the run did not end"
            out["status"] = ctx.get(dut.ctrl.o_status)
            out["error"] = ErrorCode(ctx.get(dut.ctrl.o_error))
            out["error_pc"] = ctx.get(dut.ctrl.o_error_pc)
            # The counters' increments are registered: the last lands a cycle after STATUS
            # leaves RUNNING, before any bus read of them could follow the read of STATUS.
            await b.tick()
            cnt = ctx.get(dut.ctrl.o_counters)
            out["counters"] = {name: int(cnt[k]) for k, name in enumerate(COUNTERS)}
            out["sp"] = _unrows([ctx.get(dut.sp.row_data(i)) for i in range(cfg.sp_rows)], W, 8)
            out["acc"] = _unrows([ctx.get(dut.acc.row_data(i)) for i in range(cfg.acc_rows)],
                                 W, 32)
            out["starts"], out["dones"] = mon["starts"], mon["dones"]
            dram = {}
            ranges = dram_ranges
            if isinstance(base, list):
                ranges = dram_ranges[len(runs)] if dram_ranges else ()
            for a, n in ranges:
                words = await b.read_mem(HostMem.DRAM, a, -(-n // 4))
                dram[a] = b"".join(w.to_bytes(4, "little") for w in words)[:n]
            out["dram"] = dram
            runs.append(out)

    async def monitor(ctx):
        cycle = 0
        sigs = []
        for unit in units.values():
            sigs += [unit.i_cmd.valid, unit.i_cmd.ready, unit.o_done]
        async for _clk, _rst, *vals in ctx.tick().sample(*sigs):
            for k, u in enumerate(units):
                valid, ready, done = vals[3 * k:3 * k + 3]
                if valid and ready:
                    mon["starts"][u].append(cycle)
                if done:
                    mon["dones"][u].append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.add_process(monitor)
    sim.run()
    res = [RtlRun(**r) for r in runs]
    return res if isinstance(base, list) else res[0]


def store_ranges(cfg: AccelConfig, trace, guard: int = 32) -> list[tuple[int, int]]:
    """DRAM byte ranges the traced stores write, widened by ``guard`` bytes on each side."""
    spans = []
    for _pc, ins in trace:
        if ins.opcode is not Opcode.DMA_STORE or not ins.rows or not ins.len:
            continue
        size = 4 if ins.space is Space.ACC else 1
        ends = [ins.dram_addr, ins.dram_addr + (ins.rows - 1) * ins.dram_stride]
        lo = max(0, min(ends) - guard) & ~3
        hi = min(cfg.dram_bytes, max(ends) + ins.len * size + guard)
        spans.append((lo, hi - lo))
    return spans


def compare(cfg: AccelConfig, g: GoldenMachine, res, rtl: RtlRun, rep, expect: str) -> None:
    """RTL against golden state and statistics, and against the system model's timing."""
    want_status = Status.DONE if expect == "done" else Status.ERROR
    assert (rtl.status, rtl.error, rtl.error_pc) == (want_status, res.error,
                                                     res.error_pc if expect != "done" else 0)
    np.testing.assert_array_equal(rtl.sp, g.sp)
    np.testing.assert_array_equal(rtl.acc, g.acc)
    for a, got in rtl.dram.items():
        np.testing.assert_array_equal(np.frombuffer(got, np.uint8), g.dram[a:a + len(got)],
                                      err_msg=f"DRAM at {a:#x}")
    st = res.stats
    wrap = (1 << cfg.counter_bits) - 1
    assert rtl.counters["gemm_macs"] == st.gemm_macs & wrap
    assert rtl.counters["pim_macs"] == st.pim_macs & wrap
    assert rtl.counters["dram_read_bytes"] == st.dram_read_bytes & wrap
    assert rtl.counters["dram_write_bytes"] == st.dram_write_bytes & wrap
    per_unit = st.per_unit
    if expect == "done":
        for u in rtl.starts:
            assert rtl.counters[f"retired_{u.name.lower()}"] == per_unit[u.name] & wrap
        assert rtl.counters["retired_ctrl"] == per_unit["CTRL"] & wrap
    for u in rtl.starts:
        evs = [ev for ev in rep.events if ev.unit is u]
        assert [ev.start for ev in evs] == rtl.starts[u], (u, "handshakes")
        assert [ev.end for ev in evs] == rtl.dones[u], (u, "o_done")
    assert rep.counters == rtl.counters, _diff(rep.counters, rtl.counters)


def check_program(cfg: AccelConfig, text_or_program, *, data: dict | None = None,
                  sp: np.ndarray | None = None, acc: np.ndarray | None = None,
                  base: int = 0, image_size: int | None = None, expect: str = "done",
                  expect_error: ErrorCode = ErrorCode.NONE) -> tuple:
    """Assemble, run on golden and RTL, compare state, cycles and counters."""
    prog = assemble(text_or_program) if isinstance(text_or_program, str) else text_or_program
    code = b"".join(p if isinstance(p, bytes) else to_binary([p]) for p in prog)
    size = image_size or max([base + len(code)] + [a + len(v) for a, v in (data or {}).items()])
    image = bytearray(size)
    image[base:base + len(code)] = code
    for a, v in (data or {}).items():
        image[a:a + len(v)] = bytes(v)
    image = bytes(image)
    g = GoldenMachine(cfg)
    g.load_dram(0, image)
    if sp is not None:
        g.sp[:] = sp
    if acc is not None:
        g.acc[:] = acc
    res = g.run(base, trace=True)
    assert res.status == expect and res.error is expect_error, (res.status, res.error,
                                                                res.message)
    rtl = run_rtl(cfg, image, sp=sp, acc=acc, base=base, dram_ranges=store_ranges(cfg, res.trace))
    rep = SystemModel(cfg).run(res, start_cycle=rtl.start, base=base, program=image)
    compare(cfg, g, res, rtl, rep, expect)
    return res, rtl, rep


def _diff(model: dict, rtl: dict) -> str:
    return "model vs RTL: " + ", ".join(f"{k}: {model[k]} vs {rtl[k]}" for k in COUNTERS
                                        if model[k] != rtl[k])


def _asm(*lines: str) -> list:
    return assemble("\n".join(lines))


def _bytes(rng: np.random.Generator, n: int) -> bytes:
    return rng.integers(-128, 128, n, dtype=np.int8).tobytes()


# -------------------------------------------------------------------------------------------
def test_dma_and_vector_program(seed):
    rng = np.random.default_rng(seed)
    check_program(CFG, _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=4 sram_addr=0 sram_stride=4 rows=8 len=4",
        "dma_load space=acc dram_addr=0x1100 dram_stride=20 sram_addr=64 sram_stride=4 rows=3 "
        "len=5",
        "vadd dst=sp:128:4 src1=sp:0:4 src2=imm imm=3 rows=8 wait=load",
        "vmul dst=acc:256:4 src1=acc:64:4 src2=vec:acc:64:4 rows=3 shift=2 wait=load",
        "dma_store space=sp dram_addr=0x2003 dram_stride=7 sram_addr=128 sram_stride=4 rows=8 "
        "len=4 wait=vec",
        "dma_store space=acc dram_addr=0x2100 dram_stride=16 sram_addr=256 sram_stride=4 rows=3 "
        "len=4 wait=vec",
        "dma_load space=sp bcast=1 dram_addr=0x1000 dram_stride=1 sram_addr=512 sram_stride=4 "
        "rows=4 len=4 wait=store",
        "halt",
    ), data={0x1000: _bytes(rng, 512)})


def test_gemm_program(seed):
    rng = np.random.default_rng(seed)
    check_program(CFG, _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=0 sram_addr=0 sram_stride=0 rows=1 "
        "len=512",
        "gemm m=8 n=8 k=6 a_addr=0 a_stride=24 b_addr=256 b_stride=24 c_addr=0 c_stride=32 "
        "wait=load",
        "gemm m=5 n=3 k=9 a_addr=64 a_stride=36 b_addr=300 b_stride=0 c_addr=128 c_stride=12",
        "gemm accumulate=1 m=4 n=4 k=3 a_addr=8 a_stride=0 b_addr=40 b_stride=12 c_addr=128 "
        "c_stride=0",
        "gemm m=0 n=4 k=3 a_addr=8 a_stride=0 b_addr=40 b_stride=12 c_addr=512 c_stride=0",
        "dma_store space=acc dram_addr=0x3000 dram_stride=64 sram_addr=0 sram_stride=32 rows=2 "
        "len=32 wait=gemm",
        "dma_store space=acc dram_addr=0x3200 dram_stride=48 sram_addr=128 sram_stride=12 "
        "rows=2 len=12",
        "halt",
    ), data={0x1000: _bytes(rng, 512)})


def test_pim_program(seed):
    rng = np.random.default_rng(seed)
    check_program(CFG, _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=0 sram_addr=0 sram_stride=0 rows=1 "
        "len=96",
        "pim_wrgb sram_addr=0 gb_addr=0 len=64 wait=load",
        "pim_wrgb sram_addr=64 gb_addr=80 len=30",
        "pim_mac row=3 col=0 ncols=4 kc=2 gb_chunk=0 slot=0",
        "pim_mac accumulate=1 row=5 col=2 ncols=6 kc=3 gb_chunk=1 slot=0",
        "pim_mac row=3 col=8 ncols=3 kc=1 gb_chunk=2 slot=4",
        "pim_read slot=0 nslots=7 sram_addr=64",
        "dma_load space=sp dram_addr=0x1100 dram_stride=0 sram_addr=128 sram_stride=0 rows=1 "
        "len=32",
        "dma_store space=acc dram_addr=0x2000 dram_stride=0 sram_addr=64 sram_stride=0 rows=1 "
        "len=28 wait=pim",
        "halt",
    ), data={0x1000: _bytes(rng, 512), 0x3000: _bytes(rng, 0x3000)})


def test_gather_fence_and_waits(seed):
    rng = np.random.default_rng(seed)
    acc = np.zeros(CFG.acc_elems, np.int32)
    acc[40], acc[41] = 3, 7
    check_program(CFG, _asm(
        "dma_gather space=sp dram_addr=0x1000 dram_stride=16 sram_addr=0 sram_stride=8 rows=2 "
        "len=8 idx_addr=40 idx_scale=32",
        "dma_gather space=acc dram_addr=0x1000 dram_stride=0 sram_addr=64 sram_stride=4 rows=3 "
        "len=4 idx_addr=41 idx_scale=4",
        "nop wait=load",
        "vadd dst=sp:32:4 src1=sp:0:4 src2=vec:sp:4:4 rows=4 shift=1 wait=load",
        "vredsum dst=acc:96:4 src1=acc:64:4 rows=3 horizontal=1 wait=load",
        "vmax dst=acc:100:4 src1=acc:64:4 src2=scalar:acc:41:1 rows=3 wait=vec",
        "nop",
        "dma_store space=sp dram_addr=0x2000 dram_stride=8 sram_addr=32 sram_stride=4 rows=4 "
        "len=4 wait=vec",
        "dma_store space=acc dram_addr=0x2100 dram_stride=32 sram_addr=96 sram_stride=4 rows=2 "
        "len=4 wait=vec",
        "dma_load space=sp dram_addr=0x2000 dram_stride=8 sram_addr=200 sram_stride=4 rows=4 "
        "len=4 wait=store",
        "halt",
    ), data={0x1000: _bytes(rng, 512)}, acc=acc)


def test_a_store_completes_on_its_own_writes_behind_a_waiting_write(seed):
    """Two one-write stores back to back, the first a row miss: the second's write waits in
    the channel's skid register while the first's is the store port's head, so the second's
    o_done comes before the first's write has issued. Each store completes only once its own
    writes have issued (two tags pending in the controller), so the load that waits for the
    stores reads what the second wrote, in the model's cycles."""
    rng = np.random.default_rng(seed)
    a = CFG.dram_addr
    sp = np.zeros(CFG.sp_bytes, np.int8)
    sp[:64] = rng.integers(-128, 128, 64)
    check_program(CFG, _asm(
        f"dma_load space=sp dram_addr={a(0, 1, 0)} dram_stride=4 sram_addr=128 sram_stride=4 "
        "rows=1 len=4",
        f"dma_store space=sp dram_addr={a(0, 3, 0)} dram_stride=4 sram_addr=0 sram_stride=4 "
        "rows=1 len=4 wait=load",
        f"dma_store space=sp dram_addr={a(1, 2, 0)} dram_stride=4 sram_addr=32 sram_stride=4 "
        "rows=1 len=4",
        f"dma_load space=sp dram_addr={a(1, 2, 0)} dram_stride=4 sram_addr=64 sram_stride=4 "
        "rows=1 len=4 wait=store",
        "halt",
    ), data={a(0, 1, 0): _bytes(rng, 32), a(1, 2, 0): _bytes(rng, 32)}, sp=sp,
        image_size=CFG.dram_addr(1, 3, 0))


def _illegal(opcode: int) -> bytes:
    return bytes([opcode]) + bytes(31)


@pytest.mark.parametrize("case", ["opcode", "reserved", "sram", "gather_negative",
                                  "late_dram", "late_sram", "late_last", "pc_range", "base"])
def test_errors_mid_program(case, seed):
    rng = np.random.default_rng(seed)
    head = _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=0 sram_addr=0 sram_stride=0 rows=1 "
        "len=64",
        "vadd dst=sp:64:4 src1=sp:0:4 src2=imm imm=5 rows=16 wait=load",
        "dma_store space=sp dram_addr=0x2000 dram_stride=0 sram_addr=64 sram_stride=0 rows=1 "
        "len=64 wait=vec",
    )
    tail = assemble("vadd dst=sp:128:4 src1=sp:0:4 src2=imm imm=1 rows=4\nhalt")
    acc = np.zeros(CFG.acc_elems, np.int32)
    acc[8], acc[9] = -1, 2
    base, size = 0, None
    bad = {
        "opcode": _illegal(0x3F),
        "reserved": (int.from_bytes(assemble("nop")[0].to_bytes(), "little") | 1 << 200
                     ).to_bytes(32, "little"),
        "sram": assemble("vadd dst=sp:16380:4 src1=sp:0:4 src2=imm rows=2")[0],
        "gather_negative": assemble("dma_gather space=sp dram_addr=0x1000 sram_addr=0 rows=1 "
                                    "len=8 idx_addr=8 idx_scale=32")[0],
        "late_dram": assemble("dma_gather space=sp dram_addr=0x1000 sram_addr=16380 rows=1 "
                              "len=8 idx_addr=8 idx_scale=32")[0],
        "late_sram": assemble("dma_gather space=sp dram_addr=0x1000 sram_addr=16380 rows=1 "
                              "len=8 idx_addr=9 idx_scale=32 wait=vec")[0],
        # Waits for every unit, so that the run-time check is the last thing the run does and
        # its cycles (LATE_STOP) decide when the run ends.
        "late_last": assemble("dma_gather space=sp dram_addr=0x1000 sram_addr=16380 rows=1 "
                              "len=8 idx_addr=8 idx_scale=32 wait=load|store|vec")[0],
    }
    if case == "pc_range":
        prog = head
        base = CFG.dram_bytes - 32 * len(head)
        size = CFG.dram_bytes
        want = ErrorCode.PC_RANGE
    elif case == "base":
        prog, base, want = head, 8, ErrorCode.PC_RANGE
    else:
        prog = [*head, bad[case], *tail]
        want = {"opcode": ErrorCode.ILLEGAL_OPCODE, "reserved": ErrorCode.RESERVED_BITS,
                "sram": ErrorCode.SRAM_RANGE, "gather_negative": ErrorCode.DRAM_RANGE,
                "late_dram": ErrorCode.DRAM_RANGE, "late_sram": ErrorCode.SRAM_RANGE,
                "late_last": ErrorCode.DRAM_RANGE}[case]
    check_program(CFG, prog, data={0x1000: _bytes(rng, 256)}, acc=acc, base=base,
                  image_size=size, expect="error", expect_error=want)


# No GEMM core (the fpga preset's choice): GEMM is an illegal opcode at execute.
NO_GEMM = CFG.replace(name="tiny-nogemm", gemm_core=False)


def test_without_a_gemm_core_gemm_is_illegal_and_the_rest_runs(seed):
    """A config without the GEMM core builds no array and no GEMM SRAM ports; its DMA,
    vector and PIM programs run as the golden model says, and a GEMM (even an empty one, or
    one with reserved bits set, which decode rejects first) stops the run at its PC."""
    rng = np.random.default_rng(seed)
    dut = Accelerator(NO_GEMM)
    assert dut.gemm is None
    assert not {"rd_gemm_a", "rd_gemm_b"} & set(dut.sp.signature.members)
    assert not {"rd_gemm", "wr_gemm"} & set(dut.acc.signature.members)
    Fragment.get(dut, None)         # it elaborates without the core
    data = {0x1000: _bytes(rng, 512), 0x3000: _bytes(rng, 0x3000)}
    head = _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=0 sram_addr=0 sram_stride=0 rows=1 "
        "len=96",
        "pim_wrgb sram_addr=0 gb_addr=0 len=64 wait=load",
        "pim_mac row=3 col=0 ncols=4 kc=2 gb_chunk=0 slot=0",
        "vadd dst=sp:128:4 src1=sp:0:4 src2=imm imm=3 rows=8 wait=load",
        "pim_read slot=0 nslots=4 sram_addr=64 wait=pim",
        "dma_store space=acc dram_addr=0x2000 dram_stride=0 sram_addr=64 sram_stride=0 rows=1 "
        "len=16 wait=pim|vec",
    )
    check_program(NO_GEMM, [*head, *_asm("halt")], data=data)
    for gemm in ("gemm m=0 n=4 k=3 a_addr=8 a_stride=0 b_addr=40 b_stride=12 c_addr=512 "
                 "c_stride=0",
                 "gemm m=4 n=4 k=2 a_addr=0 a_stride=8 b_addr=32 b_stride=8 c_addr=0 "
                 "c_stride=16"):
        check_program(NO_GEMM, [*head, *_asm(gemm, "halt")], data=data, expect="error",
                      expect_error=ErrorCode.ILLEGAL_OPCODE)
    reserved = (int.from_bytes(_asm("gemm m=1 n=1 k=1")[0].to_bytes(), "little") | 1 << 250
                ).to_bytes(32, "little")
    check_program(NO_GEMM, [*head, reserved, *_asm("halt")], data=data, expect="error",
                  expect_error=ErrorCode.RESERVED_BITS)


def test_narrow_counters_wrap_as_the_model_says(seed):
    """counter_bits = 10: cycles, busy counts and the PIM MACs (9 columns × 4 banks × 32 =
    1 152) pass 2^10 and wrap in the RTL as in the system model."""
    cfg = CFG.replace(name="tiny-cnt10", counter_bits=10)
    rng = np.random.default_rng(seed)
    res, rtl, rep = check_program(cfg, _asm(
        "dma_load space=sp dram_addr=0x1000 dram_stride=0 sram_addr=0 sram_stride=0 rows=1 "
        "len=96",
        "pim_wrgb sram_addr=0 gb_addr=0 len=64 wait=load",
        "pim_mac row=3 col=0 ncols=9 kc=2 gb_chunk=0 slot=0",
        "vadd dst=sp:128:4 src1=sp:0:0 src2=imm imm=3 rows=1000 wait=load",
        "pim_read slot=0 nslots=4 sram_addr=64 wait=pim",
        "halt",
    ), data={0x1000: _bytes(rng, 512), 0x3000: _bytes(rng, 0x3000)})
    assert rep.cycles >= 1 << 10 and rtl.counters["cycles"] == rep.cycles % (1 << 10)
    assert res.stats.pim_macs >= 1 << 10
    assert rtl.counters["pim_macs"] == res.stats.pim_macs % (1 << 10)


# A DRAM whose row count is not a power of two: 48 rows, so its top is 192 KiB.
ROWS48 = CFG.replace(name="rows48", bank_rows=48)


@pytest.mark.parametrize("case", ["ok", "dma_load", "dma_store", "gather", "pim_mac",
                                  "pc_range"])
def test_top_of_a_non_power_of_two_dram(case, seed):
    """Programs in the top row of the last bank: DMA and PIM there work; an access just above
    the top fails with the golden model's error, at its PC."""
    rng = np.random.default_rng(seed)
    top = ROWS48.dram_bytes
    acc = np.zeros(ROWS48.acc_elems, np.int32)
    acc[0] = 1
    head = [f"dma_load space=sp dram_addr={top - 512} rows=1 len=64"]
    bad = {
        "dma_load": (f"dma_load space=sp dram_addr={top - 63} rows=1 len=64",
                     ErrorCode.DRAM_RANGE),
        "dma_store": (f"dma_store space=sp dram_addr={top - 8} sram_addr=0 rows=1 len=9 "
                      "wait=load", ErrorCode.DRAM_RANGE),
        "gather": (f"dma_gather space=sp dram_addr={top - 64} sram_addr=128 rows=1 len=1 "
                   "idx_addr=0 idx_scale=64", ErrorCode.DRAM_RANGE),
        "pim_mac": ("pim_mac row=48 ncols=1 kc=1", ErrorCode.PIM_RANGE),
    }
    if case == "ok":
        lines = [*head,
                 f"dma_store space=sp dram_addr={top - 384} sram_addr=0 rows=1 len=64 "
                 "wait=load",
                 "pim_wrgb sram_addr=0 gb_addr=0 len=64 wait=load",
                 f"pim_mac row=47 col=0 ncols={ROWS48.cols_per_row // 2} kc=2 slot=0",
                 "pim_read slot=0 nslots=4 sram_addr=256",
                 "halt"]
        expect, want = "done", ErrorCode.NONE
    elif case == "pc_range":
        lines, expect, want = [*head, "nop"], "error", ErrorCode.PC_RANGE
    else:
        lines = [*head, bad[case][0], "halt"]
        expect, want = "error", bad[case][1]
    prog = _asm(*lines)
    base = top - 32 * len(prog)
    data_at = top - ROWS48.dram_banks * ROWS48.row_bytes     # row 47 of every bank
    _, rtl, _ = check_program(ROWS48, prog, data={data_at: _bytes(rng, base - data_at)},
                              acc=acc, base=base, image_size=top, expect=expect,
                              expect_error=want)
    if case == "ok":
        assert rtl.counters["pim_macs"] > 0 and rtl.counters["dram_write_bytes"] == 64


@pytest.mark.parametrize("cfg", [CFG, ROWS48], ids=["tiny", "rows48"])
def test_memory_window_at_the_top_of_dram(cfg, seed):
    """The DRAM window's last word works; addresses at and above the top read as zero and
    ignore writes, also those whose low bits name a column (no wrap-around)."""
    rng = random.Random(seed)
    top = cfg.dram_bytes
    image = bytearray(top)
    image[:8] = rng.randbytes(8)
    image[top - 8:] = rng.randbytes(8)
    dut = Accelerator(cfg, image=bytes(image))
    wrap = 1 << (top - 1).bit_length()          # aliases column 0 if addresses were truncated

    async def tb(ctx):
        b = Bus(ctx, dut.bus)
        last = int.from_bytes(image[top - 4:], "little")
        assert await b.read_mem(HostMem.DRAM, top - 4, 2) == [last, 0]
        await b.write_mem(HostMem.DRAM, top - 4, [0x01234567, 0x89ABCDEF])
        await b.write_mem(HostMem.DRAM, wrap, [0x55AA55AA])
        assert await b.read(Reg.MEM_ADDR) == wrap + 4
        assert await b.read_mem(HostMem.DRAM, top - 8, 3) == [
            int.from_bytes(image[top - 8:top - 4], "little"), 0x01234567, 0]
        assert await b.read_mem(HostMem.DRAM, wrap, 1) == [0]
        assert await b.read_mem(HostMem.DRAM, 0, 1) == [int.from_bytes(image[:4], "little")]

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.run()


def test_sram_windows_do_not_wrap(seed):
    """The SP and ACC windows' last words work; the words at and above their tops (which alias
    address 0 if addresses were truncated to the SRAMs' sizes) read as zero and ignore
    writes."""
    rng = random.Random(seed)
    dut = Accelerator(CFG, image=bytes(64))
    words = [rng.getrandbits(32) for _ in range(4)]

    async def tb(ctx):
        b = Bus(ctx, dut.bus)
        for mem, top, step in ((HostMem.SP, CFG.sp_bytes, 4), (HostMem.ACC, CFG.acc_elems, 1)):
            await b.write_mem(mem, 0, words[:1])
            await b.write_mem(mem, top - step, words[1:3])        # the second is dropped
            assert await b.read(Reg.MEM_ADDR) == top + step, mem
            await b.write_mem(mem, 2 * top, words[3:])
            assert await b.read_mem(mem, top - step, 2) == [words[1], 0], mem
            assert await b.read_mem(mem, 2 * top, 1) == [0], mem
            assert await b.read_mem(mem, 0, 1) == words[:1], mem

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.run()


@pytest.fixture(scope="module")
def tiny_gpt():
    from llmaccel.sw.compiler import CompiledGPT
    from llmaccel.sw.model.corpus import train_split
    from llmaccel.sw.model.gpt import GPTConfig, init_params
    from llmaccel.sw.model.int8 import quantize_model

    mcfg = GPTConfig(vocab_size=32, n_ctx=8, d_model=8, n_layer=1, n_head=2)
    params = init_params(mcfg, seed=3, std=0.2)
    q = quantize_model(params, mcfg, bytes(b % 32 for b in train_split()[:3000]))
    return CompiledGPT(q, CFG)


def test_compiled_prefill_then_decode(tiny_gpt):
    c = tiny_gpt
    prompt = [5, 17, 3, 30]
    image = bytearray(c.image)
    image[c.r_prompt.addr:c.r_prompt.addr + 16] = np.asarray(prompt, "<i4").tobytes()
    programs = [*c.prefill_programs(len(prompt)), c.decode(len(prompt))]
    for info in programs:
        image[info.base:info.base + len(info.binary)] = info.binary
    image = bytes(image)
    g = GoldenMachine(CFG)
    g.load_dram(0, image)
    results, snaps, ranges = [], [], []
    for info in programs:
        res = g.run(info.base, trace=True)
        assert res.ok, res.message
        results.append(res)
        snaps.append((g.sp.copy(), g.acc.copy(), g.dram.copy()))
        ranges.append(store_ranges(CFG, res.trace))
    rtls = run_rtl(CFG, image, base=[p.base for p in programs], dram_ranges=ranges)
    model = SystemModel(CFG)
    for info, res, rtl, (sp, acc, dram) in zip(programs, results, rtls, snaps, strict=True):
        rep = model.run(res, start_cycle=rtl.start, base=info.base, program=image)
        snap = GoldenMachine(CFG, check_races=False)
        snap.sp[:], snap.acc[:], snap.dram[:] = sp, acc, dram
        compare(CFG, snap, res, rtl, rep, "done")
        tok = int(np.frombuffer(dram[info.out_token_addr:info.out_token_addr + 4], "<i4")[0])
        print(f"{info.kind}: {len(res.trace)} instructions, {rtl.counters['cycles']} cycles, "
              f"token {tok}")


# -------------------------------------------------------------------------------------------
# Host interface, register by register.
def test_host_registers_and_memory_window(seed):
    rng = random.Random(seed)
    W = CFG.row_width
    prog = _asm("vadd dst=sp:64:4 src1=sp:0:4 src2=imm imm=5 rows=2",
                "dma_store space=sp dram_addr=0x2000 sram_addr=64 rows=1 len=8 wait=vec",
                "halt")
    bad = [*prog[:1], _illegal(0x3F)]
    image = bytearray(0x3000)
    image[:96] = to_binary(prog)
    image[0x1000:0x1000 + 64] = to_binary(bad[:1]) + bad[1]
    dut = Accelerator(CFG, image=bytes(image))
    seen = {"irq": 0}

    async def irq(ctx):
        async for _clk, _rst, pulse in ctx.tick().sample(dut.o_irq):
            seen["irq"] += pulse

    async def tb(ctx):
        b = Bus(ctx, dut.bus)
        cfg_word = CFG.array_rows | CFG.array_cols << 8 | CFG.dram_banks << 16 | W << 24
        assert await b.read(Reg.ID) == ID_VALUE
        assert await b.read(Reg.CONFIG) == cfg_word
        assert await b.read(Reg.STATUS) == Status.IDLE
        assert await b.read(0x3FC) == 0                       # unmapped
        assert not ctx.get(dut.o_done)
        # Read/write registers, with byte enables.
        for reg in (Reg.PROG_BASE, Reg.WATCHDOG, Reg.MEM_ADDR):
            await b.write(reg, 0x11223344)
            await b.write(reg, 0xAABBCCDD, sel=0b0101)
            assert await b.read(reg) == 0x11BB33DD, reg
        await b.write(Reg.MEM_SEL, HostMem.ACC)
        assert await b.read(Reg.MEM_SEL) == HostMem.ACC
        await b.write(Reg.ID, 0)                              # read-only: ignored
        assert await b.read(Reg.ID) == ID_VALUE
        # The memory window: DRAM bytes, SP int8 elements (4 per word), ACC int32 elements;
        # MEM_ADDR advances with every access.
        words = [rng.getrandbits(32) for _ in range(6)]
        await b.write_mem(HostMem.DRAM, 0x2804, words)
        assert await b.read(Reg.MEM_ADDR) == 0x2804 + 4 * len(words)
        assert await b.read_mem(HostMem.DRAM, 0x2804, 6) == words
        assert await b.read_mem(HostMem.DRAM, 0, 2) == [
            int.from_bytes(image[i:i + 4], "little") for i in (0, 4)]
        await b.write_mem(HostMem.SP, 8, words[:4])
        assert await b.read_mem(HostMem.SP, 8, 4) == words[:4]
        sp_rows = [ctx.get(dut.sp.row_data(i)) for i in range(8 // W, (8 + 16) // W)]
        assert _unrows(sp_rows, W, 8).tobytes() == b"".join(
            w.to_bytes(4, "little") for w in words[:4])
        await b.write_mem(HostMem.ACC, 5, words[:5])
        assert await b.read_mem(HostMem.ACC, 5, 5) == words[:5]
        acc = _unrows([ctx.get(dut.acc.row_data(i)) for i in range(4)], W, 32)
        assert [int(x) & 0xFFFFFFFF for x in acc[5:10]] == words[:5]
        # A write with byte enables touches only those bytes.
        await b.write_mem(HostMem.SP, 8, [0xFFFFFFFF])
        await b.write(Reg.MEM_ADDR, 8)
        await b.write(Reg.MEM_DATA, 0, sel=0b0010)
        assert await b.read_mem(HostMem.SP, 8, 1) == [0xFFFF00FF]
        # START → RUNNING → DONE, counters over the bus, o_done and o_irq.
        await b.write_mem(HostMem.SP, 0, [0x04030201, 0x08070605])
        await b.write(Reg.WATCHDOG, 0)
        await b.write(Reg.PROG_BASE, 0)
        await b.write(Reg.CTRL, 1)
        assert await b.read(Reg.STATUS) == Status.RUNNING
        # While it runs the DRAM window is closed: a write is dropped, a read returns zero
        # (the backdoor would take the banks' ports from the program's own accesses).
        await b.write_mem(HostMem.DRAM, 0x2804, [~words[0] & 0xFFFFFFFF])
        assert await b.read_mem(HostMem.DRAM, 0x2804, 1) == [0]
        assert await b.read(Reg.STATUS) == Status.RUNNING
        while await b.read(Reg.STATUS) == Status.RUNNING:
            pass
        assert await b.read(Reg.STATUS) == Status.DONE
        assert (await b.read(Reg.ERROR), await b.read(Reg.ERROR_PC)) == (0, 0)
        assert await b.read_mem(HostMem.DRAM, 0x2804, 1) == [words[0]]
        assert ctx.get(dut.o_done) and seen["irq"] == 1
        cnt = ctx.get(dut.ctrl.o_counters)
        for k, name in enumerate(COUNTERS):
            assert await b.read64(name) == int(cnt[k]), name
        assert await b.read64("retired_vec") == 1 and await b.read64("retired_store") == 1
        assert await b.read64("cycles") > 20
        assert await b.read_mem(HostMem.DRAM, 0x2000, 2) == [0x09080706, 0x0D0C0B0A]
        # CLEAR_COUNTERS zeroes every counter and does not start a run.
        await b.write(Reg.CTRL, 2)
        for name in COUNTERS:
            assert await b.read64(name) == 0, name
        assert await b.read(Reg.STATUS) == Status.DONE
        # A failing program: ERROR and ERROR_PC.
        await b.write(Reg.PROG_BASE, 0x1000)
        await b.write(Reg.CTRL, 1)
        while await b.read(Reg.STATUS) == Status.RUNNING:
            pass
        assert await b.read(Reg.STATUS) == Status.ERROR
        assert await b.read(Reg.ERROR) == ErrorCode.ILLEGAL_OPCODE.value
        assert await b.read(Reg.ERROR_PC) == 0x1020
        assert seen["irq"] == 2
        assert await b.read64("retired_vec") == 1          # the instruction before it ran

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(tb)
    sim.add_process(irq)
    sim.run()


# -------------------------------------------------------------------------------------------
# Random programs: every instruction class, random waits (made race-free), on RTL vs golden
# and the system model.
def _wait(mask: int) -> str:
    return "|".join(u.name.lower() for u in Unit if mask & u.value)


def random_program(cfg: AccelConfig, rng: random.Random, n: int) -> list:
    W = cfg.row_width
    sp_reg = [512 * i for i in range(16)]            # SP regions of 512 elements
    acc_reg = [256 * i for i in range(8, 16)]        # ACC regions of 256 elements

    def region(space):
        return rng.choice(sp_reg if space == "sp" else acc_reg)

    def vop(space):
        return f"{space}:{region(space)}:{W * rng.randint(0, 2)}"

    lines = []
    for _ in range(n):
        k = rng.randrange(12)
        sp_or_acc = rng.choice(["sp", "acc"])
        if k in (0, 1):
            lines.append(
                f"dma_load space={sp_or_acc} dram_addr={0x8000 + rng.randrange(4096)} "
                f"dram_stride={rng.choice([0, 7, 32, 100, -40])} "
                f"sram_addr={region(sp_or_acc) + rng.randrange(8)} "
                f"sram_stride={rng.randrange(0, 24)} rows={rng.randint(1, 6)} "
                f"len={rng.randint(1, 20)} bcast={int(rng.random() < 0.2)}")
        elif k == 2:
            lines.append(
                f"dma_store space={sp_or_acc} dram_addr={0x20000 + rng.randrange(8192)} "
                f"dram_stride={rng.choice([0, 5, 32, 64])} "
                f"sram_addr={region(sp_or_acc) + rng.randrange(8)} "
                f"sram_stride={rng.randrange(0, 16)} rows={rng.randint(1, 5)} "
                f"len={rng.randint(1, 16)}")
        elif k == 3:
            m, nn, kk = rng.randint(1, 9), rng.randint(1, 9), rng.randint(0, 9)
            mb = -(-m // cfg.array_rows)
            lines.append(
                f"gemm accumulate={rng.randint(0, 1)} m={m} n={nn} k={kk} "
                f"a_addr={rng.choice(sp_reg)} a_stride={W * kk} b_addr={rng.choice(sp_reg)} "
                f"b_stride={W * kk} c_addr={rng.choice(acc_reg)} "
                f"c_stride={W * nn if mb > 1 else 0}")
        elif k in (4, 5):
            op = rng.choice(["vadd", "vsub", "vmul", "vmax", "vmin"])
            src2 = rng.choice(["imm", f"vec:{vop(rng.choice(['sp', 'acc']))}",
                               f"scalar:acc:{rng.choice(acc_reg)}:1"])
            lines.append(f"{op} dst={vop(rng.choice(['sp', 'acc']))} "
                         f"src1={vop(rng.choice(['sp', 'acc']))} src2={src2} "
                         f"imm={rng.randint(-9, 9)} rows={rng.randint(0, 6)} "
                         f"shift={rng.randint(0, 3)}")
        elif k == 6:
            op = rng.choice(["vredsum", "vredmax", "vargmax"])
            lines.append(f"{op} dst={vop('acc')} src1={vop(rng.choice(['sp', 'acc']))} "
                         f"rows={rng.randint(1, 5)} horizontal={rng.randint(0, 1)}")
        elif k == 7:
            lines.append(f"vrecip dst={vop('acc')} src1={vop('acc')} rows={rng.randint(1, 2)} "
                         f"imm={rng.randint(0, 1000)}")
        elif k == 8:
            lines.append(f"vtrans dst={rng.choice(['sp', 'acc'])}:{rng.choice(acc_reg)}:16 "
                         f"src1=sp:{rng.choice(sp_reg)}:16 rows={rng.randint(1, 2)}")
        elif k == 9:
            lines.append(f"pim_wrgb sram_addr={rng.choice(sp_reg) + rng.randrange(8)} "
                         f"gb_addr={rng.randrange(200)} len={rng.randint(0, 100)}")
        elif k == 10:
            ncols = rng.randint(0, 8)
            lines.append(f"pim_mac accumulate={rng.randint(0, 1)} row={rng.randrange(16, 48)} "
                         f"col={rng.randrange(0, 20)} ncols={ncols} kc={rng.randint(1, 4)} "
                         f"gb_chunk={rng.randrange(8)} slot={rng.randrange(16)}")
        else:
            lines.append(rng.choice([
                f"pim_read slot={rng.randrange(16)} nslots={rng.randint(0, 4)} "
                f"sram_addr={rng.choice(acc_reg) + rng.randrange(8)}",
                f"nop wait={_wait(rng.randrange(1, 32))}",
                f"dma_gather space={sp_or_acc} dram_addr={0x8000 + rng.randrange(1024)} "
                f"dram_stride=16 sram_addr={region(sp_or_acc)} "
                f"sram_stride=8 rows={rng.randint(1, 3)} len=8 idx_addr={rng.randrange(8)} "
                f"idx_scale={rng.choice([1, 8, 32])}"]))
        if rng.random() < 0.4 and not lines[-1].startswith("nop"):
            lines[-1] += f" wait={_wait(rng.randrange(1, 32))}"
    prog = assemble("\n".join([*lines, "halt"]))
    return prog


def race_free(cfg: AccelConfig, prog: list, image: bytes, acc: np.ndarray) -> list | None:
    """Add waits (all units) to instructions the golden race checker flags until none is
    (None when an instruction races with itself, which no wait fixes)."""
    from llmaccel.sim.golden.isa_sim import RaceError

    for _ in range(len(prog)):
        g = GoldenMachine(cfg)
        g.load_dram(0, image)
        g.load_dram(0, to_binary(prog))
        g.acc[:] = acc
        try:
            g.run(0)
            return prog
        except RaceError as e:
            if "at pc " not in str(e):
                return None               # rows of one instruction overlap: not a wait issue
            pc = int(str(e).split("at pc ")[1].split()[0], 16)
            prog[pc // 32] = prog[pc // 32].replace(wait=Unit(31))
    raise AssertionError("could not make the program race-free")


def _random_case(seed: int, n: int):
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    image = bytearray(CFG.dram_bytes // 4)
    image[0x8000:0x10000] = _bytes(nrng, 0x8000)
    acc = nrng.integers(-1000, 1000, CFG.acc_elems, dtype=np.int32)
    acc[:8] = nrng.integers(0, 40, 8)                 # gather indices
    sp = nrng.integers(-128, 128, CFG.sp_bytes, dtype=np.int8)
    prog = None
    while prog is None:
        prog = race_free(CFG, random_program(CFG, rng, n), bytes(image), acc)
    data = {0x8000: bytes(image[0x8000:0x10000])}
    return prog, data, sp, acc


def test_random_program(seed):
    prog, data, sp, acc = _random_case(seed, 30)
    check_program(CFG, prog, data=data, sp=sp, acc=acc, image_size=CFG.dram_bytes // 4)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(12))
def test_random_programs_soak(k, seed):
    prog, data, sp, acc = _random_case(seed + k, 60)
    check_program(CFG, prog, data=data, sp=sp, acc=acc, image_size=CFG.dram_bytes // 4)
