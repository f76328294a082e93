"""sim/golden/isa_sim.py: one hand-checked program per instruction class, errors, races."""

import numpy as np
import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.isa import ErrorCode, Opcode, encode
from llmaccel.sim.golden import numerics as nx
from llmaccel.sim.golden.isa_sim import BankConflictError, GoldenMachine, RaceError
from llmaccel.sw.asm import assemble, to_binary

CFG = preset("tiny")          # W = 4, 4 banks, 32 columns of 32 bytes per row
W = CFG.row_width
PROG = 0x0                    # programs live at the bottom of DRAM
DATA = 0x8000


def machine(seed=0):
    m = GoldenMachine(CFG)
    rng = np.random.default_rng(seed)
    m.dram[DATA:] = rng.integers(0, 256, m.dram.size - DATA, dtype=np.uint8)
    m.sp[:] = rng.integers(-128, 128, m.sp.size)
    m.acc[:] = rng.integers(-(1 << 31), 1 << 31, m.acc.size, dtype=np.int64)
    return m


def run(m, text, **kw):
    m.load_dram(PROG, to_binary(assemble(text)))
    return m.run(PROG, **kw)


def test_dma_load_sp_2d_strided_unaligned_crossing_banks():
    m = machine()
    before = m.state()
    base = DATA + CFG.row_bytes - 5          # crosses into the next bank
    res = run(m, f"dma_load dram_addr={base} dram_stride=37 sram_addr=3 sram_stride=11 "
                 f"rows=5 len=9\nhalt")
    assert res.ok, res.message
    expect = before["sp"].copy()
    for r in range(5):
        for e in range(9):
            expect[3 + r * 11 + e] = np.int8(before["dram"][base + r * 37 + e].astype(np.int8))
    np.testing.assert_array_equal(m.sp, expect)
    np.testing.assert_array_equal(m.dram[DATA:], before["dram"][DATA:])
    assert res.stats.dram_read_bytes == 45


def test_dma_load_acc_int32_little_endian_and_broadcast():
    m = machine()
    base = DATA + 64
    res = run(m, f"dma_load space=acc dram_addr={base} dram_stride=4 sram_addr=8 sram_stride=4 "
                 f"rows=3 len=4 bcast=1\nhalt")
    assert res.ok
    for r in range(3):
        v = int.from_bytes(m.dram[base + 4 * r:base + 4 * r + 4].tobytes(), "little", signed=True)
        assert (m.acc[8 + 4 * r:12 + 4 * r] == v).all()


def test_dma_store_acc_and_sp_with_guard_bands():
    m = machine()
    before = m.state()
    dst = DATA + 1000
    res = run(m, f"dma_store space=acc dram_addr={dst} dram_stride=20 sram_addr=5 "
                 f"sram_stride=7 rows=2 len=3\nhalt")
    assert res.ok
    expect = before["dram"].copy()
    for r in range(2):
        for e in range(3):
            v = int(before["acc"][5 + 7 * r + e])
            expect[dst + 20 * r + 4 * e:dst + 20 * r + 4 * e + 4] = \
                np.frombuffer(v.to_bytes(4, "little", signed=True), np.uint8)
    np.testing.assert_array_equal(m.dram[DATA:], expect[DATA:])   # nothing else written
    np.testing.assert_array_equal(m.acc, before["acc"])


def test_dma_gather_uses_the_index_held_in_acc():
    m = machine()
    m.acc[100] = 7
    table = DATA + 4096
    res = run(m, f"dma_gather dram_addr={table} idx_addr=100 idx_scale=16 rows=1 len=16 "
                 f"sram_addr=40\nhalt")
    assert res.ok
    np.testing.assert_array_equal(m.sp[40:56], m.dram[table + 112:table + 128].view(np.int8))


@pytest.mark.parametrize("text", [
    f"dma_load dram_addr={CFG.dram_bytes - 4} rows=1 len=8",
    "dma_load dram_addr=0x9000 dram_stride=-0x10000 rows=2 len=1",
    f"dma_store sram_addr={CFG.sp_bytes - 2} rows=1 len=4 dram_addr=0x9000",
    "dma_gather idx_addr=0 idx_scale=1 rows=1 len=1",
])
def test_dma_out_of_range_is_an_error_and_writes_nothing(text):
    m = machine()
    m.acc[0] = -1
    before = m.state()
    res = run(m, "nop\n" + text + "\nhalt")
    assert not res.ok
    assert res.error in (ErrorCode.DRAM_RANGE, ErrorCode.SRAM_RANGE)
    assert res.error_pc == 0x20
    after = m.state()
    prog_len = 3 * 32
    np.testing.assert_array_equal(after["dram"][prog_len:], before["dram"][prog_len:])
    for k in ("sp", "acc"):
        np.testing.assert_array_equal(after[k], before[k])


