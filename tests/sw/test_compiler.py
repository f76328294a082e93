"""The compiler: programs on the golden ISA simulator give the int8 reference's tokens exactly,
the planner reaches zero non-compulsory traffic at its peak footprint and spills correctly under
tighter budgets, and what cannot be compiled is rejected clearly."""

import numpy as np
import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.isa import INSTR_BYTES, Opcode, decode
from llmaccel.sim.backends import get_backend
from llmaccel.sw.compiler import CompiledGPT, CompileError
from llmaccel.sw.driver import Generator
from llmaccel.sw.model.corpus import train_split
from llmaccel.sw.model.gpt import GPTConfig, init_params
from llmaccel.sw.model.int8 import forward_int8, generate_int8, quantize_model

CFG = preset("default")


@pytest.fixture(scope="module")
def qmodel():
    # Random weights with a large spread exercise saturation paths; the compiled programs must
    # match the integer reference whatever the weights are.
    mcfg = GPTConfig()
    params = init_params(mcfg, seed=7, std=0.15)
    return quantize_model(params, mcfg, train_split()[:60000])


def _generate(q, prompt, n, **limits):
    c = CompiledGPT(q, CFG, **limits)
    gen = Generator(c, get_backend("golden", CFG))
    return gen.generate(list(prompt), n)


@pytest.mark.parametrize("prompt", [b"x", b"def f(a, b):\n    return a", bytes(range(40, 90))])
def test_golden_tokens_equal_the_int8_reference(qmodel, prompt):
    res = _generate(qmodel, prompt, 5)
    ref = generate_int8(qmodel, list(prompt), 5)
    assert res.tokens == ref[len(prompt):]
    assert [s.kind for s in res.steps] == ["prefill"] + ["decode"] * 4


def test_context_fill_slides_the_window(qmodel):
    # 126 prompt bytes: decode at positions 126 and 127, then two sliding re-prefills.
    prompt = bytes((i * 37 + 11) % 256 for i in range(126))
    res = _generate(qmodel, prompt, 5)
    ref = generate_int8(qmodel, list(prompt), 5)
    assert res.tokens == ref[len(prompt):]
    assert [s.kind for s in res.steps] == ["prefill", "decode", "decode", "prefill", "prefill"]


@pytest.mark.parametrize("chunk", [None, 16])
def test_zero_non_compulsory_traffic_at_the_peak_footprint(qmodel, chunk):
    c = CompiledGPT(qmodel, CFG, weight_chunk=chunk)
    info = c.prefill(64)
    assert info.traffic.non_compulsory == 0
    peak_sp, peak_acc = info.plan.peak_sp, info.plan.peak_acc
    tight = CompiledGPT(qmodel, CFG, sp_limit=peak_sp, acc_limit=peak_acc, weight_chunk=chunk)
    info2 = tight.prefill(64)
    assert info2.traffic.non_compulsory == 0
    assert info2.plan.evictions == 0
    # compulsory = every weight tile and constant once + embeddings + prompt in, tokens and
    # KV cache out
    assert info2.traffic.compulsory == info.traffic.compulsory


