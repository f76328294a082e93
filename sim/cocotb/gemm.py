"""Bench pieces for the GEMM core, shared by the Amaranth-simulator tests, the cocotb testbenches
and ``llmaccel bench gemm``.

* :class:`GemmHarness` — the core with its own SP and ACC memories and a host port to load and
  read them (the DUT of the cocotb benches; the Amaranth tests preload the memories instead).
* Stimulus — :func:`random_state`, :func:`random_gemm`, :func:`gpt_shapes`, :class:`GemmJob`.
* Model — :func:`golden_run` (``GoldenMachine`` on the same state and program) and
  :class:`~llmaccel.sim.golden.timing_gemm.GemmTimeline` for the cycles.
* Scoreboard — :func:`check_acc` (results and guard bands) and :func:`check_timing`.
* cocotb driver, monitor and host-port helpers — :class:`CmdDriver`, :class:`PortMonitor`,
  :func:`load_memories`, :func:`read_acc`, :func:`run_job` (cocotb is imported lazily).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.gemm_core import GemmCore
from llmaccel.hw.isa import GemmInstr, Instruction, Opcode
from llmaccel.hw.ports import acc_row_layout, sp_row_layout
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.timing_gemm import GemmTimeline, gemm_cycles, gemm_latency
from llmaccel.sw.asm import instr

__all__ = [
    "HARNESS_CONFIGS",
    "CmdDriver",
    "GemmHarness",
    "GemmJob",
    "PortMonitor",
    "check_acc",
    "check_timing",
    "expected_events",
    "golden_run",
    "gpt_shapes",
    "harness_config",
    "harness_name",
    "isolated_cycles",
    "model_cycles",
    "payload_of",
    "random_gemm",
    "random_state",
    "run_job",
    "simulate",
    "written_mask",
]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def harness_config(size: int | tuple[int, int]) -> AccelConfig:
    """The configs the cocotb benches and ``bench gemm`` build, so they share Verilator builds.

    SRAMs are large enough for the tiny GPT's prefill shapes at P = 128 and small enough to keep
    builds and memory loads quick.
    """
    R, C = (size, size) if isinstance(size, int) else size
    W = max(R, C)
    if W <= 4:
        sp, acc = 16 * 1024, 4 * 1024
    else:
        sp, acc = 64 * 1024, 32 * 1024
    return AccelConfig(name=f"gemm{R}x{C}", array_rows=R, array_cols=C, vector_lanes=W,
                       sp_bytes=sp, acc_elems=acc)


HARNESS_CONFIGS = {4: harness_config(4), 8: harness_config(8), 16: harness_config(16)}


def harness_name(cfg: AccelConfig) -> str:
    """Top-level module name of a harness build (the tests and the benchmark share it)."""
    return f"gemm_harness_{cfg.array_rows}x{cfg.array_cols}"


class GemmHarness(wiring.Component):
    """A :class:`~llmaccel.hw.gemm_core.GemmCore` with an SP and an ACC memory of its own.

    The SP memory has the core's two read ports and a host write port; the ACC memory the
    core's read and write ports plus a host write port and a host read port (one-cycle latency).
    The host ports are for use while the core is idle. ``sp_init`` / ``acc_init`` (element
    arrays) preload the memories, which the Amaranth-simulator tests use instead of the host
    ports; the memories are ``self.sp`` and ``self.acc``.

    Ports
    -----
    i_cmd, o_done, o_busy:
        The core's.
    i_overlap: In(1)
        Fold overlap on (1) or off (0), sampled per fold.
    host_sp_wen, host_sp_addr, host_sp_wdata: In
        Write one SP row.
    host_acc_wen, host_acc_addr, host_acc_wdata: In
        Write one ACC row.
    host_acc_raddr: In; host_acc_rdata: Out
        Read one ACC row (data the cycle after the address).
    """

    def __init__(self, cfg: AccelConfig, *, sp_init=None, acc_init=None):
        self.cfg = cfg
        W = cfg.row_width
        sp_rows = [] if sp_init is None else \
            [list(r) for r in np.asarray(sp_init, dtype=np.int64).reshape(-1, W)]
        acc_rows = [] if acc_init is None else \
            [list(r) for r in np.asarray(acc_init, dtype=np.int64).reshape(-1, W)]
        self.sp = memory.Memory(shape=sp_row_layout(cfg), depth=cfg.sp_rows, init=sp_rows)
        self.acc = memory.Memory(shape=acc_row_layout(cfg), depth=cfg.acc_rows, init=acc_rows)
        self.core = GemmCore(cfg, runtime_overlap=True)
        sp_aw = len(self.core.rd_a.addr)
        acc_aw = len(self.core.rd_c.addr)
        super().__init__({
            "i_cmd": In(stream.Signature(GemmInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "i_overlap": In(1),
            "host_sp_wen": In(1),
            "host_sp_addr": In(sp_aw),
            "host_sp_wdata": In(sp_row_layout(cfg)),
            "host_acc_wen": In(1),
            "host_acc_addr": In(acc_aw),
            "host_acc_wdata": In(acc_row_layout(cfg)),
            "host_acc_raddr": In(acc_aw),
            "host_acc_rdata": Out(acc_row_layout(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.sp = self.sp
        m.submodules.acc = self.acc
        wiring.connect(m, self.sp.read_port(), core.rd_a)
        wiring.connect(m, self.sp.read_port(), core.rd_b)
        wiring.connect(m, self.acc.read_port(), core.rd_c)
        wiring.connect(m, self.acc.write_port(granularity=1), core.wr_c)
        wiring.connect(m, wiring.flipped(self.i_cmd), core.i_cmd)
        m.d.comb += [
            self.o_done.eq(core.o_done),
            self.o_busy.eq(core.o_busy),
            core.i_overlap.eq(self.i_overlap),
        ]
        sp_w = self.sp.write_port()
        acc_w = self.acc.write_port()
        acc_r = self.acc.read_port()
        m.d.comb += [
            sp_w.addr.eq(self.host_sp_addr),
            sp_w.data.eq(self.host_sp_wdata),
            sp_w.en.eq(self.host_sp_wen),
            acc_w.addr.eq(self.host_acc_addr),
            acc_w.data.eq(self.host_acc_wdata),
            acc_w.en.eq(self.host_acc_wen),
            acc_r.addr.eq(self.host_acc_raddr),
            self.host_acc_rdata.eq(acc_r.data),
        ]
        return m


# ------------------------------------------------------------------------------------------
# Stimulus


def random_state(rng: np.random.Generator, cfg: AccelConfig, *, extreme: bool = False,
                 acc_near_max: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Random SP (int8) and ACC (int32) contents. ``extreme``: SP holds only −128 and 127.
    ``acc_near_max``: ACC values within 2^20 of INT32_MAX or INT32_MIN, so accumulating wraps."""
    if extreme:
        sp = rng.choice(np.array([-128, 127], dtype=np.int8), size=cfg.sp_bytes)
    else:
        sp = rng.integers(-128, 128, size=cfg.sp_bytes, dtype=np.int8)
    if acc_near_max:
        off = rng.integers(0, 1 << 20, size=cfg.acc_elems)
        acc = np.where(rng.random(cfg.acc_elems) < 0.5, INT32_MAX - off, INT32_MIN + off)
        acc = acc.astype(np.int32)
    else:
        acc = rng.integers(INT32_MIN, INT32_MAX, size=cfg.acc_elems, dtype=np.int64,
                           endpoint=True).astype(np.int32)
    return sp, acc