def _gemm_ref(m, M, N, K, a_addr, a_stride, b_addr, b_stride):
    R, C = CFG.array_rows, CFG.array_cols
    out = np.zeros((M, N), dtype=np.int64)
    for i in range(M):
        for j in range(N):
            s = 0
            for k in range(K):
                a = int(m.sp[a_addr + (i // R) * a_stride + k * W + i % R])
                b = int(m.sp[b_addr + (j // C) * b_stride + k * W + j % C])
                s += a * b
            out[i, j] = s
    return out


@pytest.mark.parametrize("accumulate", [0, 1])
def test_gemm_partial_tiles_overwrite_and_accumulate(accumulate):
    m = machine(1)
    before = m.state()
    M, N, K = 6, 7, 5                     # not multiples of the 4×4 array
    a_addr, a_stride, b_addr, b_stride, c_addr, c_stride = 0, 64, 512, 32, 16, 40
    res = run(m, f"gemm m={M} n={N} k={K} a_addr={a_addr} a_stride={a_stride} b_addr={b_addr} "
                 f"b_stride={b_stride} c_addr={c_addr} c_stride={c_stride} "
                 f"accumulate={accumulate}\nhalt")
    assert res.ok
    ref = _gemm_ref(m, M, N, K, a_addr, a_stride, b_addr, b_stride)
    expect = before["acc"].astype(np.int64).copy()
    R = CFG.array_rows
    for i in range(M):
        for j in range(N):
            idx = c_addr + (i // R) * c_stride + j * W + i % R
            v = ref[i, j] + (int(before["acc"][idx]) if accumulate else 0)
            expect[idx] = (v + (1 << 31)) % (1 << 32) - (1 << 31)
    np.testing.assert_array_equal(m.acc, expect.astype(np.int32))
    assert res.stats.gemm_macs == M * N * K


def test_gemm_extreme_operands_wrap_int32():
    m = machine()
    m.sp[:] = -128
    K = 200
    res = run(m, f"gemm m=4 n=4 k={K} b_addr=1024\nhalt")
    assert res.ok
    assert (m.acc[:16] == 16384 * K).all()


def test_gemm_misaligned_is_an_error():
    res = run(machine(), "gemm m=4 n=4 k=4 a_addr=2\nhalt")
    assert res.error is ErrorCode.MISALIGNED and res.error_pc == 0


def _pim_ref(m, row, col, ncols, kc, gb_chunk):
    banks = CFG.dram_banks
    nout = -(-ncols // kc)
    out = np.zeros((banks, nout), dtype=np.int64)
    for b in range(banks):
        for j in range(ncols):
            addr = CFG.dram_addr(b, row, col + j)
            w = m.dram[addr:addr + 32].view(np.int8).astype(np.int64)
            g = m.gbuf[(gb_chunk + j % kc) * 32:(gb_chunk + j % kc + 1) * 32].astype(np.int64)
            out[b, j // kc] += int(w @ g)
    return out


def test_pim_wrgb_mac_read():
    m = machine(2)
    row = (DATA // (CFG.row_bytes * CFG.dram_banks)) + 1
    text = f"""
    pim_wrgb sram_addr=100 gb_addr=0 len=96
    pim_mac row={row} col=3 ncols=7 kc=3 gb_chunk=0 slot=2
    pim_read slot=2 nslots=3 sram_addr=64
    halt
    """
    res = run(m, text)
    assert res.ok, res.message
    np.testing.assert_array_equal(m.gbuf[:96], m.sp[100:196])
    ref = _pim_ref(m, row, 3, 7, 3, 0)
    for s in range(3):
        for b in range(CFG.dram_banks):
            assert m.acc[64 + s * CFG.dram_banks + b] == ref[b, s]
    assert res.stats.pim_macs == 7 * CFG.dram_banks * 32


def test_pim_accumulate_adds_to_the_slot():
    m = machine(3)
    m.gbuf[:] = np.random.default_rng(0).integers(-128, 128, m.gbuf.size)
    res = run(m, "pim_mac row=40 col=0 ncols=2 kc=2 slot=0\n"
                 "pim_mac row=41 col=0 ncols=2 kc=2 slot=0 accumulate=1\nhalt")
    assert res.ok
    ref = _pim_ref(m, 40, 0, 2, 2, 0) + _pim_ref(m, 41, 0, 2, 2, 0)
    np.testing.assert_array_equal(m.pacc[:, 0], ref[:, 0].astype(np.int32))


@pytest.mark.parametrize("text", [
    f"pim_mac row={CFG.bank_rows} ncols=1 kc=1",
    f"pim_mac col={CFG.cols_per_row - 1} ncols=2 kc=1",
    f"pim_mac ncols=1 kc=1 slot={CFG.pim_slots}",
    f"pim_mac ncols=2 kc=2 gb_chunk={CFG.gbuf_chunks - 1}",
    f"pim_read slot=1 nslots={CFG.pim_slots}",
    f"pim_wrgb len=2 gb_addr={CFG.gbuf_bytes - 1}",
])
def test_pim_range_errors(text):
    res = run(machine(), text + "\nhalt")
    assert res.error is ErrorCode.PIM_RANGE


def test_pim_kc_zero_is_an_illegal_field():
    assert run(machine(), "pim_mac ncols=1 kc=0\nhalt").error is ErrorCode.ILLEGAL_FIELD


def _rows(m, space, addr, stride, rows):
    mem = m.sp if space == "sp" else m.acc
    return np.stack([mem[addr + r * stride:addr + r * stride + W] for r in range(rows)]) \
        .astype(np.int64)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "max", "min"])
@pytest.mark.parametrize("mode", ["vec", "scalar", "imm"])
@pytest.mark.parametrize("dst", ["sp", "acc"])
def test_vector_elementwise(op, mode, dst):
    m = machine(4)
    before = m.state()
    rows, shift, imm = 5, 3 if op == "mul" else 0, -1234
    src2 = {"vec": "src2=vec:sp:200:8", "scalar": "src2=scalar:acc:77:3",
            "imm": f"src2=imm imm={imm}"}[mode]
    res = run(m, f"v{op} dst={dst}:400:4 src1=acc:40:8 {src2} rows={rows} shift={shift}\nhalt")
    assert res.ok, res.message
    a = _rows(m, "acc", 40, 8, rows)  # src1 is not overwritten (dst is elsewhere)
    if mode == "vec":
        b = np.stack([before["sp"][200 + 8 * r:200 + 8 * r + W] for r in range(rows)])
    elif mode == "scalar":
        b = np.array([[before["acc"][77 + 3 * r]] * W for r in range(rows)])
    else:
        b = np.full((rows, W), imm)
    b = b.astype(np.int64)
    t = {"add": a + b, "sub": a - b, "mul": a * b, "max": np.maximum(a, b),
         "min": np.minimum(a, b)}[op]
    bits = 8 if dst == "sp" else 32
    ref = np.clip(nx.rshift_round(t, shift), -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    np.testing.assert_array_equal(_rows(m, dst, 400, 4, rows), ref)


def test_vector_lut_load_and_lookup():
    m = machine(5)
    table = np.arange(256) * 3 - 300
    m.acc[256:512] = table
    res = run(m, "vlutld src1=acc:256:0 imm=2\n"
                 "vlut dst=acc:0:4 src1=sp:64:4 rows=4 imm=2 shift=1\nhalt")
    assert res.ok
    a = _rows(m, "sp", 64, 4, 4)
    ref = nx.rshift_round(table[a + 128], 1)
    np.testing.assert_array_equal(_rows(m, "acc", 0, 4, 4), ref)


def test_vector_recip_and_isqrt():
    m = machine(6)
    m.acc[0:8] = [0, -5, 1, 7, 1000, 2**31 - 1, 3, 99]
    res = run(m, "vrecip dst=acc:16:4 src1=acc:0:4 rows=2 imm=1000000\n"
                 "visqrt dst=acc:32:4 src1=acc:0:4 rows=2\nhalt")
    assert res.ok
    a = m.acc[0:8].astype(np.int64)
    np.testing.assert_array_equal(m.acc[16:24], [nx.INT32_MAX if x <= 0 else 1000000 // x
                                                 for x in a])
    np.testing.assert_array_equal(m.acc[32:40], nx.isqrt(a))


@pytest.mark.parametrize("horizontal", [0, 1])
def test_vector_reductions(horizontal):
    m = machine(7)
    m.acc[0:12] = [5, 9, 9, 1, 9, 2, 3, 1, 0, 9, 7, 8]
    h = f"horizontal={horizontal}"
    res = run(m, f"vredsum dst=acc:16:0 src1=acc:0:4 rows=3 {h}\n"
                 f"vredmax dst=acc:20:0 src1=acc:0:4 rows=3 {h}\n"
                 f"vargmax dst=sp:0:0 src1=acc:0:4 rows=3 {h}\nhalt")
    assert res.ok
    a = m.acc[0:12].reshape(3, 4).astype(np.int64)
    if horizontal:
        assert (m.acc[16:20] == a.sum()).all()
        assert (m.acc[20:24] == 9).all()
        assert (m.sp[0:4] == 1).all()                    # first 9 in flat order
    else:
        np.testing.assert_array_equal(m.acc[16:20], a.sum(axis=0))
        np.testing.assert_array_equal(m.acc[20:24], a.max(axis=0))
        np.testing.assert_array_equal(m.sp[0:4], [1, 0, 0, 2])   # first max per lane


def test_reduction_saturates_to_destination():
    m = machine()
    m.acc[0:8] = nx.INT32_MAX
    res = run(m, "vredsum dst=acc:16:0 src1=acc:0:4 rows=2 horizontal=1\n"
                 "vredsum dst=sp:0:0 src1=acc:0:4 rows=2\nhalt")
    assert res.ok
    assert (m.acc[16:20] == nx.INT32_MAX).all() and (m.sp[0:4] == 127).all()


def test_vector_mask_causal():
    m = machine(8)
    before = m.acc[0:16].copy()
    # element (r, l) masked when r - l - 1 > 0, i.e. key r after query l+1
    res = run(m, "vmask dst=acc:0:4 src1=acc:0:4 rows=4 mask_a=1 mask_b=-1 imm=-1\nhalt")
    assert res.ok
    got = m.acc[0:16].reshape(4, 4)
    for r in range(4):
        for lane in range(4):
            assert got[r, lane] == (nx.INT32_MIN if r - lane - 1 > 0 else before[r * 4 + lane])


def test_vector_transpose_blocks():
    m = machine(9)
    res = run(m, "vtrans dst=sp:512:32 src1=sp:0:16 rows=2\nhalt")
    assert res.ok
    for q in range(2):
        src = m.sp[q * 16:q * 16 + 16].reshape(4, 4)
        dst = m.sp[512 + q * 32:512 + q * 32 + 16].reshape(4, 4)
        np.testing.assert_array_equal(dst, src.T)


def test_vector_misaligned_and_out_of_range():
    assert run(machine(), "vadd dst=acc:1:4 src1=acc:0:4 rows=1\nhalt").error \
        is ErrorCode.MISALIGNED
    assert run(machine(), f"vadd dst=acc:{CFG.acc_elems - 4}:4 src1=acc:0:4 rows=2\nhalt") \
        .error is ErrorCode.SRAM_RANGE
    assert run(machine(), "vlut dst=acc:0:4 src1=acc:0:4 rows=1 imm=99\nhalt").error \
        is ErrorCode.ILLEGAL_FIELD


def test_illegal_opcode_reports_its_pc():
    m = machine()
    prog = to_binary(assemble("nop\nnop"))
    m.load_dram(0, prog + (0x3F).to_bytes(32, "little"))
    res = m.run(0)
    assert res.error is ErrorCode.ILLEGAL_OPCODE and res.error_pc == 0x40


def test_reserved_bit_reports_its_pc():
    m = machine()
    m.load_dram(0, (encode(Opcode.HALT) | 1 << 200).to_bytes(32, "little"))
    res = m.run(0)
    assert res.error is ErrorCode.RESERVED_BITS and res.error_pc == 0


# A DRAM whose row count is not a power of two: its top is 48 rows × 4 banks × 1 KiB.
ROWS48 = CFG.replace(name="rows48", bank_rows=48)
TOP = ROWS48.dram_bytes


def test_top_row_of_a_non_power_of_two_dram():
    m = GoldenMachine(ROWS48)
    rng = np.random.default_rng(7)
    m.dram[TOP - 64:] = rng.integers(0, 256, 64, dtype=np.uint8)
    m.gbuf[:] = rng.integers(-128, 128, m.gbuf.size)
    top_row = m.dram[TOP - 64:].copy()
    m.load_dram(0, to_binary(assemble(
        f"dma_load dram_addr={TOP - 64} rows=1 len=64\n"
        f"dma_store dram_addr={TOP - 128} sram_addr=0 rows=1 len=64 wait=load\n"
        f"pim_mac row=47 col={ROWS48.cols_per_row - 2} ncols=2 kc=2 slot=0\nhalt")))
    res = m.run(0)
    assert res.ok, res.message
    np.testing.assert_array_equal(m.sp[:64].view(np.uint8), top_row)
    np.testing.assert_array_equal(m.dram[TOP - 128:TOP - 64], top_row)
    assert ROWS48.dram_map(TOP - 64) == (ROWS48.dram_banks - 1, 47, ROWS48.cols_per_row - 2, 0)
    assert m.pacc[:, 0].any()


@pytest.mark.parametrize(("text", "code"), [
    (f"dma_load dram_addr={TOP - 63} rows=1 len=64", ErrorCode.DRAM_RANGE),
    (f"dma_load dram_addr={TOP - 64} dram_stride=64 rows=2 len=1", ErrorCode.DRAM_RANGE),
    (f"dma_store dram_addr={TOP - 8} rows=1 len=9", ErrorCode.DRAM_RANGE),
    (f"dma_gather dram_addr={TOP - 64} idx_addr=0 idx_scale=64 rows=1 len=1",
     ErrorCode.DRAM_RANGE),
    ("pim_mac row=48 ncols=1 kc=1", ErrorCode.PIM_RANGE),
])
def test_just_above_the_top_of_a_non_power_of_two_dram_is_an_error(text, code):
    m = GoldenMachine(ROWS48)
    m.acc[0] = 1
    m.load_dram(0, to_binary(assemble(f"{text}\nhalt")))
    before = m.state()
    res = m.run(0)
    assert (res.error, res.error_pc) == (code, 0)
    for k, v in m.state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_program_running_off_the_top_of_a_non_power_of_two_dram():
    m = GoldenMachine(ROWS48)
    m.load_dram(TOP - 64, to_binary(assemble("nop\nnop")))
    res = m.run(TOP - 64)
    assert (res.error, res.error_pc) == (ErrorCode.PC_RANGE, TOP)


def test_watchdog_stops_a_program_without_halt():
    m = machine()
    m.load_dram(0, to_binary(assemble("nop\n" * 10)))
    m.dram[320:DATA] = 0      # NOPs all the way
    res = m.run(0, max_instructions=100)
    assert res.error is ErrorCode.WATCHDOG


def test_missing_wait_is_a_race():
    m = machine()
    with pytest.raises(RaceError, match="VADD at pc 0x20 reads SP"):
        run(m, "dma_load dram_addr=0x9000 rows=1 len=4\n"
               "vadd dst=acc:0:4 src1=sp:0:4 src2=imm rows=1\nhalt")


def test_write_after_read_needs_a_wait():
    m = machine()
    with pytest.raises(RaceError, match=r"DMA_LOAD at pc 0x20 overwrites SP.* read by a VEC"):
        run(m, "vadd dst=acc:0:4 src1=sp:0:4 src2=imm rows=1\n"
               "dma_load dram_addr=0x9000 rows=1 len=4\nhalt")


def test_transitive_ordering_is_not_a_race():
    m = machine()
    res = run(m, "dma_load dram_addr=0x9000 rows=1 len=4\n"
                 "gemm m=1 n=1 k=1 b_addr=64 wait=load\n"
                 "vadd dst=acc:64:4 src1=sp:0:4 src2=imm rows=1 wait=gemm\nhalt")
    assert res.ok


def test_same_unit_needs_no_wait():
    m = machine()
    res = run(m, "vadd dst=acc:0:4 src1=sp:0:4 src2=imm rows=1\n"
                 "vadd dst=acc:4:4 src1=acc:0:4 src2=imm rows=1\nhalt")
    assert res.ok


def test_a_row_reading_an_earlier_rows_result_is_flagged():
    m = machine()
    with pytest.raises(RaceError, match="of the same instruction"):
        run(m, "vadd dst=acc:4:4 src1=acc:0:4 src2=imm rows=2\nhalt")
    assert run(machine(), "vadd dst=acc:0:4 src1=acc:0:4 src2=imm rows=4\nhalt").ok


def test_state_persists_across_runs():
    m = machine()
    assert run(m, "vadd dst=acc:0:4 src1=acc:0:4 src2=imm imm=5 rows=1\nhalt").ok
    v = m.acc[0:4].copy()
    assert run(m, "vadd dst=acc:0:4 src1=acc:0:4 src2=imm imm=5 rows=1\nhalt").ok
    np.testing.assert_array_equal(m.acc[0:4], nx.sat(v.astype(np.int64) + 5, 32))


def test_scalar_operand_written_by_an_earlier_row_is_flagged():
    # Row 0 writes ACC[0]; later rows read ACC[0] as their SCALAR operand: the pipelined RTL
    # would read the old value, so the golden model must refuse the program.
    with pytest.raises(RaceError, match="of the same instruction"):
        run(machine(), "vadd dst=acc:0:4 src1=acc:64:4 src2=scalar:acc:0:0 rows=3\nhalt")


def test_gemm_overlapping_result_blocks_are_illegal():
    res = run(machine(), "gemm m=8 n=4 k=4 b_addr=512 c_stride=8\nhalt")
    assert res.error is ErrorCode.ILLEGAL_FIELD
    assert run(machine(), "gemm m=4 n=4 k=4 b_addr=512 c_stride=8\nhalt").ok  # one block


# SRAM banks (hw/sram.py): two units must not use one bank's read port, nor its write port, at
# the same time. CFG's scratchpad banks are CFG.sp_bank_rows rows of W bytes.
SP_BANK = CFG.sp_bank_rows * CFG.row_width


def test_two_units_reading_one_bank_need_a_wait():
    # Different elements of SP bank 0: no data race, but both use the bank's read port.
    prog = ("vadd dst=acc:0:4 src1=sp:0:4 src2=imm rows=1\n"
            "dma_store sram_addr=64 rows=1 len=4 dram_addr=0x9000{}\nhalt")
    with pytest.raises(BankConflictError, match=r"DMA_STORE at pc 0x20 uses the read port 0 "
                                                r"of SP bank 0 .* VEC instruction"):
        run(machine(), prog.format(""))
    assert run(machine(), prog.format(" wait=vec")).ok


def test_two_units_writing_one_bank_need_a_wait():
    prog = ("vadd dst=acc:0:4 src1=acc:64:4 src2=imm rows=1\n"
            "dma_load space=acc dram_addr=0x9000 sram_addr=32 rows=1 len=4{}\nhalt")
    with pytest.raises(BankConflictError, match="uses the write port of ACC bank 0"):
        run(machine(), prog.format(""))
    assert run(machine(), prog.format(" wait=vec")).ok


def test_other_banks_and_other_ports_need_no_wait():
    # The store reads SP bank 1 while the vector unit reads bank 0; the load writes SP bank 0
    # (its write port) while the vector unit reads it (the read ports).
    assert run(machine(), "vadd dst=acc:0:4 src1=sp:0:4 src2=imm rows=1\n"
                          f"dma_store sram_addr={SP_BANK} rows=1 len=4 dram_addr=0x9000\n"
                          "dma_load dram_addr=0x9100 sram_addr=64 rows=1 len=4\nhalt").ok


def test_the_bank_rule_is_per_read_port():
    # hw/accelerator.py read_port: the DMA store reads through port 0, the PIM global buffer
    # write and the vector unit's src2 through port 1, so only the last two meet.
    wrgb = "pim_wrgb sram_addr=128 gb_addr=0 len=32\n"
    assert run(machine(), "dma_store sram_addr=64 rows=1 len=4 dram_addr=0x9000\n" + wrgb +
               "halt").ok
    with pytest.raises(BankConflictError, match="PIM_WRGB at pc 0x20 uses the read port 1 of "
                                                "SP bank 0"):
        run(machine(), "vadd dst=acc:0:4 src1=acc:64:4 src2=vec:sp:0:4 rows=1\n" + wrgb +
            "halt")
