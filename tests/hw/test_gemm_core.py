"""hw/gemm_core.py (with hw/systolic_array.py, hw/processing_element.py) on the Amaranth
simulator, plus the timing model in sim/golden/timing_gemm.py.

Every simulated case runs through ``llmaccel.sim.cocotb.gemm.simulate``: the memories are
preloaded with random contents, ``i_cmd`` is driven with ``stream_put`` (random idle cycles when
``stall`` > 0), a monitor records handshake and ``o_done`` cycles, and the scoreboard checks the
whole ACC against ``GoldenMachine`` (everything outside the written elements is a guard band)
and every handshake/done cycle against ``GemmTimeline``.
"""

import random

import numpy as np
import pytest

from llmaccel.hw.config import AccelConfig, preset
from llmaccel.hw.gemm_core import GemmCore
from llmaccel.hw.isa import Opcode
from llmaccel.hw.systolic_array import SystolicArray
from llmaccel.sim.cocotb.gemm import (
    GemmJob,
    golden_run,
    gpt_shapes,
    isolated_cycles,
    model_cycles,
    random_gemm,
    random_state,
    simulate,
    written_mask,
)
from llmaccel.sim.golden.timing_gemm import (
    GemmTimeline,
    gemm_cycles,
    gemm_latency,
    scalesim_cycles,
)
from llmaccel.sim.lint import lint_verilog
from llmaccel.sim.tools import verilog_of
from llmaccel.sw.asm import instr

TINY = preset("tiny")
# Rectangular arrays: the SRAM row width is max(R, C), so A (R lanes) or B (C lanes) uses only
# part of a row.
WIDE = AccelConfig(name="wide", array_rows=2, array_cols=4, vector_lanes=4, sp_bytes=4096,
                   acc_elems=2048)
TALL = AccelConfig(name="tall", array_rows=4, array_cols=2, vector_lanes=4, sp_bytes=4096,
                   acc_elems=2048)
CONFIGS = {"tiny": TINY, "wide": WIDE, "tall": TALL}

def _rngs(seed):
    return random.Random(seed), np.random.default_rng(seed)


def _isolated(cfg, program, overlap):
    """Gaps after each handshake long enough for the previous instruction to finish."""
    return [0] + [gemm_cycles(cfg, i.m, i.n, i.k, overlap=overlap) + gemm_latency(cfg) + 2
                  for i in program[:-1]]


# ------------------------------------------------------------------------------------------
# Timing model


@pytest.mark.parametrize("size", [4, 8, 16])
def test_timing_without_overlap_is_scalesim(size):
    cfg = AccelConfig(array_rows=size, array_cols=size, vector_lanes=size, gemm_overlap=False)
    for m, n, k in [(1, 1, 0), (1, 1, 1), (size + 1, 2 * size, 7), (64, 64, 64), (3, 5, 256)]:
        assert gemm_cycles(cfg, m, n, k) == scalesim_cycles("os", size, size, m, n, k)


def test_timeline_of_an_idle_array_is_cycles_plus_latency():
    for cfg in (TINY, WIDE, TALL, preset("large")):
        for overlap in (True, False):
            for m, n, k in [(0, 3, 5), (3, 0, 0), (1, 1, 0), (5, 9, 3), (9, 5, 17)]:
                ev = GemmTimeline(cfg, overlap).issue(7, m, n, k)
                assert ev.handshake == 7
                assert ev.done - 7 == gemm_cycles(cfg, m, n, k, overlap) + gemm_latency(cfg)


def test_timeline_back_to_back_continues_the_fold_sequence():
    # k >= C with overlap: the second instruction's first fold follows without a bubble, so
    # its done comes exactly (its folds) × k after the first one's.
    tl = GemmTimeline(TINY, overlap=True)
    a = tl.issue(0, 8, 8, 6)
    b = tl.issue(0, 4, 8, 5)
    assert b.handshake == a.last_eof - 1
    assert b.done - a.done == 2 * 5


