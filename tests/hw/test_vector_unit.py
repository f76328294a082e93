"""Vector unit in the Amaranth simulator: bit-exact against GoldenMachine, cycle-exact against
vec_cycles, on the `tiny` preset (W = 4) with every lane count, and on W = 8 / W = 16.

The stimulus, model, scoreboard and simulator driver/monitor are shared with the cocotb bench
(llmaccel.sim.cocotb.vector_unit). Every instruction's whole SP and ACC are compared after its
o_done, so every destination is checked together with everything around it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from llmaccel.hw.config import AccelConfig, preset
from llmaccel.hw.isa import Opcode, Space, Src2Mode
from llmaccel.hw.vec_divider import VecDivider
from llmaccel.hw.vec_isqrt import VecIsqrt
from llmaccel.hw.vec_requant import VecRequant, clamp, requant_prepare
from llmaccel.hw.vector_unit import VectorUnit
from llmaccel.sim.cocotb.vector_unit import (
    Case,
    VecModel,
    VecStimulus,
    check_composite,
    edge_cases,
    layernorm_case,
    run_amaranth,
    softmax_case,
)
from llmaccel.sim.golden import numerics as nx
from llmaccel.sim.golden.timing_vec import vec_cycles
from llmaccel.sim.lint import lint_verilog
from llmaccel.sim.tools import verilog_of
from llmaccel.sw.asm import instr

#: Generated-code warnings waived for this unit, with the reason (see the report / docs).
LINT_WAIVERS = {
    "WIDTHEXPAND": "Yosys's Verilog writer leaves operands of mixed width (narrow constants, "
                   "signed operands of arithmetic and comparisons); Verilog extends them as "
                   "Amaranth's semantics require.",
    "WIDTHTRUNC": "Yosys's Verilog writer assigns wider expressions to narrower wires where "
                  "Amaranth truncates by definition (and writes `!x` for `x == 0`).",
    "DECLFILENAME": "Amaranth names submodules `top.sub`; one generated file holds them all.",
}

TINY = preset("tiny")

#: Soak tests run only under `make soak` (LLMACCEL_SOAK=1), also when pytest is run unfiltered.
soak_only = pytest.mark.skipif(os.environ.get("LLMACCEL_SOAK") != "1",
                               reason="soak test: set LLMACCEL_SOAK=1")


def _small(cfg: AccelConfig, **changes) -> AccelConfig:
    """``cfg`` with 256-row memories (fast to initialise and read back)."""
    W = cfg.row_width
    return cfg.replace(sp_bytes=256 * W, acc_elems=256 * W, **changes)


def _run_case(cfg: AccelConfig, case: Case, rng=None, stall: float = 0.0):
    expected = case.expected(cfg)
    run = run_amaranth(cfg, case.sp, case.acc, case.program, expected, rng=rng, stall=stall)
    assert run.scoreboard.finished()
    np.testing.assert_array_equal(run.sp, expected[-1].sp)
    np.testing.assert_array_equal(run.acc, expected[-1].acc)
    return run


def _run_random(cfg: AccelConfig, seed: int, n: int, stall: float):
    rng = random.Random(seed)
    stim = VecStimulus(cfg, rng)
    sp, acc = stim.memories()
    program, expected = stim.program(VecModel(cfg, sp, acc), n)
    run = run_amaranth(cfg, sp, acc, program, expected, rng=rng, stall=stall)
    assert run.scoreboard.finished()
    np.testing.assert_array_equal(run.sp, expected[-1].sp)
    np.testing.assert_array_equal(run.acc, expected[-1].acc)
    ops = {op for op, _, _ in run.scoreboard.cycles}
    assert ops == {op.name for op in Opcode if op.name.startswith("V")}, ops
    # o_busy is high for exactly vec_cycles per instruction (the cycle model's busy count).
    assert run.busy_cycles == sum(e.cycles for e in expected)
    return run


# ---------------------------------------------------------------------------------------------
# Parts

def test_constructors_reject_bad_arguments():
    with pytest.raises(ValueError, match="cfg must be an AccelConfig"):
        VectorUnit("tiny")
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        VecRequant(0)


def test_requant_matches_numerics(seed):
    rng = random.Random(seed)
    ts = [0, 1, -1, 2, -2, 3, -3, (1 << 62), -(1 << 62), nx.INT32_MIN * nx.INT32_MAX,
          nx.INT32_MAX, nx.INT32_MIN, 255, -129, (1 << 40) + (1 << 39)]
    ts += [rng.randint(-(1 << 62), 1 << 62) for _ in range(5)]
    dut = VecRequant(len(ts))
    # requant_prepare, the stage before, evaluated by Amaranth itself
    t_in = Signal(signed(64))
    s_in = Signal(6)
    prep = requant_prepare(t_in, s_in)

    async def bench(ctx):
        for to_acc, bits in ((0, 8), (1, 32)):
            ctx.set(dut.i_to_acc, to_acc)
            for shift in range(64):
                ctx.set(s_in, shift)
                us = []
                for t in ts:
                    ctx.set(t_in, t)
                    us.append(ctx.get(prep))
                ctx.set(dut.i_u, us)
                ctx.set(dut.i_shift, shift)
                got = [ctx.get(dut.o_out[j]) for j in range(len(ts))]
                want = nx.sat(nx.rshift_round(np.array(ts, np.int64), shift), bits)
                assert got == want.tolist(), (shift, bits)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("shape", [signed(64), signed(33), signed(17), unsigned(16),
                                   unsigned(40), signed(8)])
def test_clamp_matches_clip_at_every_edge(shape):
    # vec_requant.clamp tests the bits above the sign instead of comparing: check it at both
    # edges of int8, int16 and int32, one either side, and at the ends of the input's range.
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
        else (0, (1 << shape.width) - 1)
    values = ([lo, hi, 0, 1, -1]
              + [e + d for b in (8, 16, 32) for e in (-(1 << (b - 1)), (1 << (b - 1)) - 1)
                 for d in (-1, 0, 1)])
    values = sorted({v for v in values if lo <= v <= hi})
    x = Signal(shape)
    outs = {b: Signal(signed(b)) for b in (8, 16, 32)}
    m = Module()
    m.d.comb += [o.eq(clamp(x, b)) for b, o in outs.items()]

    async def bench(ctx):
        for v in values:
            ctx.set(x, v)
            for b, o in outs.items():
                assert ctx.get(o) == min(max(v, -(1 << (b - 1))), (1 << (b - 1)) - 1), (v, b)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("unit", ["recip", "isqrt"])
def test_iterative_units_match_numerics(unit, seed):
    """Exact results, o_valid exactly STEPS cycles after i_start, back-to-back starts."""
    rng = random.Random(seed)
    lanes = 8
    edges = [0, -1, nx.INT32_MIN, 1, 2, 3, nx.INT32_MAX, nx.INT32_MAX - 1, 46340 ** 2,
             46340 ** 2 - 1, 46340 ** 2 + 1, 65535, 65536]
    values = edges + [rng.randint(nx.INT32_MIN, nx.INT32_MAX) for _ in range(27 - len(edges))]
    values += [rng.randint(0, (1 << rng.randint(1, 31)) - 1) for _ in range(5)]   # 32 in all
    batches = [values[i:i + lanes] for i in range(0, len(values), lanes)]
    nums = [0, 1, nx.INT32_MAX, 1 << 24, rng.randint(0, nx.INT32_MAX)]
    dut = VecDivider(lanes) if unit == "recip" else VecIsqrt(lanes)
    steps = dut.STEPS
    data_in = dut.i_den if unit == "recip" else dut.i_data
    data_out = dut.o_quot if unit == "recip" else dut.o_root

    async def bench(ctx):
        for k, batch in enumerate(batches * (len(nums) if unit == "recip" else 1)):
            num = nums[k // len(batches)] if unit == "recip" else 0
            ctx.set(data_in, batch)
            if unit == "recip":
                ctx.set(dut.i_num, num)
            ctx.set(dut.i_start, 1)
            await ctx.tick()
            ctx.set(dut.i_start, 0)
            for _ in range(steps - 1):
                assert not ctx.get(dut.o_valid)
                await ctx.tick()
            assert ctx.get(dut.o_valid)
            got = [ctx.get(data_out[j]) for j in range(lanes)]
            a = np.array(batch, np.int64)
            want = nx.recip(a, num) if unit == "recip" else nx.isqrt(a)
            assert got == want.tolist(), (num, batch)
            # The next start coincides with this o_valid (back to back).

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# ---------------------------------------------------------------------------------------------
# The unit: random programs

@pytest.mark.parametrize("stall", [0.0, 0.3], ids=["back_to_back", "random_gaps"])
def test_random_program_tiny(stall, seed):
    _run_random(TINY, seed, 120, stall)


@pytest.mark.parametrize("lanes", [2, 1])
def test_random_program_fewer_lanes(lanes, seed):
    """A row in W / lanes beats."""
    _run_random(TINY.replace(vector_lanes=lanes), seed, 80, 0.2)


def test_random_program_default_width(seed):
    """W = 8 (the default preset's row width, with small memories): deeper reduction trees."""
    _run_random(_small(preset("default")), seed, 100, 0.2)


# ---------------------------------------------------------------------------------------------
# The unit: directed corners and the composites

EDGE_NAMES = [c.name for c in edge_cases(TINY)]


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_edge_case_tiny(name, seed):
    (case,) = [c for c in edge_cases(TINY, seed) if c.name == name]
    _run_case(TINY, case, random.Random(seed), 0.2)


def test_scalar_in_place_many_beats(seed):
    """W = 8, one lane: a row takes 8 beats, more than the pipeline depth, so a SCALAR operand
    inside the destination row must be read once, before the row's first write."""
    cfg = _small(preset("default"), vector_lanes=1)
    (case,) = [c for c in edge_cases(cfg, seed) if c.name == "scalar_in_place"]
    _run_case(cfg, case)


@pytest.mark.parametrize("constant", [False, True], ids=["random", "zero_variance"])
def test_layernorm_composite(constant, seed):
    case = layernorm_case(TINY, random.Random(seed), features=8, constant=constant)
    run = _run_case(TINY, case)
    check_composite(case, run.sp, run.acc, TINY.row_width)


@pytest.mark.parametrize("equal", [False, True], ids=["random", "all_equal"])
def test_softmax_composite(equal, seed):
    case = softmax_case(TINY, random.Random(seed), keys=8, equal=equal)
    run = _run_case(TINY, case)
    check_composite(case, run.sp, run.acc, TINY.row_width)


# ---------------------------------------------------------------------------------------------
# Timing

def _sweep_program(cfg: AccelConfig) -> list:
    W = cfg.row_width
    acc = {"space": Space.ACC, "stride": W}
    prog = []
    for rows in (0, 1, 2, 5, 9):
        for op in Opcode:
            if not op.name.startswith("V") or op is Opcode.VLUTLD:
                continue
            f = {"rows": rows, "src1": {**acc, "addr": 0}, "dst": {**acc, "addr": 16 * W}}
            if op in (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX):
                if rows == 0:
                    continue
                for h in (0, 1):
                    prog.append(instr(op, horizontal=h, **f))
                continue
            if op is Opcode.VTRANS:
                f = {"rows": min(rows, 2), "src1": {**acc, "addr": 0, "stride": W * W},
                     "dst": {**acc, "addr": 16 * W, "stride": W * W}}
            elif op in (Opcode.VADD, Opcode.VMUL):
                f["src2"] = {"mode": Src2Mode.SCALAR, "space": Space.SP, "addr": 3,
                             "stride": 1}
            prog.append(instr(op, **f))
    prog.append(instr(Opcode.VLUTLD, src1={"space": Space.ACC, "addr": 0}, imm=0))
    return prog


@pytest.mark.parametrize("lanes", [4, 2, 1])
def test_cycles_equal_vec_cycles_sweep(lanes, seed):
    """Every opcode over a sweep of row counts (and horizontal); the scoreboard asserts that
    each instruction's measured cycles equal vec_cycles."""
    cfg = _small(TINY, vector_lanes=lanes)
    rng = random.Random(seed)
    sp = np.array([rng.randint(-128, 127) for _ in range(cfg.sp_bytes)], np.int8)
    acc = np.array([rng.randint(-5000, 5000) for _ in range(cfg.acc_elems)], np.int32)
    program = _sweep_program(cfg)
    run = _run_case(cfg, Case("sweep", sp, acc, program), rng, 0.0)
    assert len(run.scoreboard.cycles) == len(program)
    assert all(got == want for _, got, want in run.scoreboard.cycles)


def test_vec_cycles_formula():
    """The documented formulas (docs/vector_unit.md) for a few instructions."""
    cfg = TINY.replace(vector_lanes=2)                     # W = 4, 2 beats per row
    acc = {"space": Space.ACC, "addr": 0, "stride": 4}
    assert vec_cycles(cfg, instr(Opcode.VADD, rows=3, src1=acc, dst=acc)) == 3 * 2 + 6
    assert vec_cycles(cfg, instr(Opcode.VRECIP, rows=3, src1=acc, dst=acc)) == 3 * 2 * 31 + 6
    assert vec_cycles(cfg, instr(Opcode.VISQRT, rows=1, src1=acc, dst=acc)) == 2 * 16 + 6
    assert vec_cycles(cfg, instr(Opcode.VREDSUM, rows=4, src1=acc, dst=acc)) == 4 * 2 + 5
    assert vec_cycles(cfg, instr(Opcode.VARGMAX, rows=4, src1=acc, dst=acc,
                                 horizontal=1)) == 4 * 2 + 5 + 2
    assert vec_cycles(cfg, instr(Opcode.VTRANS, rows=2, src1=acc, dst=acc)) == 3 * 4 + 3
    assert vec_cycles(cfg, instr(Opcode.VLUTLD, src1=acc, imm=0)) == 64 + 2
    assert vec_cycles(cfg, instr(Opcode.VMUL, rows=0, src1=acc, dst=acc)) == 1


# ---------------------------------------------------------------------------------------------
# Verilog

@pytest.mark.parametrize("lanes", [4, 2])
def test_verilog_lint_clean(lanes):
    cfg = TINY.replace(vector_lanes=lanes)
    lint_verilog(verilog_of(VectorUnit(cfg), "vector_unit"), "vector_unit",
                 extra_waivers=LINT_WAIVERS)


# ---------------------------------------------------------------------------------------------
# Soak (make soak)

@pytest.mark.parametrize(("name", "lanes"), [("tiny", 4), ("tiny", 1), ("default", 8),
                                             ("default", 2), ("large", 16), ("large", 2)])
@pytest.mark.slow
@soak_only
def test_soak_random_and_edges(name, lanes, seed):
    cfg = _small(preset(name), vector_lanes=lanes)
    for k in range(3):
        _run_random(cfg, seed + k, 300, 0.2 * k)
    for case in edge_cases(cfg, seed):
        _run_case(cfg, case)
    rng = random.Random(seed)
    for case in (layernorm_case(cfg, rng, 16), layernorm_case(cfg, rng, 16, constant=True),
                 softmax_case(cfg, rng, 16), softmax_case(cfg, rng, 16, equal=True)):
        run = _run_case(cfg, case)
        check_composite(case, run.sp, run.acc, cfg.row_width)
