"""DMA engines (hw/dma_load.py, hw/dma_store.py) in the Amaranth simulator, against GoldenMachine
(every memory, guard bands around every destination) and sim/golden/timing_dma.py (every
instruction's cycles), with the behavioural DRAM (hw/dram_responder.py). Tiny preset unless
noted; the bench pieces are shared with the cocotb bench (sim/cocotb/dma.py)."""

import itertools
import os
import random

import numpy as np
import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.dma_load import GATHER_START, DmaLoad, load_window_columns
from llmaccel.hw.dma_store import DmaStore, store_window_beats
from llmaccel.hw.dram_responder import DramResponder
from llmaccel.hw.isa import Opcode, Space
from llmaccel.sim.cocotb.dma import (
    check_run,
    gather_case,
    golden_run,
    random_images,
    random_transfer,
    run_amaranth,
)
from llmaccel.sim.golden.dram_model import DramModel
from llmaccel.sim.golden.timing_dma import (
    ChannelDram,
    FixedLatencyDram,
    dma_cycles,
    dma_end,
    dma_timing,
    load_plan,
    store_plan,
)
from llmaccel.sim.lint import lint_verilog
from llmaccel.sim.tools import verilog_of
from llmaccel.sw.asm import instr

CFG = preset("tiny")
W = CFG.row_width

#: Warning categories Amaranth's Verilog generator produces by construction in these designs
#: (see the report; candidates for sim.lint.WAIVERS).
LINT_WAIVERS = {
    "DECLFILENAME": "Amaranth writes every submodule into the top's file as module `top.sub`.",
    "WIDTHEXPAND": "Yosys's Verilog backend leaves operand extension to Verilog's sizing rules "
                   "(e.g. `a + b` of different widths, comparisons with short constants).",
    "WIDTHTRUNC": "Yosys's Verilog backend truncates by assignment (e.g. a shifter's wide "
                  "result into its slice, `!x` on a multi-bit x).",
    "CASEINCOMPLETE": "Amaranth's FSM lowering emits `casez (fsm_state)` with arms only for "
                      "the states that assign a signal; the default is assigned before it.",
}


def run_check(program, *, seed, images=None, latency=4, interval=1, stall=0.0, gap=0.0,
              serial=True, outstanding=32, timing=True, cfg=CFG):
    images = images if images is not None else random_images(cfg, np.random.default_rng(seed))
    expected = golden_run(cfg, images, program)
    rec = run_amaranth(cfg, program, images, latency=latency, interval=interval,
                       req_stall=stall, rsp_stall=stall, cmd_gap=gap, seed=seed, serial=serial,
                       outstanding=outstanding)
    check_run(cfg, program, images, expected, rec,
              timing={"latency": latency, "interval": interval, "outstanding": outstanding}
              if timing else None)
    return rec, expected


