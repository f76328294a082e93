"""Differential fuzzing: random valid programs give bit-identical DRAM, SP and ACC on Verilator
and the golden model; random illegal programs end in ERROR with the golden model's code and PC
and never hang. ``make soak`` (LLMACCEL_SOAK=1) runs 10 000 programs."""

import os
import random

import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.isa import INSTR_BYTES, ErrorCode
from llmaccel.sim.backends import get_backend
from llmaccel.sim.backends.golden import GoldenBackend
from llmaccel.sim.fuzz import ILLEGAL_KINDS, DiffRunner, ProgramFuzzer
from llmaccel.sim.tools import available_simulators

CFG = preset("default")
SOAK = os.environ.get("LLMACCEL_SOAK") == "1"


@pytest.fixture
def verilator():
    # A fresh model per test (the library is built once): every runner starts from reset, as
    # its golden twin does.
    be = get_backend("verilator", CFG)
    yield be
    be.close()


def _runner(backend, seed: int, **kw) -> DiffRunner:
    r = DiffRunner(backend, GoldenBackend(CFG), ProgramFuzzer(CFG), seed=seed, **kw)
    r.setup()
    return r


def _report(r: DiffRunner) -> str:
    return "\n\n".join(str(m) for m in r.mismatches[:3])


# -------------------------------------------------------------------------------------------
# The fuzzer itself (golden only)
def test_valid_programs_use_every_opcode_and_pass_the_race_checker(seed):
    fz = ProgramFuzzer(CFG)
    gold = GoldenBackend(CFG, check_races=True)
    gold.load_dram(0, fz.arena_data(seed))
    seen = set()
    for i in range(60):
        prog = fz.valid(seed + i, gold.machine)
        gold.load_dram(prog.base, prog.binary)
        res = gold.machine.run(prog.base, max_instructions=10_000)
        assert res.ok, f"{res.message}\n{prog.listing()}"
        seen |= {t.split()[0] for t in prog.text}
    from llmaccel.hw.isa import Opcode

    assert seen == {op.name.lower() for op in Opcode}


@pytest.mark.parametrize("kind", ILLEGAL_KINDS)
def test_illegal_programs_stop_at_their_bad_word(kind, seed):
    fz = ProgramFuzzer(CFG)
    gold = GoldenBackend(CFG)
    gold.load_dram(0, fz.arena_data(seed))
    for i in range(8):
        prog = fz.illegal(seed + i, gold.machine, kind)
        gold.load_dram(prog.base, prog.binary)
        res = gold.machine.run(prog.base, max_instructions=10_000)
        assert not res.ok
        assert res.error_pc == prog.base + INSTR_BYTES * prog.bad_index, prog.listing()
        if kind == "pc_range":
            assert res.error is ErrorCode.PC_RANGE


def test_without_a_gemm_core_the_fuzzer_makes_gemm_an_illegal_opcode(seed):
    """gemm_core=False (the fpga preset's choice): valid programs hold no GEMM; illegal
    ``opcode`` programs include well-formed GEMMs, which stop at their PC with ILLEGAL_OPCODE."""
    cfg = preset("tiny").replace(name="tiny-nogemm", gemm_core=False)
    fz = ProgramFuzzer(cfg)
    gold = GoldenBackend(cfg, check_races=True)
    gold.load_dram(0, fz.arena_data(seed))
    for i in range(20):
        prog = fz.valid(seed + i, gold.machine)
        gold.load_dram(prog.base, prog.binary)
        assert gold.machine.run(prog.base, max_instructions=10_000).ok, prog.listing()
        assert not [t for t in prog.text if t.split()[0] == "gemm"]
    gemms = 0
    for i in range(16):
        prog = fz.illegal(seed + i, gold.machine, "opcode")
        gold.load_dram(prog.base, prog.binary)
        res = gold.machine.run(prog.base, max_instructions=10_000)
        assert res.error is ErrorCode.ILLEGAL_OPCODE, prog.listing()
        assert res.error_pc == prog.base + INSTR_BYTES * prog.bad_index, prog.listing()
        gemms += prog.text[prog.bad_index].split()[0] == "gemm"
    assert gemms > 0


# -------------------------------------------------------------------------------------------
# Verilator against the golden model
def test_random_valid_programs_are_bit_exact_on_verilator(verilator, seed):
    r = _runner(verilator, seed)
    r.run(500, checkpoint_every=100)
    assert not r.mismatches, _report(r)
    assert r.programs == 501


def test_random_illegal_programs_end_in_the_golden_error(verilator, seed):
    r = _runner(verilator, seed)
    r.run(150, illegal_share=0.6, checkpoint_every=50, final_compare="windows")
    assert not r.mismatches, _report(r)
    assert len(r.errors) >= 7, r.errors       # most error codes occurred


def test_watchdog_bounds_every_run(verilator, seed):
    fz = ProgramFuzzer(CFG)
    gold = GoldenBackend(CFG)
    prog = fz.valid(seed, gold.machine, n=40)
    verilator.load_dram(prog.base, prog.binary)
    run = verilator.run(prog.base, max_cycles=50)
    assert (run.status, run.error) == ("error", ErrorCode.WATCHDOG)
    # The units finish what they accepted (hw/controller.py), then the run ends.
    assert 50 <= run.cycles < 50 + 20_000
    assert prog.base <= run.error_pc < prog.base + len(prog.binary)