@pytest.mark.parametrize("size", [8, 16])
def test_utilisation_beats_scalesim_on_the_tiny_gpt(size):
    cfg = AccelConfig(array_rows=size, array_cols=size, vector_lanes=size)
    for prompt in (16, 32, 64, 128):
        for name, m, k, n in gpt_shapes(prompt):
            ours = gemm_cycles(cfg, m, n, k, overlap=True)
            theirs = scalesim_cycles("os", size, size, m, n, k)
            if m <= size and n <= size:
                assert ours == theirs, (name, prompt)   # one fold: nothing to overlap
            else:
                assert ours < theirs, (name, prompt)
    macs = 64 ** 3
    assert macs / (64 * gemm_cycles(preset("default"), 64, 64, 64, overlap=True)) >= 0.9


# ------------------------------------------------------------------------------------------
# Structure and lint


def test_constructor_checks():
    with pytest.raises(ValueError, match="rows must be an integer of at least 2"):
        SystolicArray(1, 4)
    with pytest.raises(ValueError, match="cfg must be an AccelConfig"):
        GemmCore("tiny")


@pytest.mark.parametrize(("cfg", "overlap"), [(TINY, True), (TINY, False), (WIDE, True),
                                              (TALL, True), (preset("default"), True)],
                         ids=["tiny-on", "tiny-off", "wide", "tall", "default"])
def test_verilog_is_lint_clean(cfg, overlap):
    text = verilog_of(GemmCore(cfg.replace(gemm_overlap=overlap)), "gemm_core")
    lint_verilog(text, "gemm_core")
    # The multiplies stay plain 8-bit signed products (DSP inference).
    assert text.count("$signed(a_in) * $signed(b_in)") == cfg.array_rows * cfg.array_cols


# ------------------------------------------------------------------------------------------
# Simulation


@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "no-overlap"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_shape_sweep_cycles_and_results(name, overlap, seed):
    """Shapes around the array size (not multiples, k = 0, m = 0, n = 0), accumulate and
    overwrite, each on an idle array: results exact and cycles = the timing model (= SCALE-Sim
    without overlap)."""
    cfg = CONFIGS[name]
    r, rng = _rngs(seed)
    R, C = cfg.array_rows, cfg.array_cols
    shapes = [(1, 1, 1), (R, C, 0), (R + 1, C - 1, 1), (2 * R - 1, 2 * C + 1, C - 1),
              (R, C, C), (3, 2 * C, 2 * C + 3), (0, 3, 4), (3, 0, 2)]
    sp, acc = random_state(rng, cfg)
    program = [random_gemm(r, cfg, m, n, k, accumulate=i % 2)
               for i, (m, n, k) in enumerate(shapes)]
    job = GemmJob(cfg, sp, acc, program, gaps=_isolated(cfg, program, overlap),
                  overlap=overlap)
    res = simulate(job)
    measured = isolated_cycles(job, res["handshakes"], res["dones"])
    assert measured == model_cycles(job)
    if not overlap:
        assert measured[:6] == [scalesim_cycles("os", R, C, m, n, k) for m, n, k in shapes[:6]]