def sweep(op, space, rng):
    """Every combination of DRAM byte offset in a column, SRAM lane offset and length class,
    with strides cycling through positive, negative, zero (overlapping rows) and one column."""
    s = 4 if space is Space.ACC else 1
    sram_size = CFG.acc_elems if space is Space.ACC else CFG.sp_bytes
    program = []
    combos = itertools.product((1, W - 1, W + 1, 2 * W + 3, 9), (0, 1, 30, 31), (0, 1, W - 1))
    for k, (n, doff, soff) in enumerate(combos):
        rows = 1 + k % 3
        dstride = (n * s + 5, -(n * s) - 3, 0, 32)[k % 4]
        sstride = (n + 1, -(n + 2), W, 0)[(k // 4) % 4]
        bcast = int(op is Opcode.DMA_LOAD and k % 5 == 0)
        dext, sext = (rows - 1) * dstride, (rows - 1) * sstride
        col = rng.randrange(-min(0, dext) // 32 + 1, (CFG.dram_bytes - max(0, dext)) // 32 - 40)
        row = rng.randrange(-min(0, sext) // W + 1, (sram_size - max(0, sext)) // W - 20)
        fields = {"space": space, "dram_addr": col * 32 + doff, "dram_stride": dstride,
                  "sram_addr": row * W + soff, "sram_stride": sstride, "rows": rows, "len": n}
        if op is Opcode.DMA_LOAD:
            fields["bcast"] = bcast
        program.append(instr(op, **fields))
    return program


@pytest.mark.parametrize("op", [Opcode.DMA_LOAD, Opcode.DMA_STORE])
@pytest.mark.parametrize("space", [Space.SP, Space.ACC])
def test_alignment_stride_sweep_matches_golden_and_timing(op, space, seed):
    program = sweep(op, space, random.Random(seed))
    run_check(program, seed=seed, latency=3, gap=0.2)


@pytest.mark.parametrize("op", [Opcode.DMA_LOAD, Opcode.DMA_STORE])
def test_bank_and_dram_row_crossing(op, seed):
    rng = random.Random(seed)
    program = []
    for boundary in (CFG.row_bytes, CFG.row_bytes * CFG.dram_banks):
        for k in (2, 3):
            for space in (Space.SP, Space.ACC):
                n = 23
                s = 4 if space is Space.ACC else 1
                base = k * boundary - rng.randrange(1, n * s)
                program.append(instr(op, space=space, dram_addr=base, dram_stride=-boundary - 7,
                                     sram_addr=rng.randrange(64, 512), sram_stride=n, rows=2,
                                     len=n) if op is Opcode.DMA_STORE else
                               instr(op, space=space, dram_addr=base, dram_stride=boundary + 3,
                                     sram_addr=rng.randrange(64, 512), sram_stride=n, rows=2,
                                     len=n))
    run_check(program, seed=seed, latency=5, interval=2)


def test_overlapping_destinations_later_rows_win(seed):
    """Loads whose SRAM rows overlap and stores whose DRAM rows overlap (including partial
    columns merged into one write request): the last row in program order wins."""
    rng = random.Random(seed)
    program = []
    for space in (Space.SP, Space.ACC):
        for n, sstride, dstride in ((10, 3, 40), (7, -2, -9), (W, 0, 1), (13, 1, -1)):
            program.append(instr(Opcode.DMA_LOAD, space=space, dram_addr=rng.randrange(200, 9000),
                                 dram_stride=dstride, sram_addr=rng.randrange(100, 900),
                                 sram_stride=sstride, rows=5, len=n))
            program.append(instr(Opcode.DMA_STORE, space=space,
                                 dram_addr=rng.randrange(200, 9000), dram_stride=sstride,
                                 sram_addr=rng.randrange(100, 900), sram_stride=dstride, rows=5,
                                 len=n))
    run_check(program, seed=seed)


def test_gather_table_ends_and_out_of_range(seed):
    rng = random.Random(seed)
    images = random_images(CFG, np.random.default_rng(seed))
    cases = [(0, Space.SP, 1), (15, Space.ACC, 1), (15, Space.SP, 3), (-1, Space.SP, 1),
             (16, Space.ACC, 1), (-2**31, Space.ACC, 2), (2**31 - 1, Space.SP, 1),
             (3, Space.ACC, 2)]
    program = [gather_case(CFG, images, rng, index=i, space=sp, rows=r) for i, sp, r in cases]
    rec, expected = run_check(program, seed=seed, images=images, gap=0.3)
    assert expected.errors == [False, False, False, True, True, True, True, False]
    for start, end, checked, err in zip(rec.starts, rec.ends, rec.checked, rec.errors,
                                        strict=True):
        assert checked == start + GATHER_START
        if err:
            assert end == checked       # error, done and checked in the same cycle


def test_empty_transfers_take_their_start_cycles_and_write_nothing(seed):
    rng = random.Random(seed)
    images = random_images(CFG, np.random.default_rng(seed))
    program = [
        instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=5, sram_addr=7, rows=0, len=9),
        instr(Opcode.DMA_LOAD, space=Space.ACC, dram_addr=5, sram_addr=7, rows=3, len=0),
        instr(Opcode.DMA_STORE, space=Space.SP, dram_addr=5, sram_addr=7, rows=0, len=4),
        gather_case(CFG, images, rng, index=-5).replace(rows=0),
        gather_case(CFG, images, rng, index=2).replace(len=0),
    ]
    rec, _ = run_check(program, seed=seed, images=images)
    assert [e - s for s, e in zip(rec.starts, rec.ends, strict=True)] == \
        [1, 1, 1, GATHER_START, GATHER_START]
    assert rec.errors == [False, False, False, True, False]


@pytest.mark.parametrize(("latency", "interval"), [(2, 1), (9, 3)])
def test_random_programs_exact_cycles(latency, interval, seed):
    rng = random.Random(seed)
    program = [random_transfer(CFG, rng, rng.choice([Opcode.DMA_LOAD, Opcode.DMA_STORE]))
               for _ in range(24)]
    run_check(program, seed=seed, latency=latency, interval=interval, gap=0.3)


def test_random_programs_with_dram_stalls_and_command_gaps(seed):
    rng = random.Random(seed)
    program = [random_transfer(CFG, rng, rng.choice([Opcode.DMA_LOAD, Opcode.DMA_STORE]))
               for _ in range(24)]
    rec, _ = run_check(program, seed=seed, latency=3, stall=0.4, gap=0.4, timing=False)
    # Stalls only ever delay: no instruction is faster than its stall-free prediction.
    free = [dma_timing(CFG, ins, 0, FixedLatencyDram(3)).cycles for ins in program]
    assert all(e - s >= f for s, e, f in zip(rec.starts, rec.ends, free, strict=True))
    assert any(e - s > f for s, e, f in zip(rec.starts, rec.ends, free, strict=True))


def test_long_latency_with_few_outstanding_requests(seed):
    rng = random.Random(seed)
    program = [random_transfer(CFG, rng, Opcode.DMA_LOAD, len=rng.choice([40, 100]), rows=2,
                               max_elems=200) for _ in range(3)]
    for outstanding in (1, 3):
        run_check(program, seed=seed, latency=20, outstanding=outstanding)


def test_both_engines_back_to_back_keep_their_own_timing(seed):
    rng = random.Random(seed)
    half = CFG.dram_bytes // 2
    program = []
    for _ in range(8):
        program.append(random_transfer(CFG, rng, Opcode.DMA_LOAD, space=Space.SP,
                                       dram_range=(0, half)))
        program.append(random_transfer(CFG, rng, Opcode.DMA_STORE, space=Space.ACC,
                                       dram_range=(half, CFG.dram_bytes)))
    rec, _ = run_check(program, seed=seed, serial=False)
    for op in (Opcode.DMA_LOAD, Opcode.DMA_STORE):
        idx = [i for i, ins in enumerate(program) if ins.opcode is op]
        # Each engine takes its next instruction in the o_done cycle of the previous one.
        assert all(rec.starts[b] == rec.ends[a] for a, b in itertools.pairwise(idx))


@pytest.mark.parametrize(("space", "interval", "bound"), [
    (Space.SP, 1, "sram"),     # 4 bytes per cycle into SP rows of 4 int8
    (Space.ACC, 1, "sram"),    # 16 bytes per cycle into ACC rows of 4 int32
    (Space.ACC, 4, "dram"),    # one 32-byte column per 4 cycles: 8 bytes per cycle
])
def test_long_transfers_run_at_the_slower_of_sram_and_dram(space, interval, bound, seed):
    s = 4 if space is Space.ACC else 1
    n = 2048 // s
    program = [instr(op, space=space, dram_addr=4096 + 3, sram_addr=64 + 1, rows=1, len=n)
               for op in (Opcode.DMA_LOAD, Opcode.DMA_STORE)]
    rec, _ = run_check(program, seed=seed, latency=8, interval=interval)
    beats = -(-(n + 1) // W)
    cols = -(-(n * s + 3) // 32)
    ideal = beats if bound == "sram" else cols * interval
    for start, end in zip(rec.starts, rec.ends, strict=True):
        assert ideal <= end - start <= ideal + 16


def test_dram_requests_are_one_per_column_run(seed):
    """Consecutive rows sharing a column: a load reads it once, a store writes it once."""
    rows, n = 16, 3                           # rows of 3 bytes, back to back: 48 bytes
    for op in (Opcode.DMA_LOAD, Opcode.DMA_STORE):
        ins = instr(op, space=Space.SP, dram_addr=64, dram_stride=n, sram_addr=0,
                    sram_stride=W, rows=rows, len=n)
        t = dma_timing(CFG, ins, 0, FixedLatencyDram(4))
        assert t.requests == 2
    # ... and the RTL agrees (its cycles equal this timing, which depends on the count).
    run_check([instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=64, dram_stride=n,
                     sram_addr=0, sram_stride=W, rows=rows, len=n)], seed=seed)


def test_row_width_8_of_the_default_preset(seed):
    """W = 8 (default preset geometry) with a smaller DRAM and SRAMs to keep elaboration short."""
    cfg = preset("default").replace(name="w8small", dram_banks=4, dram_bank_groups=2, bank_rows=16,
                               sp_bytes=8192, acc_elems=2048)
    rng = random.Random(seed)
    program = [random_transfer(cfg, rng, rng.choice([Opcode.DMA_LOAD, Opcode.DMA_STORE]))
               for _ in range(16)]
    run_check(program, seed=seed, cfg=cfg, gap=0.2)


# -------------------------------------------------------------------------------------------
# The timing model on its own
def test_timing_of_a_single_column():
    load = instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=40, sram_addr=4, rows=1, len=3)
    store = instr(Opcode.DMA_STORE, space=Space.SP, dram_addr=40, sram_addr=4, rows=1, len=3)
    for latency in (2, 7):
        # request at 1, response at 1+L, into the window at 2+L, beat at 3+L, write at 4+L
        assert dma_timing(CFG, load, 0, FixedLatencyDram(latency)).cycles == latency + 5
    # read at 1, column formed at 2, request handshake at 3
    assert dma_timing(CFG, store, 0, FixedLatencyDram(2)).cycles == 4


def test_plans_count_requests_and_beats():
    ins = instr(Opcode.DMA_LOAD, space=Space.ACC, dram_addr=30, dram_stride=130, sram_addr=3,
                sram_stride=8, rows=2, len=9)
    cols, pairs, beats = load_plan(CFG, ins, ins.dram_addr)
    # row 0: bytes 30..65 (columns 0..2), elements 3..11 (SRAM rows 0..2);
    # row 1: bytes 160..195 (columns 5, 6), elements 11..19 (SRAM rows 2..4)
    assert cols == [0, 1, 2, 5, 6]
    assert [b[2] for b in beats] == [0, 1, 2, 2, 3, 4]
    # Columns each beat needs: bytes 30..33 | 34..49 | 50..65, then 160..163 | 164..179 | 180..195
    assert [(b[0], b[1]) for b in beats] == [(0, 1), (1, 1), (1, 2), (3, 3), (3, 3), (3, 4)]
    st = instr(Opcode.DMA_STORE, space=Space.SP, dram_addr=62, dram_stride=3, sram_addr=0,
               sram_stride=W, rows=2, len=3)
    beat_rows, spairs = store_plan(CFG, st)
    # row 0 covers bytes 62..64 (columns 1, 2), row 1 65..67 (column 2): 2 requests
    assert [p[0] for p in spairs] == [1, 2, 2]
    assert [p[3] for p in spairs] == [True, False, True]
    assert beat_rows == [0, 1]
    assert sum(pairs) == len(cols)


def test_window_sizes():
    assert load_window_columns(CFG) == 3           # a 16-byte ACC beat spans 2 columns, + 1
    assert store_window_beats(CFG, Space.SP) == 10  # a column spans 9 rows of 4 bytes, + 1
    assert store_window_beats(CFG, Space.ACC) == 4
    big = preset("large")
    assert load_window_columns(big) == 4 and store_window_beats(big, Space.ACC) == 3


def test_channel_model_variant_is_slower_on_row_misses():
    cfg = preset("default")
    contiguous = instr(Opcode.DMA_LOAD, space=Space.ACC, dram_addr=0, sram_addr=0, rows=1,
                       len=256)
    strided = contiguous.replace(rows=32, len=8, dram_stride=cfg.row_bytes * cfg.dram_banks,
                                 sram_stride=8)
    t_contig = dma_end(cfg, contiguous, 0, DramModel(cfg))
    t_strided = dma_end(cfg, strided, 0, DramModel(cfg))
    # Same bytes (1 KiB); one row activation against 32 in one bank (tRC each).
    assert t_strided > t_contig + 30 * cfg.timing.tRP
    # The default DRAM of dma_cycles is the row-hit channel rate: one column per tBURST.
    assert dma_cycles(cfg, contiguous) >= 32 * cfg.timing.tBURST
    model = DramModel(cfg)
    dma_timing(cfg, contiguous, 0, ChannelDram(cfg, model))
    assert model.stats["reads"] == 32


# -------------------------------------------------------------------------------------------
def test_verilog_is_lint_clean():
    # The responder's memory is initialised row by row in Verilog: a 16 KiB DRAM keeps it short.
    small = CFG.replace(name="tiny16k", bank_rows=4)
    for name, dut in (("dma_load", DmaLoad(CFG)), ("dma_store", DmaStore(CFG)),
                      ("dram_responder", DramResponder(small, ["a", "b"], latency=5, interval=2,
                                                       req_stall=0.25, rsp_stall=0.25))):
        lint_verilog(verilog_of(dut, name), name, extra_waivers=LINT_WAIVERS)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="outstanding must be a positive integer"):
        DmaLoad(CFG, outstanding=0)
    with pytest.raises(ValueError, match="latency must be an integer of at least 2"):
        DramResponder(CFG, latency=1)
    with pytest.raises(ValueError, match="req_stall must be in"):
        DramResponder(CFG, req_stall=1.0)
    import gc

    gc.collect()


def test_bench_measures_every_transfer_and_matches_the_model():
    """`llmaccel bench dma` end to end on the Amaranth simulator (the Verilator figures come
    from the same code with --simulator verilator)."""
    import argparse

    from llmaccel.sw.bench import dma as bench

    args = argparse.Namespace(config="tiny", latency=None, simulator="amaranth", long_kib=1)
    result = bench.run(args)
    assert result["all_match"]
    rows = {r["name"]: r for r in result["rows"]}
    assert len(rows) == len(bench.transfers(CFG))
    # ACC rows take 16 B per cycle on tiny: a long ACC load reaches most of the DRAM's 16 B/cycle
    assert rows["load ACC contiguous 1 KiB"]["fraction_of_bound"] > 0.7
    # SP rows take W = 4 bytes per cycle: the SRAM bounds SP transfers at a quarter of it
    assert rows["store SP contiguous 1 KiB"]["bytes_per_cycle"] <= W
    assert "load SP column 64x1 B (stride 64)" in bench.report(result)


# -------------------------------------------------------------------------------------------
# Soak (make soak): long random programs over row widths 2 to 32, with and without stalls.
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("LLMACCEL_SOAK") != "1", reason="soak test: LLMACCEL_SOAK=1")
@pytest.mark.parametrize("width", [2, 4, 8, 16, 32])
def test_soak_random_programs(width, seed):
    cfg = CFG.replace(name=f"soak{width}", array_rows=width, array_cols=width,
                      vector_lanes=width)
    for k in range(12):
        rng = random.Random(seed + k)
        images = random_images(cfg, np.random.default_rng(seed + k))
        program = [random_transfer(cfg, rng, rng.choice([Opcode.DMA_LOAD, Opcode.DMA_STORE]),
                                   max_elems=rng.choice([64, 400]))
                   for _ in range(12)]
        program.insert(rng.randrange(len(program)), gather_case(
            cfg, images, rng, index=rng.choice([-3, 0, 5, 15, 16]),
            space=rng.choice([Space.SP, Space.ACC]), rows=rng.choice([1, 2, 3])))
        stall = 0.3 if k % 3 == 0 else 0.0
        run_check(program, seed=seed + k, images=images, cfg=cfg,
                  latency=rng.choice([2, 5, 17]), interval=rng.choice([1, 2, 3]), stall=stall,
                  gap=0.3, outstanding=rng.choice([2, 32]), timing=not stall)