def test_rtl_cycles_equal_the_cycle_model_on_random_programs(verilator, seed):
    r = _runner(verilator, seed, compare_cycles=True)
    r.run(60, final_compare="none")
    assert not r.mismatches, _report(r)
    print(f"cycle mismatches {len(r.cycle_mismatches)}/60: {r.cycle_mismatches[:10]}")
    assert not r.cycle_mismatches


def _soak_config(cfg, seed: int, n: int, illegal_share: float) -> dict:
    """``n`` fuzz programs on a Verilator build of ``cfg`` against the golden model (data,
    errors, PCs and cycles); returns the errors the illegal programs ended in."""
    be = get_backend("verilator", cfg)
    try:
        r = DiffRunner(be, GoldenBackend(cfg), ProgramFuzzer(cfg), seed=seed,
                       compare_cycles=True)
        r.setup()
        r.run(n, illegal_share=illegal_share, checkpoint_every=50)
        assert not r.mismatches, _report(r)
        assert not r.cycle_mismatches, r.cycle_mismatches
        return r.errors
    finally:
        be.close()


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="soak runs with LLMACCEL_SOAK=1 (make soak)")
def test_non_power_of_two_dram_on_verilator(seed):
    """48 rows per bank, so the top of DRAM is not a power of two: programs at the top, DMA
    into its last bytes, and accesses just above it (DMA, PIM rows, the PC running off the
    end) give the golden model's data, error and PC, and its cycles. In the soak: it costs a
    Verilator build of its own (minutes on a clean clone); tests/hw/test_accelerator.py runs
    the same top-row cases on the RTL in make test."""
    errors = _soak_config(preset("tiny").replace(name="rows48", bank_rows=48), seed, 200, 0.5)
    assert {"DRAM_RANGE", "PIM_RANGE", "PC_RANGE"} <= set(errors), errors


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="soak runs with LLMACCEL_SOAK=1 (make soak)")
def test_without_a_gemm_core_on_verilator(seed):
    """gemm_core=False: random programs without GEMM, and GEMMs as illegal opcodes, give the
    golden model's data, error, PC and cycles on the RTL built without the array. In the soak
    (a Verilator build of its own); tests/hw/test_accelerator.py runs a GEMM-free program and
    illegal GEMMs on the same RTL in make test."""
    errors = _soak_config(preset("tiny").replace(name="tiny-nogemm", gemm_core=False), seed,
                          300, 0.3)
    assert "ILLEGAL_OPCODE" in errors, errors


@pytest.mark.slow
@pytest.mark.skipif(not SOAK, reason="soak runs with LLMACCEL_SOAK=1 (make soak)")
def test_soak_ten_thousand_programs(verilator, seed):
    r = _runner(verilator, seed)
    r.run(10_000, illegal_share=0.2, checkpoint_every=500)
    assert not r.mismatches, _report(r)


# -------------------------------------------------------------------------------------------
# The slower simulators on the small preset. Icarus and the Amaranth simulator run the real top
# level at some hundred cycles per second: the default run checks a few short programs from
# reset; the longer differential run is part of `make soak`.
SLOW_BACKENDS = [
    pytest.param("icarus", marks=[
        pytest.mark.skipif("icarus" not in available_simulators(),
                           reason="iverilog is not installed"),
        pytest.mark.slow]),
    "amaranth"]


@pytest.mark.parametrize("name", SLOW_BACKENDS)
def test_slow_backends_run_short_programs_like_golden(name, seed):
    cfg = preset("tiny")
    be = get_backend(name, cfg, max_cycles=20_000)
    try:
        r = DiffRunner(be, GoldenBackend(cfg), ProgramFuzzer(cfg, max_instructions=3),
                       seed=seed)
        r.run(3, illegal_share=0.34, final_compare="none")
        assert not r.mismatches, _report(r)
    finally:
        be.close()


def test_amaranth_cycles_equal_the_cycle_model():
    """The Amaranth backend's START cycles and counters line up with the system model too.
    Fixed seeds: these runs cross refreshes where a START off by one cycle changes a count
    (the seventh program), so the test fails if the backend's START cycle is wrong."""
    cfg = preset("tiny")
    be = get_backend("amaranth", cfg)
    try:
        r = DiffRunner(be, GoldenBackend(cfg), ProgramFuzzer(cfg), seed=1, compare_cycles=True)
        r.setup()
        rng = random.Random(5)
        for _ in range(8):
            r.run_one(r.fz.valid(rng.getrandbits(31), r.golden.machine))
        assert not r.mismatches, _report(r)
        assert r.programs == 9 and not r.cycle_mismatches, r.cycle_mismatches
    finally:
        be.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_BACKENDS)
def test_slow_backends_match_golden_on_the_tiny_preset(name, seed):
    cfg = preset("tiny")
    be = get_backend(name, cfg)
    try:
        r = DiffRunner(be, GoldenBackend(cfg), ProgramFuzzer(cfg, max_instructions=6),
                       seed=seed)
        r.setup()
        # Every word each program wrote is compared; reading all memories would take long.
        r.run(20, illegal_share=0.25, final_compare="none")
        assert not r.mismatches, _report(r)
    finally:
        be.close()