def test_tighter_budget_spills_and_stays_exact(qmodel):
    # GEMMs split into 16-column weight chunks; an accumulator budget at 80 % of the way from
    # the resident constants to the peak: every step fits on its own, but not every live tensor
    # does, so residual blocks are spilled to DRAM and reloaded.
    c = CompiledGPT(qmodel, CFG, weight_chunk=16)
    peak = c.prefill(24).plan
    base = c.acc_base
    limits = {"weight_chunk": 16, "sp_limit": peak.peak_sp,
              "acc_limit": (base + (peak.peak_acc - base) * 8 // 10) // 8 * 8}
    info = CompiledGPT(qmodel, CFG, **limits).prefill(24)
    assert info.traffic.non_compulsory > 0
    assert info.plan.spills > 0 and info.plan.reloads > 0
    prompt = bytes(range(65, 89))
    res = _generate(qmodel, prompt, 2, **limits)
    assert res.tokens == generate_int8(qmodel, list(prompt), 2)[len(prompt):]


def test_budget_below_one_step_is_rejected_naming_the_tensor(qmodel):
    c = CompiledGPT(qmodel, CFG, acc_limit=c_min(qmodel))
    with pytest.raises(CompileError, match=r"does not fit: the ACC holds"):
        c.prefill(64)


def c_min(q):
    # constants + token row + one small tensor: far below what a 64-token layer needs
    return CompiledGPT(q, CFG).acc_base + 8 * 64


def test_prompt_length_outside_the_context_is_rejected(qmodel):
    c = CompiledGPT(qmodel, CFG)
    with pytest.raises(CompileError, match=r"1\.\.128 tokens"):
        c.prefill(129)
    with pytest.raises(CompileError, match="outside the context"):
        c.decode(128)


def test_model_that_does_not_fit_dram_names_the_overflow():
    mcfg = GPTConfig(d_model=256, n_layer=6, n_head=4)
    q = quantize_model(init_params(mcfg, seed=1), mcfg, train_split()[:20000])
    with pytest.raises(CompileError, match=r"does not fit the configured DRAM: .*short by \d+"):
        CompiledGPT(q, CFG)


def test_unsupported_shapes_are_rejected():
    mcfg = GPTConfig(d_model=36, n_head=3, n_layer=1)
    q = quantize_model(init_params(mcfg, seed=1), mcfg, train_split()[:20000])
    with pytest.raises(CompileError, match="d_model 36 is not a multiple of the row width 8"):
        CompiledGPT(q, CFG)


def test_other_model_shapes_compile_and_match():
    # A different width/depth/head count: tiling follows the model.
    mcfg = GPTConfig(d_model=32, n_layer=2, n_head=2, n_ctx=64)
    q = quantize_model(init_params(mcfg, seed=3, std=0.2), mcfg, train_split()[:20000])
    prompt = b"abc"
    res = _generate(q, prompt, 3)
    assert res.tokens == generate_int8(q, list(prompt), 3)[3:]


def test_decode_program_touches_no_weights_over_dma(qmodel):
    c = CompiledGPT(qmodel, CFG)
    c.prefill(10)
    info = c.decode(10)
    # only the token's embedding row, its position row, KV appends and the output token
    d = qmodel.cfg.d_model
    assert info.traffic.compulsory_read == 2 * d
    assert np.isclose(info.traffic.non_compulsory, 0)


def test_pim_prefill_mode_matches_without_array_weight_copies(qmodel):
    prompt = b"if x:"
    c = CompiledGPT(qmodel, CFG, prefill_mode="pim")
    assert not c.tiles
    res = Generator(c, get_backend("golden", CFG)).generate(list(prompt), 3)
    assert res.tokens == generate_int8(qmodel, list(prompt), 3)[len(prompt):]
    assert [s.kind for s in res.steps] == ["prefill"] * 5 + ["decode"] * 2
    assert c.layout.bytes_used < CompiledGPT(qmodel, CFG).layout.bytes_used


def test_builder_orders_two_units_on_one_sram_bank_port():
    # hw/sram.py: two units must not read one bank (or write one bank) at the same time, so
    # the builder adds a wait even though the elements differ; other banks need none.
    from llmaccel.hw.isa import Opcode, Space, Src2Mode, Unit
    from llmaccel.sw.compiler.program import Access, ProgramBuilder

    W, bank = CFG.row_width, CFG.sp_bank_rows * CFG.row_width

    def store(b, sram):
        return b.emit(Opcode.DMA_STORE, reads=(Access("SP", sram, sram + W),),
                      writes=(Access("DRAM", 0x9000, 0x9000 + W),), space=Space.SP,
                      dram_addr=0x9000, dram_stride=W, sram_addr=sram, sram_stride=W, rows=1,
                      len=W)

    for sram, wait in ((W, Unit.VEC), (bank, Unit(0))):
        b = ProgramBuilder(CFG)
        b.emit(Opcode.VADD, reads=(Access("SP", 0, W),), writes=(Access("ACC", 0, W),),
               dst={"space": Space.ACC, "addr": 0, "stride": W},
               src1={"space": Space.SP, "addr": 0, "stride": W},
               src2={"mode": Src2Mode.IMM}, imm=0, rows=1)
        assert store(b, sram).wait == wait


# --- compact images (block-RAM DRAM: the fpga preset) ----------------------------------------
# Eight banks: a head's 16-byte keys get their own K cache (with 16 banks they share rows with
# the V cache), which compact packs two heads to a 32-byte column.
CFG8 = CFG.replace(dram_banks=8)

def test_compact_image_gives_the_reference_tokens_across_a_window_slide(qmodel):
    """compact packs two heads' keys per K-cache column, shares rows between DMA regions and
    has the host write the constant table into ACC. Generating past the context makes the
    driver slide the window and prefill again, which reloads the lookup tables from a constant
    table that decode programs have overwritten since: the host must write it again."""
    c = CompiledGPT(qmodel, CFG8, compact=True)
    hd = qmodel.cfg.head_dim
    assert c.k_group == CFG8.col_bytes // hd == 2 and c.r_const is None and c.r_wpeT
    assert c.layout.bytes_used < CompiledGPT(qmodel, CFG8).layout.bytes_used
    n_ctx = qmodel.cfg.n_ctx
    prompt = list(bytes(range(32, 127)) * 2)[:n_ctx - 2]
    be = get_backend("golden", CFG8)
    res = Generator(c, be).generate(prompt, 4)
    ref = generate_int8(qmodel, prompt, 4)
    assert res.tokens == ref[len(prompt):]
    assert [s.kind for s in res.steps] == ["prefill", "decode", "decode", "prefill"]
    # Every key in the cache, head h at byte k_off[h] of its token's column, as the reference
    # computes it for the last window (tokens can agree by luck while keys are misplaced).
    seq = (prompt + ref[len(prompt):])[-n_ctx - 1:-1]
    rec: dict = {}
    forward_int8(qmodel, seq, record=rec)
    d, H = qmodel.cfg.d_model, qmodel.cfg.n_head
    dram = be.state()["dram"]
    for i in range(qmodel.cfg.n_layer):
        keys = rec[f"h.{i}.qkv"][:, d:2 * d]
        for h in range(H):
            got = [dram[a:a + hd] for a in (c.pim_k[i][h].addr(t, CFG8, c.k_off[h])
                                            for t in range(len(seq)))]
            np.testing.assert_array_equal(np.array(got).view(np.int8),
                                          keys[:, h * hd:(h + 1) * hd])


def test_compact_score_chunks_hold_zeros_at_the_other_heads_offsets(qmodel):
    c = CompiledGPT(qmodel, CFG8, compact=True)
    hd, cb = qmodel.cfg.head_dim, CFG.col_bytes
    assert c.k_off == [0, hd, 0, hd]
    # chunk h holds q_h at k_off[h]: zeros between q0 and q1 (bytes 16..47) and q2 and q3
    assert c._gbuf_gaps() == [(hd, cb + hd), (2 * cb + hd, 3 * cb + hd)]
    assert CompiledGPT(qmodel, CFG8)._gbuf_gaps() == []
    # with 16 banks a head's keys share rows with its values instead (no packing)
    assert CompiledGPT(qmodel, CFG, compact=True).k_group == 1


def test_fpga_preset_decodes_every_position_of_the_context_in_its_dram(qmodel):
    """The fpga preset's on-chip DRAM holds the compact image with the whole KV cache, and
    decode compiles at every position (PIM slots, global-buffer chunks and ACC suffice) into
    the program region sized for the longest one."""
    cfg = preset("fpga")
    c = CompiledGPT(qmodel, cfg, prefill_mode="pim", compact=True)
    assert c.layout.bytes_used <= cfg.dram_bytes
    assert c.r_spill.end <= cfg.dram_bytes
    for t in range(qmodel.cfg.n_ctx):
        info = c.decode(t, prompt_token=t % 2 == 0, load_constants=t == 0)
        assert info.plan.spills == 0
        assert len(info.binary) <= c.r_dprog.nbytes


def test_without_a_gemm_core_prefill_runs_in_the_pim_banks(qmodel):
    """A config without the GEMM core (the fpga preset's) compiles PIM prefill only: fitting
    skips systolic prefill, asking for it is a clear error, and no program holds a GEMM."""
    cfg = CFG.replace(name="nogemm", gemm_core=False)
    with pytest.raises(CompileError, match="systolic prefill needs the GEMM core"):
        CompiledGPT(qmodel, cfg)
    c = CompiledGPT.fitting(qmodel, cfg)
    assert c.prefill_mode == "pim"
    assert preset("fpga").gemm_core is False
    progs = [*c.prefill_programs(4), c.decode(4)]
    ops = {decode(p.binary[i:i + INSTR_BYTES]).opcode for p in progs
           for i in range(0, len(p.binary), INSTR_BYTES)}
    assert Opcode.GEMM not in ops and Opcode.PIM_MAC in ops