def _place(rng: random.Random, total_rows: int, rows: int) -> int:
    """A random start row for a region of ``rows`` rows inside ``total_rows``."""
    if rows > total_rows:
        raise ValueError(f"region of {rows} rows does not fit {total_rows} rows")
    return rng.randrange(0, total_rows - rows + 1)


def random_gemm(rng: random.Random, cfg: AccelConfig, m: int, n: int, k: int, *,
                accumulate: int = 0, c_addr: int | None = None, c_stride: int | None = None,
                pad: int = 2) -> Instruction:
    """A GEMM of the given shape at random legal addresses; strides leave up to ``pad`` spare
    rows between blocks (A/B blocks may overlap each other: they are only read)."""
    R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
    mb, nb = -(-m // R) if m else 1, -(-n // C) if n else 1
    a_stride = k + rng.randrange(0, pad + 1)
    b_stride = k + rng.randrange(0, pad + 1)
    a_row = _place(rng, cfg.sp_rows, (mb - 1) * a_stride + k)
    b_row = _place(rng, cfg.sp_rows, (nb - 1) * b_stride + k)
    if c_stride is None:
        c_stride = (n + rng.randrange(0, pad + 1)) * W
    if c_addr is None:
        c_addr = _place(rng, cfg.acc_rows, (mb - 1) * c_stride // W + n) * W
    return instr(Opcode.GEMM, accumulate=accumulate, m=m, n=n, k=k,
                 a_addr=a_row * W, a_stride=a_stride * W, b_addr=b_row * W,
                 b_stride=b_stride * W, c_addr=c_addr, c_stride=c_stride)


def gpt_shapes(prompt: int, *, d_model: int = 64, n_head: int = 4, d_ff: int = 256,
               vocab: int = 256) -> list[tuple[str, int, int, int]]:
    """``(name, M, K, N)`` of the tiny GPT's prefill GEMMs for a prompt of ``prompt`` tokens."""
    hd = d_model // n_head
    return [
        ("qkv", prompt, d_model, 3 * d_model),
        ("attn_proj", prompt, d_model, d_model),
        ("mlp_up", prompt, d_model, d_ff),
        ("mlp_down", prompt, d_ff, d_model),
        ("scores/head", prompt, hd, prompt),
        ("attn_v/head", prompt, prompt, hd),
        ("lm_head", 1, d_model, vocab),
    ]


def payload_of(ins: Instruction) -> data.Const:
    """The ``GemmInstr`` struct value of an instruction (what ``i_cmd.payload`` carries)."""
    return data.Layout.cast(GemmInstr).from_bits(ins.encode())


@dataclass
class GemmJob:
    """A program of GEMMs on an initial state, with the idle cycles the driver inserts before
    offering each instruction (``gaps``) and the overlap mode."""

    cfg: AccelConfig
    sp: np.ndarray
    acc: np.ndarray
    program: list[Instruction]
    gaps: list[int] = field(default_factory=list)
    overlap: bool = True

    def __post_init__(self):
        if not self.gaps:
            self.gaps = [0] * len(self.program)
        if len(self.gaps) != len(self.program):
            raise ValueError(f"gaps must have one entry per instruction, not {len(self.gaps)}")


# ------------------------------------------------------------------------------------------
# Model and scoreboard


def golden_run(job: GemmJob) -> np.ndarray:
    """ACC after the golden model executes the job's program on its initial state."""
    gm = GoldenMachine(job.cfg, check_races=False)
    gm.sp[:] = job.sp
    gm.acc[:] = job.acc
    for ins in job.program:
        gm.execute(ins)
    return gm.acc.copy()


def written_mask(cfg: AccelConfig, program: list[Instruction]) -> np.ndarray:
    """ACC elements the program writes (everything else is a guard band)."""
    R, W = cfg.array_rows, cfg.row_width
    mask = np.zeros(cfg.acc_elems, dtype=bool)
    for ins in program:
        if ins.m == 0 or ins.n == 0:
            continue
        i = np.arange(ins.m)[:, None]
        j = np.arange(ins.n)[None, :]
        mask[ins.c_addr + (i // R) * ins.c_stride + j * W + i % R] = True
    return mask


def check_acc(job: GemmJob, actual: np.ndarray) -> None:
    """Results equal the golden model's, and nothing outside the written elements changed."""
    expected = golden_run(job)
    written = written_mask(job.cfg, job.program)
    actual = np.asarray(actual, dtype=np.int32)
    np.testing.assert_array_equal(actual[~written], job.acc[~written],
                                  err_msg="ACC changed outside the GEMM results (guard band)")
    np.testing.assert_array_equal(actual, expected, err_msg="ACC differs from the golden model")


def expected_events(job: GemmJob, offered: list[int]):
    """The timeline's events for the offered cycles the monitor saw."""
    tl = GemmTimeline(job.cfg, overlap=job.overlap)
    return [tl.issue(o, ins.m, ins.n, ins.k) for o, ins in zip(offered, job.program, strict=True)]


def check_timing(job: GemmJob, offered: list[int], handshakes: list[int],
                 dones: list[int]) -> list[int]:
    """Handshake and done cycles equal :class:`GemmTimeline`'s; returns ``done − handshake −
    gemm_latency`` per instruction (its ``gemm_cycles`` when it found the array idle, see
    :func:`isolated_cycles`)."""
    assert len(dones) == len(job.program), \
        f"{len(dones)} o_done pulses for {len(job.program)} instructions"
    exp = expected_events(job, offered)
    assert handshakes == [e.handshake for e in exp], \
        f"handshakes {handshakes} != model {[e.handshake for e in exp]}"
    assert dones == [e.done for e in exp], f"done cycles {dones} != model {[e.done for e in exp]}"
    lat = gemm_latency(job.cfg)
    return [d - h - lat for d, h in zip(dones, handshakes, strict=True)]


def isolated_cycles(job: GemmJob, handshakes: list[int], dones: list[int]) -> list[int | None]:
    """Measured ``done − handshake − latency`` per instruction, and ``None`` for instructions
    that did not start with the array idle (their interval includes the previous one's)."""
    out: list[int | None] = []
    lat = gemm_latency(job.cfg)
    prev_done = None
    for h, d in zip(handshakes, dones, strict=True):
        out.append(d - h - lat if prev_done is None or h > prev_done else None)
        prev_done = d
    return out


def model_cycles(job: GemmJob) -> list[int]:
    """:func:`gemm_cycles` of every instruction of the job."""
    return [gemm_cycles(job.cfg, i.m, i.n, i.k, overlap=job.overlap) for i in job.program]


# ------------------------------------------------------------------------------------------
# Amaranth simulator side


def simulate(job: GemmJob, *, stall: float = 0.0, seed: int = 0, vcd: str | None = None
             ) -> dict:
    """Run a job on the Amaranth simulator: memories preloaded, ``i_cmd`` driven with
    ``stream_put`` (``stall``: probability of an extra idle cycle before each offer, on top of
    ``job.gaps``), a monitor sampling the ports every cycle. Checks results, guard bands and
    timing against the models; returns the monitor's figures."""
    from amaranth.sim import Simulator  # noqa: PLC0415

    from llmaccel.sim.testing import stream_put  # noqa: PLC0415

    dut = GemmHarness(job.cfg, sp_init=job.sp, acc_init=job.acc)
    rng = random.Random(seed)
    seen: dict = {"offered": [], "handshakes": [], "dones": [], "busy_after": None}
    budget = sum(gemm_cycles(job.cfg, i.m, i.n, i.k, overlap=job.overlap) for i in job.program)
    timeout = 3 * budget + sum(job.gaps) + 200 * len(job.program) + 500

    async def driver(ctx):
        ctx.set(dut.i_overlap, int(job.overlap))
        for ins, gap in zip(job.program, job.gaps, strict=True):
            for _ in range(gap):
                await ctx.tick()
            await stream_put(ctx, dut.i_cmd, payload_of(ins), rng=rng, stall=stall)

    async def monitor(ctx):
        cycle = 0
        offering = False
        async for _, _, valid, ready, done, busy in ctx.tick().sample(
                dut.i_cmd.valid, dut.i_cmd.ready, dut.o_done, dut.o_busy):
            # From the cycle after its handshake to its done cycle, an instruction keeps the
            # unit busy.
            if len(seen["handshakes"]) > len(seen["dones"]):
                assert busy, f"o_busy low in cycle {cycle} with an instruction in flight"
            if done:
                seen["dones"].append(cycle)
            if valid and not offering:
                seen["offered"].append(cycle)
                offering = True
            if valid and ready:
                seen["handshakes"].append(cycle)
                offering = False
            cycle += 1
            if len(seen["dones"]) == len(job.program):
                break
            assert cycle < timeout, f"no o_done after {timeout} cycles"
        seen["busy_after"] = ctx.get(dut.o_busy)
        # A few more cycles: no stray o_done and no stray write may follow.
        for _ in range(job.cfg.array_rows + 2 * job.cfg.array_cols + 4):
            _, _, done = await ctx.tick().sample(dut.o_done)
            assert not done, "o_done pulsed after the last instruction"
        W = job.cfg.row_width
        seen["acc"] = np.array([list(ctx.get(dut.acc.data[r])) for r in range(job.cfg.acc_rows)],
                               dtype=np.int64).reshape(-1).astype(np.int32)
        assert len(seen["acc"]) == job.cfg.acc_rows * W

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    assert seen["busy_after"] == 0, "o_busy still high after the last o_done"
    check_acc(job, seen["acc"])
    seen["cycles"] = check_timing(job, seen["offered"], seen["handshakes"], seen["dones"])
    return seen


# ------------------------------------------------------------------------------------------
# cocotb side (imported lazily: these run inside a simulator)


def _sp_rows(job: GemmJob) -> dict[int, int]:
    """SP rows the program reads, packed as integers (lane 0 in the low byte)."""
    R, C, W = job.cfg.array_rows, job.cfg.array_cols, job.cfg.row_width
    rows: set[int] = set()
    for ins in job.program:
        if ins.m == 0 or ins.n == 0 or ins.k == 0:
            continue
        for blk in range(-(-ins.m // R)):
            base = (ins.a_addr + blk * ins.a_stride) // W
            rows.update(range(base, base + ins.k))
        for blk in range(-(-ins.n // C)):
            base = (ins.b_addr + blk * ins.b_stride) // W
            rows.update(range(base, base + ins.k))
    sp = job.sp.reshape(-1, W).view(np.uint8)
    return {r: int.from_bytes(sp[r].tobytes(), "little") for r in sorted(rows)}


def _acc_rows(job: GemmJob) -> list[int]:
    """ACC rows the program touches plus one guard row on each side of every block."""
    W = job.cfg.row_width
    rows: set[int] = set()
    for ins in job.program:
        if ins.m == 0 or ins.n == 0:
            continue
        for blk in range(-(-ins.m // job.cfg.array_rows)):
            base = (ins.c_addr + blk * ins.c_stride) // W
            rows.update(range(max(0, base - 1), min(job.cfg.acc_rows, base + ins.n + 1)))
    return sorted(rows)


def _pack_acc(row: np.ndarray) -> int:
    return int.from_bytes(np.asarray(row, dtype="<i4").tobytes(), "little")


def _unpack_acc(value: int, W: int) -> np.ndarray:
    return np.frombuffer(value.to_bytes(4 * W, "little"), dtype="<i4").astype(np.int32)


async def load_memories(dut, job: GemmJob) -> list[int]:
    """Write the SP rows the program reads and the ACC rows it touches (plus guard rows)
    through the host ports; returns the ACC rows loaded."""
    from cocotb.triggers import RisingEdge  # noqa: PLC0415

    W = job.cfg.row_width
    for r, value in _sp_rows(job).items():
        dut.host_sp_wen.value = 1
        dut.host_sp_addr.value = r
        dut.host_sp_wdata.value = value
        await RisingEdge(dut.clk)
    dut.host_sp_wen.value = 0
    acc_rows = _acc_rows(job)
    acc = job.acc.reshape(-1, W)
    for r in acc_rows:
        dut.host_acc_wen.value = 1
        dut.host_acc_addr.value = r
        dut.host_acc_wdata.value = _pack_acc(acc[r])
        await RisingEdge(dut.clk)
    dut.host_acc_wen.value = 0
    return acc_rows


async def read_acc(dut, job: GemmJob, rows: list[int]) -> np.ndarray:
    """ACC as the host port reads it: the given rows from the DUT, the rest from the job's
    initial state (rows the program cannot have touched)."""
    from cocotb.triggers import ReadOnly, RisingEdge  # noqa: PLC0415

    W = job.cfg.row_width
    out = job.acc.reshape(-1, W).copy()
    for r in rows:
        dut.host_acc_raddr.value = r
        await RisingEdge(dut.clk)
        await ReadOnly()
        out[r] = _unpack_acc(int(dut.host_acc_rdata.value), W)
        await RisingEdge(dut.clk)
    return out.reshape(-1)


class CmdDriver:
    """Drives ``i_cmd``: for each instruction, ``gap`` idle cycles, then ``valid`` with the
    payload until the handshake (``ready`` sampled in the settled cycle)."""

    def __init__(self, dut):
        self.dut = dut

    async def send(self, program: list[Instruction], gaps: list[int]) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge  # noqa: PLC0415

        dut = self.dut
        for ins, gap in zip(program, gaps, strict=True):
            for _ in range(gap):
                await RisingEdge(dut.clk)
            dut.i_cmd__valid.value = 1
            dut.i_cmd__payload.value = ins.encode()
            while True:
                await ReadOnly()
                taken = int(dut.i_cmd__ready.value) == 1
                await RisingEdge(dut.clk)
                if taken:
                    break
            dut.i_cmd__valid.value = 0


class PortMonitor:
    """Samples ``i_cmd`` and ``o_done`` every cycle: the cycle each instruction is first
    offered, its handshake cycle, and the ``o_done`` cycles (cycle 0 = the first sampled)."""

    def __init__(self, dut):
        self.dut = dut
        self.offered: list[int] = []
        self.handshakes: list[int] = []
        self.dones: list[int] = []
        self.busy_after: int = 0

    async def run(self, n_instructions: int, *, timeout: int) -> None:
        from cocotb.triggers import ReadOnly, RisingEdge  # noqa: PLC0415

        dut = self.dut
        cycle = 0
        offering = False
        while len(self.dones) < n_instructions:
            await ReadOnly()
            valid = int(dut.i_cmd__valid.value)
            ready = int(dut.i_cmd__ready.value)
            if len(self.handshakes) > len(self.dones):
                assert int(dut.o_busy.value), \
                    f"o_busy low in cycle {cycle} with an instruction in flight"
            if int(dut.o_done.value):
                self.dones.append(cycle)
            if valid and not offering:
                self.offered.append(cycle)
                offering = True
            if valid and ready:
                self.handshakes.append(cycle)
                offering = False
            await RisingEdge(dut.clk)
            cycle += 1
            assert cycle < timeout, f"no o_done after {timeout} cycles ({len(self.dones)} seen)"
        # The unit must go idle right after its last done.
        await ReadOnly()
        self.busy_after = int(dut.o_busy.value)
        await RisingEdge(dut.clk)


async def run_job(dut, job: GemmJob, *, check: bool = True) -> dict:
    """Load the job, run its program with a driver and a monitor, check it against the model
    (results, guard bands, handshake and done cycles); return the monitor's figures."""
    import cocotb  # noqa: PLC0415
    from cocotb.triggers import RisingEdge  # noqa: PLC0415

    dut.i_cmd__valid.value = 0
    dut.i_overlap.value = int(job.overlap)
    acc_rows = await load_memories(dut, job)
    await RisingEdge(dut.clk)
    monitor = PortMonitor(dut)
    driver = CmdDriver(dut)
    budget = sum(gemm_cycles(job.cfg, i.m, i.n, i.k, overlap=job.overlap) for i in job.program)
    timeout = 2 * budget + sum(job.gaps) + 100 * len(job.program) + 1000
    mon = cocotb.start_soon(monitor.run(len(job.program), timeout=timeout))
    await driver.send(job.program, job.gaps)
    await mon
    assert monitor.busy_after == 0, "o_busy still high after the last o_done"
    actual = await read_acc(dut, job, acc_rows)
    if check:
        check_acc(job, actual)
    measured = check_timing(job, monitor.offered, monitor.handshakes, monitor.dones)
    return {"handshakes": monitor.handshakes, "dones": monitor.dones, "cycles": measured}