@pytest.mark.parametrize("stall", [0.0, 0.4], ids=["no-stall", "stall"])
@pytest.mark.parametrize("overlap", [True, False], ids=["overlap", "no-overlap"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_programs_back_to_back(name, overlap, stall, seed):
    """Random sequences offered back to back (or with random valid gaps): K-split accumulate
    chains on one C, empty instructions in between, done pulses in order at the model's
    cycles, ACC equal to the golden model."""
    cfg = CONFIGS[name]
    r, rng = _rngs(seed)
    R, C = cfg.array_rows, cfg.array_cols
    for _ in range(2):
        sp, acc = random_state(rng, cfg, extreme=r.random() < 0.3)
        program = []
        for _ in range(5):
            if program and program[-1].m and r.random() < 0.4:
                p = program[-1]
                program.append(random_gemm(r, cfg, p.m, p.n, r.randrange(0, 2 * C + 2),
                                           accumulate=1, c_addr=p.c_addr,
                                           c_stride=p.c_stride))
            else:
                m = r.choice([0, 1, r.randrange(1, 3 * R + 1)])
                n = r.choice([1, r.randrange(1, 3 * C + 1)])
                k = r.choice([0, 1, C, r.randrange(1, 2 * C + 3)])
                program.append(random_gemm(r, cfg, m, n, k, accumulate=r.randrange(2)))
        job = GemmJob(cfg, sp, acc, program, overlap=overlap)
        simulate(job, stall=stall, seed=r.randrange(1 << 30))


def test_back_to_back_overlap_across_instructions(seed):
    """With k ≥ C, the next instruction's first fold rides on the previous one's eof beat:
    the second done follows the first by exactly its own folds × k."""
    cfg = TINY
    r, rng = _rngs(seed)
    sp, acc = random_state(rng, cfg)
    first = random_gemm(r, cfg, 8, 8, 6)
    second = random_gemm(r, cfg, 4, 8, 5, accumulate=1)
    res = simulate(GemmJob(cfg, sp, acc, [first, second], overlap=True))
    assert res["handshakes"][1] < res["dones"][0]          # accepted while the first drains
    assert res["dones"][1] - res["dones"][0] == 2 * 5


def test_wrapping_accumulate_with_extreme_operands(seed):
    """−128/127 operands accumulated onto ACC values near INT32_MAX/MIN wrap like int32."""
    cfg = TINY
    W = cfg.row_width
    r, rng = _rngs(seed)
    sp, acc = random_state(rng, cfg, extreme=True, acc_near_max=True)
    k = 64
    sp[: 2 * k * W] = -128     # A = B = −128: every product is +16384, every sum +2^20
    first = instr(Opcode.GEMM, accumulate=1, m=6, n=7, k=k, a_addr=0, a_stride=k * W,
                  b_addr=0, b_stride=k * W, c_addr=64 * W, c_stride=8 * W)
    second = random_gemm(r, cfg, 6, 7, 33, accumulate=1, c_addr=64 * W, c_stride=8 * W)
    job = GemmJob(cfg, sp, acc, [first, second], overlap=True)
    # The scenario really wraps: old + 2^20 leaves the int32 range for the values near the top.
    written = written_mask(cfg, [first])
    assert (acc[written].astype(np.int64) + (1 << 20) > np.iinfo(np.int32).max).any()
    simulate(job, stall=0.3, seed=seed)


def test_k_zero_writes_zero_or_keeps_old_value(seed):
    """k = 0: overwrite writes zeros, accumulate leaves the old values (and still pulses)."""
    cfg = TINY
    W = cfg.row_width
    r, rng = _rngs(seed)
    sp, acc = random_state(rng, cfg)
    over = random_gemm(r, cfg, 5, 6, 0, accumulate=0, c_addr=16 * W, c_stride=8 * W)
    keep = random_gemm(r, cfg, 7, 3, 0, accumulate=1, c_addr=64 * W, c_stride=8 * W)
    job = GemmJob(cfg, sp, acc, [over, keep], overlap=True)
    expected = golden_run(job)
    assert (expected[written_mask(cfg, [over])] == 0).all()
    assert (expected[written_mask(cfg, [keep])] == acc[written_mask(cfg, [keep])]).all()
    assert (acc[written_mask(cfg, [over])] != 0).any()      # zeros must really be written
    simulate(job)


def test_accumulate_reads_the_row_written_in_the_same_cycle(seed):
    """The first column read of a fold can meet the last column written by the previous fold
    (eof beats exactly C apart); the core forwards the written value, so the SRAM port need
    not be transparent."""
    cfg = TINY
    R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
    _, rng = _rngs(seed)
    sp, acc = random_state(rng, cfg)
    row = 100
    first = instr(Opcode.GEMM, m=R, n=C, k=C + 1, a_addr=0, a_stride=64 * W, b_addr=64 * W,
                  b_stride=64 * W, c_addr=row * W, c_stride=64 * W)
    # Its column C−1 is the first one drained, at ACC row `row`: the first fold's column 0.
    second = instr(Opcode.GEMM, accumulate=1, m=R, n=C, k=C, a_addr=200 * W, a_stride=64 * W,
                   b_addr=300 * W, b_stride=64 * W, c_addr=(row - C + 1) * W, c_stride=64 * W)
    res = simulate(GemmJob(cfg, sp, acc, [first, second], overlap=True))
    assert res["dones"][1] - res["dones"][0] == C   # the drains really are back to back
