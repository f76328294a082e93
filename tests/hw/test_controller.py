"""The controller: its decode checker against GoldenMachine (thousands of random words, legal
and illegal), and dispatch behaviour (order, wait masks, queue-full stalls, fences, gather
serialisation, errors mid-program, watchdog) on the whole accelerator in the Amaranth simulator.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Shape, Signal
from amaranth.lib import enum
from amaranth.sim import Simulator

from llmaccel.hw.config import AccelConfig, preset
from llmaccel.hw.instr_checker import InstrChecker, product_operands
from llmaccel.hw.isa import (
    INSTR_BITS,
    OPCODES,
    DecodeError,
    ErrorCode,
    Opcode,
    Space,
    Src2Mode,
    Unit,
    decode,
    encode,
    leaf_fields,
    reserved_mask,
)
from llmaccel.sim.golden.isa_sim import GoldenMachine, MachineError

CFG = preset("tiny")


def _field_value(rng: random.Random, cfg: AccelConfig, name: str, shape) -> object:
    s = Shape.cast(shape)
    if isinstance(shape, type) and issubclass(shape, enum.Flag):
        return rng.randrange(1 << s.width)
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return rng.choice(list(shape))
    lo, hi = ((-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed
              else (0, (1 << s.width) - 1))
    W = cfg.row_width
    leaf = name.rsplit(".", maxsplit=1)[-1]
    sizes = [cfg.sp_bytes, cfg.acc_elems]
    if leaf in ("addr", "sram_addr", "a_addr", "b_addr", "c_addr", "idx_addr"):
        cands = [0, W, rng.randrange(0, cfg.acc_elems, W)] + \
            [x + d for x in sizes for d in (-W * W, -256, -W, -1, 0, 1)] + \
            [rng.randrange(cfg.sp_bytes)]
    elif leaf == "dram_addr":
        cands = [0, 32, cfg.dram_bytes - 64, cfg.dram_bytes - 1, cfg.dram_bytes,
                 rng.randrange(cfg.dram_bytes), hi]
    elif "stride" in leaf:
        cands = [0, 1, W, 2 * W, -W, -1, 4 * W, W * W, 32, -32, 1024,
                 rng.randrange(-4 * W, 4 * W)]
    elif leaf in ("rows", "len", "m", "n", "k"):
        cands = [0, 1, 2, 3, W, W + 1, rng.randrange(1, 64), rng.randrange(1, 600), 4096,
                 hi]
    elif leaf in ("row", "col", "ncols", "kc", "gb_chunk", "slot", "nslots", "gb_addr"):
        cands = [0, 1, 2, rng.randrange(8), cfg.bank_rows - 1, cfg.bank_rows,
                 cfg.cols_per_row - 1, cfg.cols_per_row, cfg.gbuf_chunks, cfg.pim_slots - 1,
                 cfg.pim_slots, cfg.gbuf_bytes - 1, cfg.gbuf_bytes]
    elif leaf == "imm":
        cands = [0, 1, -1, cfg.lut_tables - 1, cfg.lut_tables, 1 << 20, lo, hi]
    elif leaf == "idx_scale":
        cands = [0, 1, 32, 64, rng.randrange(1 << 10)]
    else:
        cands = [0, 1, rng.randrange(lo, hi + 1)]
    if rng.random() < 0.1:
        return rng.randrange(lo, hi + 1)
    v = rng.choice(cands)
    return min(max(v, lo), hi)


def random_word(rng: random.Random, cfg: AccelConfig) -> int:
    """One 256-bit word: mostly well-formed instructions with boundary fields, some with
    reserved bits, bad enum values or illegal opcodes."""
    r = rng.random()
    if r < 0.03:
        return rng.getrandbits(INSTR_BITS)
    if r < 0.05:
        return rng.choice([0x02, 0x07, 0x0B, 0x11, 0x1B, 0x2E, 0x3F]) | \
            (rng.getrandbits(5) << 6)
    op = rng.choice(list(Opcode))
    info = OPCODES[op]
    fields: dict = {}
    for name, shape, _off, _w in leaf_fields(info.fmt):
        top = name.split(".")[0]
        if top not in info.fields:
            continue
        v = _field_value(rng, cfg, name, shape)
        if "." in name:
            fields.setdefault(top, {})[name.split(".")[1]] = v
        else:
            fields[name] = v
    # Keep the golden model's work bounded: DMA transfers of at most 64 Ki elements.
    if info.fmt.__name__ == "DmaInstr" and fields["rows"] * fields["len"] > 1 << 16:
        fields["len"] = rng.randrange(0, 64)
    word = encode(op, wait=rng.randrange(32), **fields)
    r = rng.random()
    if r < 0.08:
        mask = reserved_mask(op)
        bits = [i for i in range(INSTR_BITS) if mask >> i & 1]
        word |= 1 << rng.choice(bits)
    elif r < 0.12 and "src2" in info.fields:
        off = next(o for n, _s, o, _w in leaf_fields(info.fmt) if n == "src2.mode")
        word |= 3 << off
    return word


def golden_verdict(g: GoldenMachine, word: int) -> ErrorCode:
    """What GoldenMachine says about ``word`` (executing it on ``g`` when legal)."""
    try:
        ins = decode(word)
    except DecodeError as e:
        return e.code
    try:
        g.execute(ins, 0)
    except MachineError as e:
        return e.code
    return ErrorCode.NONE


def runtime_gather(cfg: AccelConfig, acc: np.ndarray, word: int) -> bool:
    """The run-time part of a DMA_GATHER check (the load unit's, hw/dma_load.py): True when
    the index at ``idx_addr`` is negative or the transfer from its base leaves DRAM."""
    ins = decode(word)
    index = int(acc[ins.idx_addr])
    if index < 0:
        return True
    if ins.rows == 0 or ins.len == 0:
        return False
    base = ins.dram_addr + index * ins.idx_scale
    size = 4 if ins.space is Space.ACC else 1
    ext = (ins.rows - 1) * ins.dram_stride
    return base + min(0, ext) < 0 or base + max(0, ext) + ins.len * size - 1 >= cfg.dram_bytes


# -------------------------------------------------------------------------------------------
# Decode checker equivalence.
def run_checker(cfg: AccelConfig, words: list[int], *, rng: random.Random | None = None,
                stall: float = 0.0) -> list[tuple[ErrorCode, int, int, int]]:
    """Stream ``words`` through an InstrChecker, with their product operands decoded as the
    controller's fetch FIFO does; return (error, late, work, pc) per word."""
    dut = InstrChecker(cfg)
    top = Module()
    top.submodules.dut = dut
    word, pc = Signal(len(dut.i.payload.word)), Signal(len(dut.i.payload.pc))
    top.d.comb += [dut.i.payload.word.eq(word), dut.i.payload.pc.eq(pc),
                   dut.i.payload.ops.eq(product_operands(top, cfg, word))]
    out: list = []

    async def producer(ctx):
        for i, w in enumerate(words):
            while rng is not None and rng.random() < stall:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(word, w)
            ctx.set(pc, 32 * i)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(out) < len(words):
            ready = rng is None or rng.random() >= stall
            ctx.set(dut.o.ready, ready)
            *_, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if ready and valid:
                out.append((ErrorCode(p.error), p.late, p.work, p.pc))

    sim = Simulator(top)
    sim.add_clock(1e-9)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return out


def _work(cfg: AccelConfig, word: int) -> int:
    ins = decode(word)
    if ins.opcode is Opcode.GEMM:
        return ins.m * ins.n * ins.k
    if ins.opcode is Opcode.PIM_MAC:
        return ins.ncols * cfg.dram_banks * cfg.col_bytes
    if ins.opcode in (Opcode.DMA_LOAD, Opcode.DMA_GATHER, Opcode.DMA_STORE):
        size = 4 if ins.space is Space.ACC else 1
        per_row = size if (ins.opcode is Opcode.DMA_LOAD and ins.bcast) else size * ins.len
        return ins.rows * per_row if ins.len else 0
    return 0


# "rows48": a DRAM whose row count is not a power of two (its top is not one either).
CHECKER_CONFIGS = {"tiny": preset("tiny"), "default": preset("default"),
                   "rows48": preset("tiny").replace(name="rows48", bank_rows=48)}


@pytest.mark.parametrize("name", list(CHECKER_CONFIGS))
def test_checker_matches_golden(name, seed):
    cfg = CHECKER_CONFIGS[name]
    rng = random.Random(seed)
    n = 2500 if name == "tiny" else 800
    words = [random_word(rng, cfg) for _ in range(n)]
    got = run_checker(cfg, words, rng=rng, stall=0.2)
    g = GoldenMachine(cfg, check_races=False)
    nrng = np.random.default_rng(seed)
    g.acc[:] = nrng.integers(-40, 3000, cfg.acc_elems, dtype=np.int32)
    g.acc[nrng.integers(0, cfg.acc_elems, 50)] = -5
    counts: dict = {}
    for i, (w, (err, late, work, pc)) in enumerate(zip(words, got, strict=True)):
        assert pc == 32 * i
        verdict = err
        if err is ErrorCode.NONE or late:
            try:
                ins = decode(w)
            except DecodeError:
                ins = None
            if ins is not None and ins.opcode is Opcode.DMA_GATHER and \
                    runtime_gather(cfg, g.acc, w):
                verdict = ErrorCode.DRAM_RANGE
        want = golden_verdict(g, w)
        counts[want] = counts.get(want, 0) + 1
        assert verdict is want, (f"word {i} {w:#066x}: checker {err.name} (late={late}), "
                                 f"golden {want.name}: {decode(w) if want.value > 2 else ''}")
        if want is ErrorCode.NONE:
            assert work == _work(cfg, w), f"word {i}: work {work} != {_work(cfg, w)}"
    print({k.name: v for k, v in counts.items()})
    # The stimulus must reach every verdict the checker can give.
    for code in ErrorCode:
        if code not in (ErrorCode.WATCHDOG, ErrorCode.PC_RANGE):
            assert counts.get(code, 0) >= (5 if name == "tiny" else 1), code


def boundary_vec_words(cfg: AccelConfig) -> list[int]:
    """Vector instructions whose one operand ends just inside, exactly at or just past either
    end of its SRAM, for every extent a row can have (1 element for a scalar src2, W, W·W for
    a transpose's blocks) and both stride signs. Random words rarely land there."""
    W = cfg.row_width
    size = {Space.SP: cfg.sp_bytes, Space.ACC: cfg.acc_elems}
    ok = {"space": Space.ACC, "addr": 0, "stride": W}
    words = []
    for op, info in OPCODES.items():
        if op is Opcode.VLUTLD or "dst" not in info.fields:
            continue
        modes = list(Src2Mode) if "src2" in info.fields else [Src2Mode.IMM]
        for mode, opnd, space, rows, sign, d in itertools.product(
                modes, ("src1", "dst", "src2"), Space, (1, 3), (1, -1), (-1, 0, 1)):
            if opnd == "src2" and mode is Src2Mode.IMM:
                continue
            ext = (1 if (opnd == "src2" and mode is Src2Mode.SCALAR)
                   else W * W if op is Opcode.VTRANS else W)
            step = 1 if ext == 1 else W
            stride = sign * (W if ext == 1 else ext)
            top = max(0, (rows - 1) * stride)    # highest start above addr
            low = min(0, (rows - 1) * stride)
            # d < 0 or 0: ends inside; d = 1: one step past the top (or below 0).
            if sign > 0:
                addr = size[space] - ext - top + d * step
            else:
                addr = -low - d * step if d else -low
            if not 0 <= addr < 1 << 20:
                continue
            fields = {"dst": dict(ok), "src1": dict(ok), "rows": rows}
            if "src2" in info.fields:
                fields["src2"] = {"mode": mode, **ok}
            if "imm" in info.fields:
                fields["imm"] = 0
            fields[opnd] = {**fields.get(opnd, {}), "space": space, "addr": addr,
                            "stride": stride}
            words.append(encode(op, **fields))
    return words


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_checker_vector_range_boundaries(name):
    cfg = CHECKER_CONFIGS[name]
    words = boundary_vec_words(cfg)
    got = run_checker(cfg, words)
    g = GoldenMachine(cfg, check_races=False)
    counts: dict = {}
    for w, (err, _late, _work, _pc) in zip(words, got, strict=True):
        want = golden_verdict(g, w)
        counts[want] = counts.get(want, 0) + 1
        assert err is want, f"{decode(w)}: checker {err.name}, golden {want.name}"
    assert counts.get(ErrorCode.NONE, 0) > 100 and counts.get(ErrorCode.SRAM_RANGE, 0) > 100


# -------------------------------------------------------------------------------------------
# Dispatch behaviour on the whole accelerator (the harness of test_accelerator.py).
def _harness():
    spec = importlib.util.spec_from_file_location(
        "llmaccel_accel_harness", Path(__file__).with_name("test_accelerator.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod         # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


H = _harness()


def _run(lines, **kw):
    res, rtl, rep = H.check_program(CFG, H._asm(*lines), **kw)
    return res, rtl, rep


def test_wait_masks_order_and_overlap():
    # A long VRECIP (8 rows × 31 steps); a load without a wait overlaps it, a load waiting for
    # VEC starts after its o_done, a GEMM waiting for LOAD after the second load's o_done.
    _, rtl, _ = _run([
        "vrecip dst=acc:0:4 src1=acc:64:4 rows=8 imm=1000",
        "dma_load space=sp dram_addr=0x400 sram_addr=0 rows=1 len=64",
        "dma_load space=sp dram_addr=0x400 sram_addr=64 rows=1 len=64 wait=vec",
        "gemm m=4 n=4 k=4 a_addr=0 a_stride=0 b_addr=16 b_stride=0 c_addr=256 c_stride=0 "
        "wait=load",
        "halt",
    ], data={0x400: bytes(range(64))})
    vec_done = rtl.dones[Unit.VEC][0]
    l0, l1 = rtl.starts[Unit.LOAD]
    assert l0 < vec_done, "an instruction without a wait must overlap"
    assert l1 > vec_done, "a waiting instruction must start after the awaited o_done"
    assert rtl.starts[Unit.GEMM][0] > rtl.dones[Unit.LOAD][1]
    assert rtl.counters["stall_load"] > 0 and rtl.counters["stall_gemm"] > 0


def test_queue_full_stalls_dispatch():
    # Six vector instructions fill the 4-deep VEC queue: the seventh instruction (a load) is
    # dispatched, in order, only once the second vector instruction has left the queue.
    lines = [f"vadd dst=sp:{64 * i}:4 src1=sp:1024:4 src2=imm imm={i} rows=16" for i in range(6)]
    # The load writes another SP bank than the vector instructions (the bank rule, hw/sram.py).
    bank1 = CFG.sp_bank_rows * CFG.row_width
    _, rtl, rep = _run([*lines, f"dma_load space=sp dram_addr=0x400 sram_addr={bank1} rows=1 "
                        "len=4", "halt"], data={0x400: bytes(4)})
    load = next(ev for ev in rep.events if ev.unit is Unit.LOAD)
    assert CFG.queue_depth == 4
    assert load.dispatch > rtl.starts[Unit.VEC][1]
    assert rtl.starts[Unit.LOAD][0] > rtl.starts[Unit.VEC][1]
    assert rtl.starts[Unit.LOAD][0] < rtl.dones[Unit.VEC][-1], "the load still overlaps"


def test_nop_fence():
    _, rtl, _ = _run([
        "vrecip dst=acc:0:4 src1=acc:64:4 rows=4 imm=1000",
        "nop wait=vec",
        "dma_load space=sp dram_addr=0x400 sram_addr=0 rows=1 len=4",
        "halt",
    ], data={0x400: bytes(4)})
    assert rtl.starts[Unit.LOAD][0] > rtl.dones[Unit.VEC][0]
    assert rtl.counters["retired_ctrl"] == 2


def test_gather_serialises_dispatch():
    acc = np.zeros(CFG.acc_elems, np.int32)
    acc[12] = 2
    _, rtl, rep = _run([
        "vrecip dst=acc:64:4 src1=acc:128:4 rows=4 imm=1000",
        "dma_gather space=sp dram_addr=0x400 sram_addr=0 rows=1 len=8 idx_addr=12 "
        "idx_scale=8 wait=vec",
        f"vadd dst=sp:{CFG.sp_bank_rows * CFG.row_width}:4 src1=sp:128:4 src2=imm imm=1 rows=1",
        "halt",
    ], data={0x400: bytes(range(32))}, acc=acc)
    gather = rtl.starts[Unit.LOAD][0]
    vadd = next(ev for ev in rep.events if ev.ins.opcode is Opcode.VADD)
    # Nothing after the gather is dispatched before its index check (GATHER_START cycles
    # after its handshake), although the VADD waits for nothing.
    assert vadd.dispatch > gather + 3
    assert rtl.starts[Unit.VEC][1] > gather


def test_watchdog_ends_the_run_and_the_machine_restarts():
    prog = H._asm(*[f"vrecip dst=acc:{64 * i}:4 src1=acc:1024:4 rows=8 imm=7" for i in range(6)],
                  "halt")
    image = H.to_binary(prog)
    rtl = H.run_rtl(CFG, image, watchdog=300)
    assert (rtl.status, rtl.error) == (H.Status.ERROR, ErrorCode.WATCHDOG)
    # The run ends once the units have finished what they had accepted.
    assert 300 < rtl.counters["cycles"] < 300 + 2 * 8 * 31 + 50
    assert rtl.error_pc % 32 == 0 and rtl.error_pc <= len(image)
    g = GoldenMachine(CFG)
    g.load_dram(0, image)
    res = g.run(0, trace=True)
    runs = H.run_rtl(CFG, image, base=[0, 0], watchdog=0)
    for r in runs:
        assert r.status == H.Status.DONE
        np.testing.assert_array_equal(r.acc, g.acc)
    assert runs[1].counters["retired_vec"] == 6
    assert res.ok
