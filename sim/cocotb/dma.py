"""Bench pieces for the DMA engines, shared by the Amaranth-simulator tests (tests/hw/test_dma.py),
the cocotb testbench (tests/cocotb/tb_dma.py) and the benchmark (sw/bench/dma.py).

* **Harnesses** (Amaranth components): :class:`DmaSystem` wires DmaLoad and DmaStore to two
  :class:`~llmaccel.hw.sram.Sram` instances and the behavioural
  :class:`~llmaccel.hw.dram_responder.DramResponder` (the Amaranth tests and the benchmark);
  :class:`DmaPair` exposes every DRAM and SRAM port of both engines so that a cocotb bench can
  play DRAM and SRAM in Python.
* **Stimulus**: :func:`random_images` and :func:`random_transfer` (legal, in-range transfers
  with any alignment, strides of either sign, bank/row crossings, overlaps), gather tables.
* **Model**: :func:`golden_run` (GoldenMachine on the same state, the specification),
  :func:`expected_ends` (sim/golden/timing_dma.py with the behavioural responder).
* **Scoreboard**: :func:`check_run` compares memories (whole SRAMs and DRAM, plus explicit guard
  bands around every destination) and cycle counts.
* **Drivers/monitors**: :func:`run_amaranth` for the Amaranth simulator; the cocotb agents
  (:class:`CocotbDramPort`, :class:`CocotbSramPorts`, :class:`CocotbCmdDriver`) for tb_dma.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.dma_load import LOAD_OUTSTANDING, DmaLoad
from llmaccel.hw.dma_store import DmaStore
from llmaccel.hw.dram_responder import DramResponder
from llmaccel.hw.isa import DmaInstr, Instruction, Opcode, Space
from llmaccel.hw.ports import (
    acc_read_signature,
    acc_write_signature,
    dram_port_signature,
    sp_read_signature,
    sp_write_signature,
)
from llmaccel.hw.sram import Sram
from llmaccel.sim.golden.isa_sim import GoldenMachine, MachineError
from llmaccel.sim.golden.timing_dma import FixedLatencyDram, dma_timing
from llmaccel.sw.asm import instr

__all__ = [
    "CocotbCmdDriver",
    "CocotbDramPort",
    "CocotbSramPorts",
    "DmaPair",
    "DmaSystem",
    "Expected",
    "Images",
    "RunRecord",
    "check_run",
    "destination",
    "expected_ends",
    "gather_case",
    "golden_run",
    "random_images",
    "random_transfer",
    "run_amaranth",
    "run_cocotb_program",
]


# -------------------------------------------------------------------------------------------
# Harnesses
class DmaSystem(wiring.Component):
    """DmaLoad + DmaStore + SP and ACC SRAMs + a behavioural DRAM with one port per engine.

    With ``storage=False`` there are no memories (SRAM reads return zeros, DRAM reads return
    zeros, writes are dropped): the timing is unchanged, which is all a benchmark needs.

    Ports: ``i_load`` / ``i_store`` (instruction streams), ``o_load_done``, ``o_load_busy``,
    ``o_load_error``, ``o_gather_checked``, ``o_store_done``, ``o_store_busy`` and ``o_cycle``
    (a free-running cycle counter for measurements).
    """

    def __init__(self, cfg: AccelConfig, *, latency: int = 4, interval: int = 1,
                 req_stall: float = 0.0, rsp_stall: float = 0.0, seed: int = 1,
                 dram_init=None, sp_init=None, acc_init=None, storage: bool = True,
                 outstanding: int = LOAD_OUTSTANDING):
        self.cfg = cfg
        self.storage = storage
        self.load = DmaLoad(cfg, outstanding=outstanding)
        self.store = DmaStore(cfg)
        self.sp = Sram(cfg, Space.SP, ["store"], ["load"], init=sp_init) if storage else None
        self.acc = Sram(cfg, Space.ACC, ["load", "store"], ["load"], init=acc_init) \
            if storage else None
        self.dram = DramResponder(cfg, ["load", "store"], latency=latency, interval=interval,
                                  req_stall=req_stall, rsp_stall=rsp_stall, seed=seed,
                                  init=dram_init, storage=storage)
        super().__init__({
            "i_load": In(stream.Signature(DmaInstr)),
            "o_load_done": Out(1),
            "o_load_busy": Out(1),
            "o_load_error": Out(1),
            "o_gather_checked": Out(1),
            "i_store": In(stream.Signature(DmaInstr)),
            "o_store_done": Out(1),
            "o_store_busy": Out(1),
            "o_cycle": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.load = load = self.load
        m.submodules.store = store = self.store
        m.submodules.dram = dram = self.dram
        wiring.connect(m, wiring.flipped(self.i_load), load.i_cmd)
        wiring.connect(m, wiring.flipped(self.i_store), store.i_cmd)
        m.d.comb += [
            self.o_load_done.eq(load.o_done), self.o_load_busy.eq(load.o_busy),
            self.o_load_error.eq(load.o_error), self.o_gather_checked.eq(load.o_gather_checked),
            self.o_store_done.eq(store.o_done), self.o_store_busy.eq(store.o_busy),
        ]
        wiring.connect(m, load.dram, dram.load)
        wiring.connect(m, store.dram, dram.store)
        if self.storage:
            m.submodules.sp = sp = self.sp
            m.submodules.acc = acc = self.acc
            wiring.connect(m, load.sp_wr, sp.wr_load)
            wiring.connect(m, load.acc_wr, acc.wr_load)
            wiring.connect(m, load.acc_rd, acc.rd_load)
            wiring.connect(m, store.sp_rd, sp.rd_store)
            wiring.connect(m, store.acc_rd, acc.rd_store)
        cycle = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        m.d.comb += self.o_cycle.eq(cycle)
        return m


class DmaPair(wiring.Component):
    """DmaLoad and DmaStore side by side with all their ports exposed (``load_*`` and
    ``store_*``, named as on the engines), for a bench that models DRAM and SRAMs itself."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        super().__init__({
            "load_cmd": In(stream.Signature(DmaInstr)),
            "load_done": Out(1),
            "load_busy": Out(1),
            "load_error": Out(1),
            "load_checked": Out(1),
            "load_dram": Out(dram_port_signature(cfg)),
            "load_sp_wr": In(sp_write_signature(cfg)),
            "load_acc_wr": In(acc_write_signature(cfg)),
            "load_acc_rd": In(acc_read_signature(cfg)),
            "store_cmd": In(stream.Signature(DmaInstr)),
            "store_done": Out(1),
            "store_busy": Out(1),
            "store_dram": Out(dram_port_signature(cfg)),
            "store_sp_rd": In(sp_read_signature(cfg)),
            "store_acc_rd": In(acc_read_signature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.load = load = DmaLoad(self.cfg)
        m.submodules.store = store = DmaStore(self.cfg)
        wiring.connect(m, wiring.flipped(self.load_cmd), load.i_cmd)
        wiring.connect(m, wiring.flipped(self.store_cmd), store.i_cmd)
        for ours, theirs in ((self.load_dram, load.dram), (self.load_sp_wr, load.sp_wr),
                             (self.load_acc_wr, load.acc_wr), (self.load_acc_rd, load.acc_rd),
                             (self.store_dram, store.dram), (self.store_sp_rd, store.sp_rd),
                             (self.store_acc_rd, store.acc_rd)):
            wiring.connect(m, wiring.flipped(ours), theirs)
        m.d.comb += [
            self.load_done.eq(load.o_done), self.load_busy.eq(load.o_busy),
            self.load_error.eq(load.o_error), self.load_checked.eq(load.o_gather_checked),
            self.store_done.eq(store.o_done), self.store_busy.eq(store.o_busy),
        ]
        return m


# -------------------------------------------------------------------------------------------
# Stimulus
@dataclass
class Images:
    """Contents of the three memories (copies are taken where they are modified)."""

    dram: np.ndarray   # uint8
    sp: np.ndarray     # int8
    acc: np.ndarray    # int32

    def copy(self) -> Images:
        return Images(self.dram.copy(), self.sp.copy(), self.acc.copy())


def random_images(cfg: AccelConfig, rng: np.random.Generator) -> Images:
    """Random contents everywhere, so a stray write is visible whatever value it writes."""
    return Images(
        rng.integers(0, 256, cfg.dram_bytes, dtype=np.uint8),
        rng.integers(-128, 128, cfg.sp_bytes, dtype=np.int8),
        rng.integers(-2**31, 2**31, cfg.acc_elems, dtype=np.int64).astype(np.int32),
    )


def _place(rng: random.Random, region: tuple[int, int], ext: int, span: int, *,
           boundary: int | None = None) -> int:
    """A base address such that ``base + [min(0, ext), max(0, ext) + span)`` lies in
    ``[region[0], region[1])``; with ``boundary``, the transfer straddles a multiple of it when
    it can."""
    lo = region[0] - min(0, ext)
    hi = region[1] - max(0, ext) - span
    if hi < lo:
        raise ValueError(f"a transfer of extent {ext} and span {span} does not fit {region}")
    if boundary:
        k = rng.randrange(lo // boundary + 1, max(lo // boundary + 2, hi // boundary + 1))
        base = k * boundary - rng.randrange(0, max(1, span + abs(ext))) - min(0, ext)
        if lo <= base <= hi:
            return base
    return rng.randint(lo, hi)


def random_transfer(cfg: AccelConfig, rng: random.Random, opcode: Opcode = Opcode.DMA_LOAD, *,
                    space: Space | None = None, max_elems: int = 160,
                    dram_range: tuple[int, int] | None = None,
                    sram_range: tuple[int, int] | None = None, **fixed) -> Instruction:
    """A legal, in-range DMA_LOAD or DMA_STORE with random geometry, touching only
    ``dram_range`` / ``sram_range`` (default: everything). Fields in ``fixed`` are taken as
    given (the rest are drawn around them)."""
    W = cfg.row_width
    space = space if space is not None else fixed.pop("space", rng.choice([Space.SP, Space.ACC]))
    fixed.pop("space", None)
    s = 4 if space is Space.ACC else 1
    load = opcode is Opcode.DMA_LOAD
    bcast = fixed.get("bcast", int(load and rng.random() < 0.2))
    n = fixed.get("len", rng.choice([1, 2, 3, W - 1, W, W + 1, 2 * W + 3, 31, 32, 33,
                                     rng.randint(1, 70)]))
    n = max(1, n)
    rows = fixed.get("rows", max(1, min(rng.choice([1, 1, 2, 3, 4, 5, 8, 13]),
                                        max_elems // n)))
    span = s if bcast else n * s
    dstride = fixed.get("dram_stride", rng.choice([
        span, n * s, n * s + rng.randint(1, 40), -(n * s) - rng.randint(0, 40),
        rng.randint(-80, 80), 0, cfg.row_bytes + rng.randint(-3, 3), 32]))
    sstride = fixed.get("sram_stride", rng.choice([
        n, W * (-(-n // W)), n + rng.randint(1, 9), -n - rng.randint(0, 9), rng.randint(0, n),
        W, -W]))
    boundary = rng.choice([None, cfg.row_bytes, cfg.row_bytes * cfg.dram_banks, cfg.col_bytes])
    dram_addr = fixed.get("dram_addr", _place(rng, dram_range or (0, cfg.dram_bytes),
                                              (rows - 1) * dstride, span, boundary=boundary))
    sram_size = cfg.acc_elems if space is Space.ACC else cfg.sp_bytes
    sram_addr = fixed.get("sram_addr", _place(rng, sram_range or (0, sram_size),
                                              (rows - 1) * sstride, n,
                                              boundary=rng.choice([None, W])))
    fields = {"space": space, "dram_addr": dram_addr, "dram_stride": dstride,
              "sram_addr": sram_addr, "sram_stride": sstride, "rows": rows, "len": n}
    if load:
        fields["bcast"] = bcast
    return instr(opcode, **fields)


def gather_case(cfg: AccelConfig, images: Images, rng: random.Random, *, index: int,
                space: Space = Space.SP, entries: int = 16, rows: int = 1,
                idx_addr: int | None = None) -> Instruction:
    """A DMA_GATHER from a table of ``entries`` rows placed at the very end of DRAM, with the
    int32 ``index`` written into ``images.acc`` at ``idx_addr``: index ``entries - 1`` reads the
    last bytes of DRAM, ``entries`` or more (or a negative index) leaves DRAM (DRAM_RANGE)."""
    W = cfg.row_width
    s = 4 if space is Space.ACC else 1
    n = rng.choice([W, 2 * W + 1, 13])
    scale = n * s
    dstride = 0 if rows == 1 else scale // rows   # rows of one entry split into pieces
    ext = (rows - 1) * dstride
    table = cfg.dram_bytes - entries * scale - ext
    idx_addr = rng.randrange(cfg.acc_elems) if idx_addr is None else idx_addr
    images.acc[idx_addr] = index
    sram_size = cfg.acc_elems if space is Space.ACC else cfg.sp_bytes
    sstride = n
    sram_addr = rng.randint(0, sram_size - rows * n)
    if space is Space.ACC and sram_addr <= idx_addr < sram_addr + rows * n:
        sram_addr = 0 if idx_addr >= rows * n else sram_size - rows * n
    return instr(Opcode.DMA_GATHER, space=space, dram_addr=table, dram_stride=dstride,
                 sram_addr=sram_addr, sram_stride=sstride, rows=rows, len=n,
                 idx_addr=idx_addr, idx_scale=scale)


def destination(cfg: AccelConfig, ins: Instruction) -> tuple[str, np.ndarray]:
    """The memory (``"dram"``, ``"sp"`` or ``"acc"``) and flat indices an instruction writes."""
    s = 4 if ins.space is Space.ACC else 1
    r = np.arange(ins.rows, dtype=np.int64)[:, None]
    e = np.arange(ins.len, dtype=np.int64)[None, :]
    if ins.opcode is Opcode.DMA_STORE:
        idx = ins.dram_addr + r * ins.dram_stride + e * s
        return "dram", (idx.ravel()[:, None] + np.arange(s)).ravel()
    return ins.space.name.lower(), (ins.sram_addr + r * ins.sram_stride + e).ravel()


# -------------------------------------------------------------------------------------------
# Model
@dataclass
class Expected:
    """What the golden model says a program does."""

    final: Images
    gather_bases: list     # per instruction: DRAM base of a successful gather, else None
    errors: list           # per instruction: True when it stops with DRAM_RANGE


def golden_run(cfg: AccelConfig, images: Images, program: list[Instruction]) -> Expected:
    """Run ``program`` instruction by instruction on GoldenMachine from ``images``. A gather that
    fails is recorded (the RTL reports it and writes nothing) and execution continues, which
    is what the DMA unit does when its controller does not stop."""
    gm = GoldenMachine(cfg, check_races=False)
    gm.dram[:] = images.dram
    gm.sp[:] = images.sp
    gm.acc[:] = images.acc
    bases, errors = [], []
    for ins in program:
        try:
            gm.execute(ins)
        except MachineError:
            if ins.opcode is not Opcode.DMA_GATHER:
                raise
            bases.append(None)
            errors.append(True)
            continue
        bases.append(gm.last_gather_base if ins.opcode is Opcode.DMA_GATHER else None)
        errors.append(False)
    return Expected(Images(gm.dram.copy(), gm.sp.copy(), gm.acc.copy()), bases, errors)


def expected_ends(cfg: AccelConfig, program: list[Instruction], starts: list[int],
                  expected: Expected, *, latency: int, interval: int,
                  outstanding: int = LOAD_OUTSTANDING) -> list[int]:
    """``o_done`` cycles timing_dma predicts for handshakes in cycles ``starts``, one
    behavioural responder port per engine."""
    ports = {"load": FixedLatencyDram(latency, interval),
             "store": FixedLatencyDram(latency, interval)}
    ends = []
    for ins, start, base in zip(program, starts, expected.gather_bases, strict=True):
        unit = "store" if ins.opcode is Opcode.DMA_STORE else "load"
        ends.append(dma_timing(cfg, ins, start, ports[unit], gather_base=base,
                               outstanding=outstanding).end)
    return ends


# -------------------------------------------------------------------------------------------
# Scoreboard
@dataclass
class RunRecord:
    """What an RTL run produced: final memories and, per instruction, the handshake and
    ``o_done`` cycles, ``o_error`` and the ``o_gather_checked`` cycle (or None)."""

    final: Images
    starts: list = field(default_factory=list)
    ends: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    checked: list = field(default_factory=list)


def check_run(cfg: AccelConfig, program: list[Instruction], initial: Images, expected: Expected,
              rtl: RunRecord, *, band: int = 64, timing: dict | None = None) -> None:
    """Assert the RTL run matches the golden model: error flags, whole memories (every byte),
    guard bands of ``band`` elements around every destination unchanged unless a later
    instruction of the program writes them, and (with ``timing={"latency": L, "interval": I}``)
    every instruction's cycles."""
    assert rtl.errors == expected.errors, f"o_error per instruction {rtl.errors}, " \
                                          f"golden {expected.errors}"
    written = {"dram": set(), "sp": set(), "acc": set()}
    for ins, err in zip(program, expected.errors, strict=True):
        if not err:
            mem, idx = destination(cfg, ins)
            written[mem].update(idx.tolist())
    for mem in ("dram", "sp", "acc"):
        got, want, before = (getattr(x, mem) for x in (rtl.final, expected.final, initial))
        for ins, err in zip(program, expected.errors, strict=True):
            d_mem, idx = destination(cfg, ins)
            if d_mem != mem or err or idx.size == 0:
                continue
            guard = np.concatenate([np.arange(idx.min() - band, idx.min()),
                                    np.arange(idx.max() + 1, idx.max() + 1 + band)])
            guard = guard[(guard >= 0) & (guard < got.size)]
            guard = np.array([g for g in guard if g not in written[mem]], dtype=np.int64)
            if guard.size:
                np.testing.assert_array_equal(
                    got[guard], before[guard],
                    err_msg=f"{mem} guard band around {ins.opcode.name} was written")
        np.testing.assert_array_equal(got, want, err_msg=f"{mem} differs from the golden model")
    if timing is not None:
        want_ends = expected_ends(cfg, program, rtl.starts, expected, **timing)
        got_cycles = [e - s for s, e in zip(rtl.starts, rtl.ends, strict=True)]
        want_cycles = [e - s for s, e in zip(rtl.starts, want_ends, strict=True)]
        assert got_cycles == want_cycles, \
            f"cycles per instruction: RTL {got_cycles}, timing_dma {want_cycles}"


# -------------------------------------------------------------------------------------------
# Amaranth simulator driver and monitor
def _rows_to_array(values: list[int], row_bits: int, dtype: str) -> np.ndarray:
    nbytes = row_bits // 8
    # A memory of an array layout reads back as a data.Const.
    raw = b"".join((v.as_bits() if hasattr(v, "as_bits") else v).to_bytes(nbytes, "little")
                   for v in values)
    return np.frombuffer(raw, dtype=dtype).copy()


def run_amaranth(cfg: AccelConfig, program: list[Instruction], images: Images, *,
                 latency: int = 4, interval: int = 1, req_stall: float = 0.0,
                 rsp_stall: float = 0.0, seed: int = 1, cmd_gap: float = 0.0,
                 serial: bool = True, vcd: str | None = None, max_cycles: int = 200_000,
                 outstanding: int = LOAD_OUTSTANDING, storage: bool = True) -> RunRecord:
    """Run ``program`` on :class:`DmaSystem` in the Amaranth simulator.

    ``serial=True`` issues one instruction at a time in program order and waits for its
    ``o_done``; ``serial=False`` feeds each engine its own instructions back to back (the
    program must be race-free between the engines). ``cmd_gap`` is the probability of an idle
    cycle before each offer on ``i_cmd`` (random gaps from ``seed``). Without ``storage`` the
    harness has no memories (only timing is measured) and ``final`` is ``images`` unchanged."""
    from amaranth.sim import Simulator  # noqa: PLC0415 (only needed here)

    dut = DmaSystem(cfg, latency=latency, interval=interval, req_stall=req_stall,
                    rsp_stall=rsp_stall, seed=seed, storage=storage, outstanding=outstanding,
                    **({"dram_init": images.dram, "sp_init": images.sp, "acc_init": images.acc}
                       if storage else {}))
    units = ["store" if ins.opcode is Opcode.DMA_STORE else "load" for ins in program]
    n = len(program)
    rec = RunRecord(final=images)
    rec.starts, rec.ends = [None] * n, [None] * n
    rec.errors, rec.checked = [False] * n, [None] * n
    order = {u: [i for i in range(n) if units[i] == u] for u in ("load", "store")}
    done_count = {"load": 0, "store": 0}
    checked_count = [0]
    finished = [False]

    def port(unit):
        return dut.i_load if unit == "load" else dut.i_store

    async def monitor(ctx):
        async for _clk, _rst, cyc, ld, le, lc, sd in ctx.tick().sample(
                dut.o_cycle, dut.o_load_done, dut.o_load_error, dut.o_gather_checked,
                dut.o_store_done):
            if lc:
                gathers = [i for i in order["load"] if program[i].opcode is Opcode.DMA_GATHER]
                rec.checked[gathers[checked_count[0]]] = cyc
                checked_count[0] += 1
            if ld:
                i = order["load"][done_count["load"]]
                rec.ends[i], rec.errors[i] = cyc, bool(le)
                done_count["load"] += 1
            if sd:
                i = order["store"][done_count["store"]]
                rec.ends[i] = cyc
                done_count["store"] += 1
            if cyc > max_cycles:
                raise AssertionError(f"no completion within {max_cycles} cycles")

    async def offer(ctx, rng, i):
        p = port(units[i])
        while rng.random() < cmd_gap:
            await ctx.tick()
        ctx.set(p.valid, 1)
        ctx.set(p.payload.as_value(), program[i].encode())
        (cyc,) = await ctx.tick().sample(dut.o_cycle).until(p.ready)
        ctx.set(p.valid, 0)
        rec.starts[i] = cyc

    async def wait_done(ctx, unit, count):
        while done_count[unit] < count:
            await ctx.tick()

    async def serial_driver(ctx):
        rng = random.Random(seed)
        issued = {"load": 0, "store": 0}
        for i in range(n):
            await offer(ctx, rng, i)
            issued[units[i]] += 1
            await wait_done(ctx, units[i], issued[units[i]])
        finished[0] = True

    def unit_driver(unit):
        async def drive(ctx):
            rng = random.Random(seed * 2 + (unit == "store"))
            for i in order[unit]:
                await offer(ctx, rng, i)
            await wait_done(ctx, unit, len(order[unit]))
        return drive

    async def readback(ctx):
        if serial:
            while not finished[0]:
                await ctx.tick()
        else:
            for unit in ("load", "store"):
                await wait_done(ctx, unit, len(order[unit]))
        await ctx.tick()
        if not storage:
            return
        W = cfg.row_width
        rec.final = Images(
            _rows_to_array([ctx.get(dut.dram.data[i]) for i in range(dut.dram.data.depth)],
                           8 * cfg.col_bytes, "u1"),
            _rows_to_array([ctx.get(dut.sp.row_data(i)) for i in range(dut.sp.depth)],
                           8 * W, "i1"),
            _rows_to_array([ctx.get(dut.acc.row_data(i)) for i in range(dut.acc.depth)],
                           32 * W, "<i4").astype(np.int32),
        )

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    if serial:
        sim.add_testbench(serial_driver)
    else:
        sim.add_testbench(unit_driver("load"))
        sim.add_testbench(unit_driver("store"))
    sim.add_testbench(readback)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return rec


# -------------------------------------------------------------------------------------------
# cocotb agents (for DmaPair). Every agent has drive(cycle), called right after a rising edge
# (its outputs act as registers), and sample(cycle), called in the ReadOnly phase of the same
# cycle (it sees the DUT's settled outputs and what handshakes happen at the next edge). One
# clock loop calls them all, so Python wakes twice per cycle rather than once per agent.
def _field_slices(layout) -> dict[str, tuple[int, int]]:
    from amaranth.lib import data  # noqa: PLC0415

    return {name: (f.offset, f.width) for name, f in data.Layout.cast(layout)}


class CocotbDramPort:
    """Driver and monitor of one DRAM requester port, modelling the behavioural responder
    (hw/dram_responder.py): a request is accepted at most every ``interval`` cycles, a read's
    data is valid ``latency`` cycles after its handshake, writes update ``dram`` when accepted.
    With stalls, ``req.ready`` drops in random cycles and ``rsp.valid`` rises after random
    delays (and then stays up until the transfer)."""

    def __init__(self, dut, prefix: str, cfg: AccelConfig, dram: np.ndarray, *, latency: int,
                 interval: int, req_stall: float = 0.0, rsp_stall: float = 0.0,
                 rng: random.Random | None = None):
        from llmaccel.hw.ports import dram_request_layout  # noqa: PLC0415

        self.h = {n: getattr(dut, f"{prefix}__{n}") for n in (
            "req__valid", "req__ready", "req__payload", "rsp__valid", "rsp__ready",
            "rsp__payload")}
        self.fields = _field_slices(dram_request_layout(cfg))
        self.dram = dram
        self.col = cfg.col_bytes
        self.latency, self.interval = latency, interval
        self.req_stall, self.rsp_stall = req_stall, rsp_stall
        self.rng = rng or random.Random(0)
        self.cooldown = 0
        self.pending: list[tuple[int, int]] = []   # (cycle the data is valid from, data)
        self.shown = False
        self.ready = 0
        self.valid = 0
        self.accepts: list[int] = []

    def _field(self, value: int, name: str) -> int:
        off, width = self.fields[name]
        return (value >> off) & ((1 << width) - 1)

    def drive(self, cycle: int) -> None:
        stall = self.req_stall and self.rng.random() < self.req_stall
        self.ready = int(self.cooldown == 0 and not stall)
        self.h["req__ready"].value = self.ready
        head = self.pending and self.pending[0][0] <= cycle
        stall = self.rsp_stall and self.rng.random() < self.rsp_stall
        self.valid = int(bool(head) and (self.shown or not stall))
        self.h["rsp__valid"].value = self.valid
        if self.valid:
            self.h["rsp__payload"].value = self.pending[0][1]

    def sample(self, cycle: int) -> None:
        if self.valid:
            if int(self.h["rsp__ready"].value):
                self.pending.pop(0)
                self.shown = False
            else:
                self.shown = True
        if self.cooldown:
            self.cooldown -= 1
        if self.ready and int(self.h["req__valid"].value):
            raw = self.h["req__payload"].value
            assert raw.is_resolvable, f"request payload with X/Z bits: {raw}"
            payload = raw.to_unsigned()
            addr = self._field(payload, "addr") * self.col
            self.accepts.append(cycle)
            self.cooldown = self.interval - 1
            if self._field(payload, "write"):
                mask = self._field(payload, "wmask")
                data = self._field(payload, "wdata").to_bytes(self.col, "little")
                for x in range(self.col):
                    if mask >> x & 1:
                        self.dram[addr + x] = data[x]
            else:
                data = int.from_bytes(self.dram[addr:addr + self.col].tobytes(), "little")
                self.pending.append((cycle + self.latency, data))


class CocotbSramPorts:
    """Model of the SP and ACC SRAMs behind DmaPair's SRAM ports: write ports update the images
    (per-lane enable), read ports answer one cycle later with the row as it was before that
    cycle's writes (read-first, like hw/sram.py) and hold their data while ``en`` is low."""

    def __init__(self, dut, cfg: AccelConfig, images: Images, *, writes: dict[str, Space],
                 reads: dict[str, Space]):
        self.W = cfg.row_width
        self.images = images
        self.writes = {p: (s, [getattr(dut, f"{p}__{n}") for n in ("en", "addr", "data")])
                       for p, s in writes.items()}
        self.reads = {p: (s, [getattr(dut, f"{p}__{n}") for n in ("en", "addr", "data")])
                      for p, s in reads.items()}
        self.next_data: dict[str, int] = {}

    def _mem(self, space: Space) -> tuple[np.ndarray, int]:
        return (self.images.sp, 8) if space is Space.SP else (self.images.acc, 32)

    def drive(self, cycle: int) -> None:
        for p, value in self.next_data.items():
            self.reads[p][1][2].value = value
        self.next_data.clear()

    def sample(self, cycle: int) -> None:
        W = self.W
        for p, (space, (en, addr, _)) in self.reads.items():
            if int(en.value):
                mem, bits = self._mem(space)
                row = mem[addr.value.to_unsigned() * W:][:W]
                dtype = "<u1" if bits == 8 else "<u4"
                self.next_data[p] = int.from_bytes(row.view(dtype).tobytes(), "little")
        for space, (en, addr, data) in self.writes.values():
            lanes = en.value.to_unsigned()
            if lanes:
                mem, bits = self._mem(space)
                base = addr.value.to_unsigned() * W
                value = data.value.to_unsigned()
                for j in range(W):
                    if lanes >> j & 1:
                        v = (value >> (bits * j)) & ((1 << bits) - 1)
                        mem[base + j] = v - (1 << bits) if v >> (bits - 1) else v


class CocotbCmdDriver:
    """Driver of both engines' i_cmd streams and monitor of their done/error/checked outputs.

    ``serial``: one instruction at a time in program order, the next offered once the previous
    one's ``o_done`` was seen; otherwise each engine gets its instructions back to back. Random
    idle cycles before each offer with probability ``gap``."""

    def __init__(self, dut, program: list[Instruction], record: RunRecord, *,
                 serial: bool = True, gap: float = 0.0, rng: random.Random | None = None):
        self.dut = dut
        self.program = program
        self.rec = record
        self.serial = serial
        self.gap = gap
        self.rng = rng or random.Random(0)
        n = len(program)
        record.starts, record.ends = [None] * n, [None] * n
        record.errors, record.checked = [False] * n, [None] * n
        self.units = ["store" if i.opcode is Opcode.DMA_STORE else "load" for i in program]
        self.queue = {u: [i for i in range(n) if self.units[i] == u] for u in ("load", "store")}
        self.gathers = [i for i in self.queue["load"] if program[i].opcode is Opcode.DMA_GATHER]
        self.done = {"load": 0, "store": 0}
        self.offered = {"load": None, "store": None}    # instruction index on the stream
        self.issued = {"load": 0, "store": 0}
        self.next_serial = 0
        self.n_checked = 0

    @property
    def finished(self) -> bool:
        return all(self.done[u] == len(self.queue[u]) for u in ("load", "store"))

    def _next(self, unit: str) -> int | None:
        if self.serial:
            i = self.next_serial
            busy = any(self.issued[u] > self.done[u] for u in ("load", "store"))
            return i if i < len(self.program) and self.units[i] == unit and not busy else None
        k = self.issued[unit]
        return self.queue[unit][k] if k < len(self.queue[unit]) else None

    def drive(self, cycle: int) -> None:
        for unit in ("load", "store"):
            cmd = f"{unit}_cmd"
            if self.offered[unit] is None:
                i = self._next(unit)
                if i is not None and not (self.gap and self.rng.random() < self.gap):
                    self.offered[unit] = i
                    getattr(self.dut, f"{cmd}__payload").value = self.program[i].encode()
                    if self.serial:
                        self.next_serial += 1
            getattr(self.dut, f"{cmd}__valid").value = int(self.offered[unit] is not None)

    def sample(self, cycle: int) -> None:
        dut = self.dut
        if int(dut.load_checked.value):
            self.rec.checked[self.gathers[self.n_checked]] = cycle
            self.n_checked += 1
        for unit in ("load", "store"):
            if int(getattr(dut, f"{unit}_done").value):
                i = self.queue[unit][self.done[unit]]
                self.rec.ends[i] = cycle
                if unit == "load":
                    self.rec.errors[i] = bool(int(dut.load_error.value))
                self.done[unit] += 1
            i = self.offered[unit]
            if i is not None and int(getattr(dut, f"{unit}_cmd__ready").value):
                self.rec.starts[i] = cycle
                self.offered[unit] = None
                self.issued[unit] += 1


async def run_cocotb_program(dut, cfg: AccelConfig, program: list[Instruction],
                             images: Images, *, latency: int = 4, interval: int = 1,
                             req_stall: float = 0.0, rsp_stall: float = 0.0, gap: float = 0.0,
                             seed: int = 1, serial: bool = True,
                             max_cycles: int = 100_000) -> RunRecord:
    """Run ``program`` on a :class:`DmaPair` DUT with Python DRAM and SRAM models holding a copy
    of ``images``; return the final images and per-instruction cycles."""
    from cocotb.clock import Clock  # noqa: PLC0415 (cocotb only inside a simulation)
    from cocotb.triggers import ReadOnly, RisingEdge  # noqa: PLC0415

    state = images.copy()
    rec = RunRecord(final=state)
    rng = random.Random(seed)
    agents = [
        CocotbCmdDriver(dut, program, rec, serial=serial, gap=gap, rng=random.Random(seed + 1)),
        CocotbDramPort(dut, "load_dram", cfg, state.dram, latency=latency, interval=interval,
                       req_stall=req_stall, rsp_stall=rsp_stall, rng=random.Random(rng.random())),
        CocotbDramPort(dut, "store_dram", cfg, state.dram, latency=latency, interval=interval,
                       req_stall=req_stall, rsp_stall=rsp_stall, rng=random.Random(rng.random())),
        CocotbSramPorts(dut, cfg, state,
                        writes={"load_sp_wr": Space.SP, "load_acc_wr": Space.ACC},
                        reads={"load_acc_rd": Space.ACC, "store_sp_rd": Space.SP,
                               "store_acc_rd": Space.ACC}),
    ]
    driver = agents[0]
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    # Every input starts at 0 (Icarus would otherwise show Z in masked-off data bytes).
    for name in ("load_cmd__valid", "store_cmd__valid", "load_cmd__payload",
                 "store_cmd__payload", "load_dram__req__ready", "load_dram__rsp__valid",
                 "load_dram__rsp__payload", "store_dram__req__ready", "store_dram__rsp__valid",
                 "store_dram__rsp__payload", "load_acc_rd__data", "store_sp_rd__data",
                 "store_acc_rd__data"):
        getattr(dut, name).value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cycle = 0
    while not driver.finished:
        await RisingEdge(dut.clk)
        cycle += 1
        for a in agents:
            a.drive(cycle)
        await ReadOnly()
        for a in agents:
            a.sample(cycle)
        assert cycle < max_cycles, f"program not finished within {max_cycles} cycles"
    await RisingEdge(dut.clk)
    return rec
