"""The decode checker: decides, for one instruction word, whether the golden model accepts it.

:class:`InstrChecker` applies exactly the checks of ``hw.isa.decode`` and
``GoldenMachine.execute`` (sim/golden/isa_sim.py), in the same order, and reports the same
:class:`~.isa.ErrorCode`: the first failing check wins, as the first ``raise`` does there.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .isa import (
    INSTR_BITS,
    OPCODES,
    DmaInstr,
    ErrorCode,
    GemmInstr,
    Header,
    Opcode,
    PimInstr,
    Space,
    Src2Mode,
    VecInstr,
    reserved_mask,
)
from .registered_fifo import RegisteredFIFO

__all__ = ["CHECK_LATENCY", "OUT_DEPTH", "WORK_BITS", "InstrChecker", "checked_layout",
           "operand_layout", "product_operands", "word_layout"]

#: Cycles from the input transfer to the verdict at the output (two registered stages).
CHECK_LATENCY = 2
#: Verdicts the output buffer holds: with stage 1, the checker holds up to three words.
OUT_DEPTH = 2
#: Width of the ``work`` output (m·n·k of a GEMM needs 48 bits).
WORK_BITS = 48

_ELEMENTWISE = (Opcode.VADD, Opcode.VSUB, Opcode.VMUL, Opcode.VMAX, Opcode.VMIN)
_REDUCTIONS = (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX)


def operand_layout() -> data.StructLayout:
    """The operands of a word's stage-1 products (:func:`product_operands`): three counts
    ``c*`` (a row count minus one, or a PIM_MAC's ``kc``) times three strides ``x*``, and the
    two factors ``wa``, ``wb`` of the work count."""
    return data.StructLayout({
        "ca": signed(18), "cb": signed(18), "cc": signed(18),
        "xa": signed(34), "xb": signed(34), "xc": signed(34),
        "wa": unsigned(17), "wb": unsigned(17)})


def word_layout() -> data.StructLayout:
    """An instruction word, the DRAM byte address it was fetched from, and its product
    operands (:func:`product_operands` of the word), which the controller computes as the word
    enters its fetch FIFO so that the checker's first stage starts at the multipliers."""
    return data.StructLayout({"word": unsigned(INSTR_BITS), "pc": unsigned(33),
                              "ops": operand_layout()})


def checked_layout() -> data.StructLayout:
    """The checker's verdict on one word.

    * ``error``: the ErrorCode GoldenMachine raises for it (``NONE`` when legal).
    * ``late``: a DMA_GATHER whose destination is out of SRAM while its index address is
      fine. The golden model checks the gather's run-time DRAM range (from the index) before
      the destination, so the verdict is DRAM_RANGE or SRAM_RANGE depending on the index;
      ``error`` is SRAM_RANGE and the controller decides at run time.
    * ``work``: what the instruction adds to the performance counters: m·n·k for GEMM,
      ncols·banks·32 for PIM_MAC, DRAM bytes moved for DMA (as GoldenMachine's Stats count).
    """
    return data.StructLayout({
        "word": unsigned(INSTR_BITS), "pc": unsigned(33), "error": ErrorCode,
        "late": unsigned(1), "work": unsigned(WORK_BITS)})


def _view(fmt, word):
    return fmt(word[:data.Layout.cast(fmt).size])


def _first(conds):
    """The ErrorCode of the first true condition of ``[(cond, code), ...]`` (NONE if none)."""
    out = ErrorCode.NONE
    for cond, code in reversed(conds):
        out = Mux(cond, code, out)
    return out


def product_operands(m: Module, cfg: AccelConfig, word, *, name: str = "ops") -> data.View:
    """The operands of ``word``'s stage-1 products (:func:`operand_layout`), as combinational
    logic in ``m``: which counts and strides a format multiplies, decoded from its opcode.

    The controller computes them as a word enters its fetch FIFO and keeps them beside it, so
    that the checker's first stage is the multipliers alone (FPGA timing; the cycles are the
    same). A word's operands are the same wherever they are computed."""
    lr = (cfg.array_rows - 1).bit_length()
    lc = (cfg.array_cols - 1).bit_length()
    op0 = _view(Header, word).opcode
    dma0, gemm0 = _view(DmaInstr, word), _view(GemmInstr, word)
    pim0, vec0 = _view(PimInstr, word), _view(VecInstr, word)
    ops = Signal(operand_layout(), name=name)
    is_dma0 = (op0 == Opcode.DMA_LOAD) | (op0 == Opcode.DMA_GATHER) | \
        (op0 == Opcode.DMA_STORE)
    # Without a GEMM core (cfg.gemm_core) GEMM is illegal: its operands need no products.
    is_gemm0 = (op0 == Opcode.GEMM) if cfg.gemm_core else 0
    is_mac0 = op0 == Opcode.PIM_MAC
    is_red0 = 0
    for opc in _REDUCTIONS:
        is_red0 = is_red0 | (op0 == opc)
    rows_m1 = vec0.rows - 1                 # wraps for rows = 0, which needs no range
    dma_m1 = dma0.rows - 1
    mb_m1 = (gemm0.m - 1) >> lr if lr else gemm0.m - 1
    nb_m1 = (gemm0.n - 1) >> lc if lc else gemm0.n - 1

    def pick(dma_v, gemm_v, mac_v, vec_v):
        # Expressions, not m.If: Icarus evaluates continuous assignments at time 0.
        return Mux(is_dma0, dma_v, Mux(is_gemm0, gemm_v, Mux(is_mac0, mac_v, vec_v)))

    # (count − 1)·stride products; the count and stride operands depend on the format.
    m.d.comb += [
        ops.ca.eq(pick(dma_m1, mb_m1, pim0.kc, rows_m1)),
        ops.xa.eq(pick(dma0.dram_stride, gemm0.a_stride, cfg.pim_slots - pim0.slot,
                       vec0.src1.stride)),
        # A reduction writes one row: its destination needs no (rows − 1)·stride product.
        ops.cb.eq(pick(dma_m1, nb_m1, 0, Mux(is_red0, 0, rows_m1))),
        ops.xb.eq(pick(dma0.sram_stride, gemm0.b_stride, 0, vec0.dst.stride)),
        ops.cc.eq(pick(0, mb_m1, 0, rows_m1)),
        ops.xc.eq(pick(0, gemm0.c_stride, 0, vec0.src2.stride)),
        ops.wa.eq(pick(dma0.rows, gemm0.m, 0, 0)),
        ops.wb.eq(pick(Mux(dma0.bcast & (op0 == Opcode.DMA_LOAD), 1, dma0.len), gemm0.n, 0, 0)),
    ]
    return ops


class InstrChecker(wiring.Component):
    """Checks instruction words as the golden model does; a two-stage pipeline.

    Stage 1 registers the word with the products the range checks need (``(rows−1)·stride`` of
    up to three operands, the row-block extents of a GEMM, ``kc·free slots`` of a PIM_MAC, and
    the first factor of the work count); stage 2 compares and writes the verdict into an output
    buffer of :data:`OUT_DEPTH` entries (a :class:`~.registered_fifo.RegisteredFIFO`), whose head
    is the output. One word per cycle flows through when the output is taken every cycle.

    Stage 1 moves on whenever the output buffer has room at the start of the cycle, so neither
    stage waits for the output's ``ready`` in the same cycle: ``i.ready`` comes from the
    checker's registers alone. (With the verdict in a plain stage-2 register, the dispatch
    decision behind ``o.ready`` ran through both stages' stalls into the fetch FIFO's read;
    that chain was the whole ``fpga`` design's routed critical path.) When the output stalls,
    the checker holds up to three words: two verdicts and one word in stage 1.

    Parameters
    ----------
    cfg : AccelConfig

    Ports
    -----
    i : In(stream.Signature(word_layout()))
        Words to check, each with its :func:`product_operands` (the controller decodes them
        as the word enters its fetch FIFO). ``ready`` is high when stage 1 is empty or the
        output buffer has room; it does not depend on ``o.ready``.
    o : Out(stream.Signature(checked_layout()))
        Verdicts, in order, :data:`CHECK_LATENCY` cycles after their input at the earliest.
        ``valid`` and ``payload`` are registers.
    i_flush : In(1)
        Drop every word in the pipeline (the controller starts a new program).
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(word_layout())),
            "o": Out(stream.Signature(checked_layout())),
            "i_flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        W = cfg.row_width
        lw = (W - 1).bit_length()

        m.submodules.verdicts = verdicts = ResetInserter(self.i_flush)(
            RegisteredFIFO(width=data.Layout.cast(checked_layout()).size, depth=OUT_DEPTH))
        s1_valid = Signal()
        s1_word = Signal(INSTR_BITS)
        s1_pc = Signal(33)
        s1_move = Signal()
        m.d.comb += [
            s1_move.eq(s1_valid & verdicts.w_rdy),
            self.i.ready.eq(~s1_valid | verdicts.w_rdy),
            self.o.valid.eq(verdicts.r_rdy),
            self.o.payload.eq(verdicts.r_data),
            verdicts.r_en.eq(self.o.ready),
        ]

        # ---- stage 1: products -----------------------------------------------------------
        ops = self.i.payload.ops
        s1_pa, s1_pb, s1_pc_ = (Signal(signed(52), name=f"s1_p{x}") for x in "abc")
        s1_work = Signal(unsigned(34))
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [s1_word.eq(self.i.payload.word), s1_pc.eq(self.i.payload.pc),
                         s1_pa.eq(ops.ca * ops.xa), s1_pb.eq(ops.cb * ops.xb),
                         s1_pc_.eq(ops.cc * ops.xc), s1_work.eq(ops.wa * ops.wb)]
        with m.If(self.i_flush):
            m.d.sync += s1_valid.eq(0)
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += s1_valid.eq(1)
        with m.Elif(s1_move):
            m.d.sync += s1_valid.eq(0)

        # ---- stage 2: comparisons --------------------------------------------------------
        w = s1_word
        op = _view(Header, w).opcode
        dma, gemm = _view(DmaInstr, w), _view(GemmInstr, w)
        pim, vec = _view(PimInstr, w), _view(VecInstr, w)

        def size(space):
            return Mux(space == Space.ACC, cfg.acc_elems, cfg.sp_bytes)

        def misaligned(*vals):
            out = 0
            for v in vals:
                out = out | (v[:lw] != 0) if lw else out
            return out

        # Opcode and reserved bits (hw.isa.decode).
        legal = Signal()
        reserved = Signal()
        any_op = 0
        any_res = 0
        for opc in Opcode:
            is_op = op == opc
            any_op = any_op | is_op
            any_res = any_res | (is_op & ((w & reserved_mask(opc)) != 0))
        m.d.comb += [legal.eq(any_op), reserved.eq(any_res)]

        # DMA.
        esize = Mux(dma.space == Space.ACC, 4, 1)
        d_empty = (dma.rows == 0) | (dma.len == 0)
        d_e0 = Signal(signed(54))
        d_e1 = Signal(signed(54))
        m.d.comb += [d_e0.eq(dma.dram_addr), d_e1.eq(dma.dram_addr + s1_pa)]
        bcast = dma.bcast & (op == Opcode.DMA_LOAD)
        span = Mux(bcast, 0, (dma.len - 1) * esize)
        # e1 = e0 + product: the product's sign says which end is lower, no comparison needed.
        d_lo = Mux(s1_pa[-1], d_e1, d_e0)
        d_hi = Mux(s1_pa[-1], d_e0, d_e1) + span + esize - 1
        dram_bad = (d_lo < 0) | (d_hi >= cfg.dram_bytes)
        s_e0 = Signal(signed(54))
        s_e1 = Signal(signed(54))
        m.d.comb += [s_e0.eq(dma.sram_addr), s_e1.eq(dma.sram_addr + s1_pb)]
        s_lo = Mux(s1_pb[-1], s_e1, s_e0)
        s_hi = Mux(s1_pb[-1], s_e0, s_e1) + dma.len - 1
        sram_bad = (s_lo < 0) | (s_hi >= size(dma.space))
        idx_bad = dma.idx_addr >= cfg.acc_elems
        err_dma = _first([(~d_empty & dram_bad, ErrorCode.DRAM_RANGE),
                          (~d_empty & sram_bad, ErrorCode.SRAM_RANGE)])
        err_gather = _first([(idx_bad, ErrorCode.SRAM_RANGE),
                             (~d_empty & sram_bad, ErrorCode.SRAM_RANGE)])
        late = Signal()
        m.d.comb += late.eq(~idx_bad & ~d_empty & sram_bad)

        # GEMM (GoldenMachine raises ILLEGAL_OPCODE first when there is no GEMM core).
        if cfg.gemm_core:
            g_empty = (gemm.m == 0) | (gemm.n == 0)
            g_mis = misaligned(gemm.a_addr, gemm.a_stride, gemm.b_addr, gemm.b_stride,
                               gemm.c_addr, gemm.c_stride)
            g_overlap = (gemm.m > cfg.array_rows) & (gemm.c_stride < gemm.n * W)
            g_a_bad = gemm.a_addr + s1_pa + gemm.k * W - 1 >= cfg.sp_bytes
            g_b_bad = gemm.b_addr + s1_pb + gemm.k * W - 1 >= cfg.sp_bytes
            g_c_bad = gemm.c_addr + s1_pc_ + gemm.n * W - 1 >= cfg.acc_elems
            err_gemm = _first([(g_mis, ErrorCode.MISALIGNED),
                               (~g_empty & g_overlap, ErrorCode.ILLEGAL_FIELD),
                               (~g_empty & (gemm.k != 0) & (g_a_bad | g_b_bad),
                                ErrorCode.SRAM_RANGE),
                               (~g_empty & g_c_bad, ErrorCode.SRAM_RANGE)])
        else:
            err_gemm = ErrorCode.ILLEGAL_OPCODE

        # PIM.
        err_wrgb = _first([
            ((pim.len != 0) & (pim.sram_addr + pim.len - 1 >= cfg.sp_bytes),
             ErrorCode.SRAM_RANGE),
            ((pim.len != 0) & (pim.gb_addr + pim.len > cfg.gbuf_bytes), ErrorCode.PIM_RANGE)])
        kmin = Mux(pim.kc < pim.ncols, pim.kc, pim.ncols)
        slot_bad = (pim.slot >= cfg.pim_slots) | (pim.ncols > s1_pa)
        mac_range = ((pim.row >= cfg.bank_rows) | (pim.col + pim.ncols > cfg.cols_per_row)
                     | (pim.gb_chunk + kmin > cfg.gbuf_chunks) | slot_bad)
        err_mac = _first([((pim.ncols != 0) & (pim.kc == 0), ErrorCode.ILLEGAL_FIELD),
                          ((pim.ncols != 0) & mac_range, ErrorCode.PIM_RANGE)])
        nread = pim.nslots * cfg.dram_banks
        err_read = _first([
            ((pim.nslots != 0) & (pim.slot + pim.nslots > cfg.pim_slots), ErrorCode.PIM_RANGE),
            ((pim.nslots != 0) & (pim.sram_addr + nread - 1 >= cfg.acc_elems),
             ErrorCode.SRAM_RANGE)])

        # Vector.
        def rows_bad(opnd, prod, extent):
            """Row stream ``opnd`` over the rows whose last start is ``addr + prod``: outside
            its SRAM when the lowest start is negative or the highest start + extent − 1 is
            beyond it."""
            e0 = Signal(signed(54))
            e1 = Signal(signed(54))
            m.d.comb += [e0.eq(opnd.addr), e1.eq(opnd.addr + prod)]
            lo = Mux(prod[-1], e1, e0)
            hi = Mux(prod[-1], e0, e1) + extent - 1
            return (lo < 0) | (hi >= size(opnd.space))

        v_mis1 = misaligned(vec.src1.addr, vec.src1.stride)
        v_misd = misaligned(vec.dst.addr, vec.dst.stride)
        v_mis2 = misaligned(vec.src2.addr, vec.src2.stride)
        # One range check per operand: the opcode (and src2's mode) picks the extent of a row
        # (W·W for a transpose's blocks), stage 1 the product (none for a reduction's
        # destination).
        is_trans = op == Opcode.VTRANS
        mode = vec.src2.mode
        src1_bad = rows_bad(vec.src1, s1_pa, Mux(is_trans, W * W, W))
        dst_bad = rows_bad(vec.dst, s1_pb, Mux(is_trans, W * W, W))
        src2_bad = rows_bad(vec.src2, s1_pc_, Mux(mode == Src2Mode.SCALAR, 1, W))
        imm = vec.imm
        lut_bad = (imm < 0) | (imm >= cfg.lut_tables)
        err_lutld = _first([(vec.src1.space != Space.ACC, ErrorCode.ILLEGAL_FIELD),
                            (lut_bad, ErrorCode.ILLEGAL_FIELD),
                            (misaligned(vec.src1.addr), ErrorCode.MISALIGNED),
                            (vec.src1.addr + 255 >= cfg.acc_elems, ErrorCode.SRAM_RANGE)])
        err_trans = _first([(v_mis1, ErrorCode.MISALIGNED),
                            (src1_bad, ErrorCode.SRAM_RANGE),
                            (v_misd, ErrorCode.MISALIGNED),
                            (dst_bad, ErrorCode.SRAM_RANGE)])
        err_red = _first([(v_mis1, ErrorCode.MISALIGNED),
                          (src1_bad, ErrorCode.SRAM_RANGE),
                          (v_misd, ErrorCode.MISALIGNED),
                          (dst_bad, ErrorCode.SRAM_RANGE)])
        src2_vec = _first([(v_mis2, ErrorCode.MISALIGNED),
                           (src2_bad, ErrorCode.SRAM_RANGE)])
        src2_scalar = _first([(src2_bad, ErrorCode.SRAM_RANGE)])
        is_elem = 0
        for opc in _ELEMENTWISE:
            is_elem = is_elem | (op == opc)
        specific = Signal(ErrorCode)
        m.d.comb += specific.eq(
            Mux(op == Opcode.VLUT, Mux(lut_bad, ErrorCode.ILLEGAL_FIELD, ErrorCode.NONE),
                Mux(op == Opcode.VRECIP, Mux(imm < 0, ErrorCode.ILLEGAL_FIELD, ErrorCode.NONE),
                    Mux(is_elem & (mode == Src2Mode.VEC), src2_vec,
                        Mux(is_elem & (mode == Src2Mode.SCALAR), src2_scalar,
                            ErrorCode.NONE)))))
        err_elem = _first([(v_mis1, ErrorCode.MISALIGNED),
                           (src1_bad, ErrorCode.SRAM_RANGE),
                           (v_misd, ErrorCode.MISALIGNED),
                           (dst_bad, ErrorCode.SRAM_RANGE),
                           (specific != ErrorCode.NONE, specific)])
        is_red = 0
        for opc in _REDUCTIONS:
            is_red = is_red | (op == opc)
        err_rows0 = Mux(is_red, ErrorCode.ILLEGAL_FIELD, ErrorCode.NONE)
        err_vec = Signal(ErrorCode)
        m.d.comb += err_vec.eq(
            Mux(op == Opcode.VLUTLD, err_lutld,
                Mux(vec.rows == 0, err_rows0,
                    Mux(op == Opcode.VTRANS, err_trans, Mux(is_red, err_red, err_elem)))))

        # The verdict, in decode order: opcode, reserved bits, enum fields, then execute.
        is_vec = 0
        for o, info in OPCODES.items():
            if info.fmt is VecInstr:
                is_vec = is_vec | (op == o)
        err_exec = Signal(ErrorCode)
        m.d.comb += err_exec.eq(
            Mux((op == Opcode.DMA_LOAD) | (op == Opcode.DMA_STORE), err_dma,
                Mux(op == Opcode.DMA_GATHER, err_gather,
                    Mux(op == Opcode.GEMM, err_gemm,
                        Mux(op == Opcode.PIM_WRGB, err_wrgb,
                            Mux(op == Opcode.PIM_MAC, err_mac,
                                Mux(op == Opcode.PIM_READ, err_read,
                                    Mux(is_vec, err_vec, ErrorCode.NONE))))))))
        bad_mode = is_elem & (mode.as_value() == 3)
        verdict = _first([(~legal, ErrorCode.ILLEGAL_OPCODE),
                          (reserved, ErrorCode.RESERVED_BITS),
                          (bad_mode, ErrorCode.ILLEGAL_FIELD),
                          (1, err_exec)])

        # Work: GEMM m·n·k, PIM_MAC ncols·B·32, DMA bytes.
        work = Signal(WORK_BITS)
        is_dma = (op == Opcode.DMA_LOAD) | (op == Opcode.DMA_GATHER) | (op == Opcode.DMA_STORE)
        dma_work = Mux(dma.len == 0, 0, Mux(dma.space == Space.ACC, s1_work << 2, s1_work))
        work_rest = Mux(op == Opcode.PIM_MAC, pim.ncols * (cfg.dram_banks * cfg.col_bytes),
                        Mux(is_dma, dma_work, 0))
        m.d.comb += work.eq(Mux(op == Opcode.GEMM, s1_work * gemm.k, work_rest)
                            if cfg.gemm_core else work_rest)

        o = data.View(checked_layout(), verdicts.w_data)
        m.d.comb += [o.word.eq(s1_word), o.pc.eq(s1_pc), o.error.eq(verdict),
                     o.late.eq(legal & ~reserved & (op == Opcode.DMA_GATHER) & late),
                     o.work.eq(work), verdicts.w_en.eq(s1_move)]
        return m
