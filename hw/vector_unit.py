"""The vector unit: element-wise ops, requantisation, LUTs, reductions, masks and transposes."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import COUNT_BITS, SRAM_ADDR_BITS, AccelConfig
from .isa import Opcode, Space, Src2Mode, VecInstr
from .ports import (
    acc_read_signature,
    acc_write_signature,
    sp_read_signature,
    sp_write_signature,
)
from .vec_alu import VecAlu
from .vec_divider import VecDivider
from .vec_isqrt import VecIsqrt
from .vec_lut import VecLut
from .vec_reducer import VecReducer
from .vec_requant import T_BITS, VecRequant, clamp, requant_prepare, saturate
from .vec_transposer import VecTransposer

__all__ = ["VectorUnit"]

_INT32_MIN = -(1 << 31)


def _select(values: list, index):
    """``values[index]``; a single value needs no multiplexer (nor an incomplete case)."""
    return values[0] if len(values) == 1 else Array(values)[index]


def _times(x, k: int):
    """``x · k`` for a constant ``k ≥ 0`` as a sum of shifts of ``x`` (no multiplier)."""
    terms = [x << i for i in range(k.bit_length()) if k >> i & 1]
    return sum(terms[1:], terms[0]) if terms else Const(0)


class VectorUnit(wiring.Component):
    """Executes every ``VEC`` instruction exactly as ``GoldenMachine`` does, one at a time.

    Instructions run to completion one after another (the next one is accepted in the cycle
    ``o_done`` pulses), so an instruction sees every result of the previous one. Within an
    instruction a six-stage pipeline streams one beat per cycle: a row of ``W`` elements is
    ``W / L`` beats of ``L = vector_lanes`` lanes (one row per cycle when ``L = W``)::

        s0  issue: row addresses from running counters → SRAM read ports
        s1  read data arrives: operands selected and sign-extended, VMASK condition; VTRANS
            lines and VLUTLD table rows are handled here
        s2  t = a op b (64-bit exact; VMUL is a 32×32 multiply), mask; LUT index → LUT read
            port; or the reducer accumulates; or the divider / square root start (31 / 16 steps)
        s3  select t, a LUT entry, a quotient or a root; 2t shifted by the shift's multiple of
            16 (``requant_prepare``) → requantiser input register
        s4  requantisation sat_T(rshift_round(t, shift)) → write register; the reducer's
            result and VTRANS lines are loaded into the write register directly
        s5  SRAM write (per-lane enables select the beat's lanes)

    s3 has a cycle of its own only for the clock: selecting among the 64-bit sources in front
    of the requantiser's variable shift and carry chains was the unit's critical path. The LUT
    is read in s2 from the registered operand, not in s1 from the SRAM's output: the SRAM read,
    the operand select and the clamp in front of the table's block-RAM address were the routed
    critical path of the ``fpga`` design (docs/fpga.md). Either way its entry reaches s4 at
    the same cycle, so the timing is unchanged.

    Reads of later rows therefore run ahead of writes of earlier rows: a row must not read
    what an earlier row of the same instruction writes (the golden model's race rule). A
    ``SCALAR`` second operand is read once per row, on its first beat, so that the row's own
    writes (which later beats can see when ``W / L`` > 6) cannot change it.

    Cycles of one instruction (see ``sim.golden.timing_vec.vec_cycles``) are counted from the
    cycle the ``i_cmd`` handshake completes (*S*) to the cycle ``o_done`` is high (*D*); ``ready``
    is high again in *D*, so a back-to-back instruction is accepted in *D*, and every write of
    the finished instruction has reached the SRAM by then.

    Parameters
    ----------
    cfg : AccelConfig
        Uses ``row_width`` (W), ``vector_lanes`` (L, which divides W), ``lut_tables`` and the
        SRAM sizes (port address widths).

    Ports
    -----
    i_cmd : In(stream.Signature(VecInstr))
        Instructions; legal fields only (the controller's decode checks have passed). ``ready``
        is high only while the unit is idle; ``valid`` may come and go freely.
    o_done : Out(1)
        High for one cycle per instruction, in order, once its last result is written.
    o_busy : Out(1)
        Executing an instruction: high from its handshake cycle to the cycle before its
        ``o_done``, so for exactly ``vec_cycles`` cycles per instruction.
    sp_rd1, sp_rd2 : In(sp_read_signature(cfg))
        Scratchpad read ports (row address, data one cycle later) for src1 and src2.
    sp_wr : In(sp_write_signature(cfg))
        Scratchpad write port, one enable per element.
    acc_rd1, acc_rd2, acc_wr : as above, for the accumulator.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise ValueError(f"cfg must be an AccelConfig, not {cfg!r}")
        if cfg.row_width % cfg.vector_lanes:
            raise ValueError(f"vector_lanes must divide the row width {cfg.row_width}, "
                             f"not {cfg.vector_lanes!r}")
        self.cfg = cfg
        super().__init__({
            "i_cmd": In(stream.Signature(VecInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "sp_rd1": In(sp_read_signature(cfg)),
            "sp_rd2": In(sp_read_signature(cfg)),
            "sp_wr": In(sp_write_signature(cfg)),
            "acc_rd1": In(acc_read_signature(cfg)),
            "acc_rd2": In(acc_read_signature(cfg)),
            "acc_wr": In(acc_write_signature(cfg)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.cfg
        W, L = cfg.row_width, cfg.vector_lanes
        B = W // L                                   # beats per row
        lw = (W - 1).bit_length()                    # log2 W
        ra = SRAM_ADDR_BITS - lw                     # row-address counter width
        lut_rows = 256 // W                          # ACC rows of one table

        m.submodules.alu = alu = VecAlu(L)
        m.submodules.div = div = VecDivider(L)
        m.submodules.isqrt = sqr = VecIsqrt(L)
        m.submodules.lut = lut = VecLut(cfg)
        m.submodules.reducer = red = VecReducer(cfg)
        m.submodules.transposer = tp = VecTransposer(cfg)
        m.submodules.requant = rq = VecRequant(L)

        # ------------------------------------------------------------------------------------
        # The instruction being executed and its decoded classes (held for its whole run).
        ins = Signal(VecInstr)
        op = ins.hdr.opcode
        is_red = (op == Opcode.VREDSUM) | (op == Opcode.VREDMAX) | (op == Opcode.VARGMAX)
        is_trans = op == Opcode.VTRANS
        is_lutld = op == Opcode.VLUTLD
        is_recip = op == Opcode.VRECIP
        is_isqrt = op == Opcode.VISQRT
        is_lut = op == Opcode.VLUT
        is_iter = is_recip | is_isqrt
        is_elem = ~(is_red | is_trans | is_lutld)
        binary = ((op == Opcode.VADD) | (op == Opcode.VSUB) | (op == Opcode.VMUL)
                  | (op == Opcode.VMAX) | (op == Opcode.VMIN))
        has_shift = binary | is_lut | is_iter
        src2_vec = binary & (ins.src2.mode == Src2Mode.VEC)
        src2_scalar = binary & (ins.src2.mode == Src2Mode.SCALAR)
        src1_acc = ins.src1.space == Space.ACC
        src2_acc = ins.src2.space == Space.ACC
        dst_acc = ins.dst.space == Space.ACC

        # ------------------------------------------------------------------------------------
        # s0: issue. Counters walk the operands; addresses are taken modulo their width, which
        # is exact because the controller has checked that every row touched is in range.
        s0_row = Signal(COUNT_BITS)          # row r (element-wise, reductions); table row (LUTLD)
        s0_beat = Signal(range(max(B, 2)))   # at least 1 bit: no zero-width vectors in Verilog
        s0_pace = Signal(range(VecDivider.STEPS))
        s0_src1 = Signal(ra)                 # src1 row; VTRANS: src1 block; VLUTLD: ACC row
        s0_src2 = Signal(SRAM_ADDR_BITS)     # src2 row (VEC) or element address (SCALAR)
        s0_dst = Signal(ra)                  # dst row; VTRANS: dst block
        s0_line = Signal(range(W))           # VTRANS line within the block
        s0_block = Signal(COUNT_BITS + 1)    # VTRANS block being read (rows + 1 steps)
        # VMASK's affine condition r·mask_a + l·mask_b + imm > 0, built up by additions as the
        # counters step (no multipliers): the row's term r·mask_a and the beat's b·L·mask_b.
        s0_rterm = Signal(signed(COUNT_BITS + 17))
        s0_bterm = Signal(signed(lw + 17))

        issue = Signal()
        last_elem = (s0_row == ins.rows - 1) & (s0_beat == B - 1)
        last_trans = (s0_block == ins.rows) & (s0_line == W - 1)
        last_lutld = s0_row == lut_rows - 1
        s0_last = Mux(is_trans, last_trans, Mux(is_lutld, last_lutld, last_elem))
        trans_read = s0_block < ins.rows
        trans_out = s0_block != 0

        src1_row = Mux(is_trans, s0_src1 + s0_line, s0_src1)
        src2_row = Mux(src2_scalar, s0_src2[lw:], s0_src2[:ra])
        read1 = issue & (~is_trans | trans_read)
        read2 = issue & (src2_vec | (src2_scalar & (s0_beat == 0)))
        m.d.comb += [
            self.sp_rd1.addr.eq(src1_row), self.acc_rd1.addr.eq(src1_row),
            self.sp_rd1.en.eq(read1 & ~src1_acc), self.acc_rd1.en.eq(read1 & src1_acc),
            self.sp_rd2.addr.eq(src2_row), self.acc_rd2.addr.eq(src2_row),
            self.sp_rd2.en.eq(read2 & ~src2_acc), self.acc_rd2.en.eq(read2 & src2_acc),
        ]

        # s1 registers: what the data arriving from the read ports belongs to.
        s1_valid = Signal()
        s1_last = Signal()
        s1_first = Signal()
        s1_beat = Signal(range(max(B, 2)))
        s1_row = Signal(COUNT_BITS)
        s1_dst = Signal(ra)
        s1_src2_lane = Signal(range(W))
        s1_read = Signal()
        s1_out = Signal()
        s1_line = Signal(range(W))
        s1_orient = Signal()
        s1_lutaddr = Signal(range(lut.words))
        s1_rbterm = Signal(signed(COUNT_BITS + 18))       # r·mask_a + b·L·mask_b
        # Per lane j, held for the instruction: imm + j·mask_b − 1, so that the condition is
        # r·mask_a + b·L·mask_b + (imm + j·mask_b − 1) ≥ 0, the sign of one sum.
        mask_c = [Signal(signed(lw + 35), name=f"mask_c{j}") for j in range(L)]
        m.d.sync += s1_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [
                s1_last.eq(s0_last), s1_first.eq(s0_row == 0), s1_beat.eq(s0_beat),
                s1_row.eq(s0_row), s1_dst.eq(Mux(is_trans, s0_dst + s0_line, s0_dst)),
                s1_src2_lane.eq(s0_src2[:lw]), s1_read.eq(trans_read), s1_out.eq(trans_out),
                s1_line.eq(s0_line), s1_orient.eq(s0_block[0]),
                s1_lutaddr.eq(Cat(s0_row[:(lut_rows - 1).bit_length()], ins.imm)),
                s1_rbterm.eq(s0_rterm + s0_bterm),
            ]
            with m.If(is_iter):
                m.d.sync += s0_pace.eq(Mux(is_recip, VecDivider.STEPS, VecIsqrt.STEPS) - 1)
            with m.If(is_trans):
                with m.If(s0_line == W - 1):
                    m.d.sync += [s0_line.eq(0), s0_block.eq(s0_block + 1)]
                    with m.If(trans_read):
                        m.d.sync += s0_src1.eq(s0_src1 + ins.src1.stride[lw:])
                    with m.If(trans_out):
                        m.d.sync += s0_dst.eq(s0_dst + ins.dst.stride[lw:])
                with m.Else():
                    m.d.sync += s0_line.eq(s0_line + 1)
            with m.Elif(is_lutld):
                m.d.sync += [s0_row.eq(s0_row + 1), s0_src1.eq(s0_src1 + 1)]
            with m.Elif(s0_beat == B - 1):
                m.d.sync += [
                    s0_beat.eq(0), s0_row.eq(s0_row + 1),
                    s0_src1.eq(s0_src1 + ins.src1.stride[lw:]),
                    s0_src2.eq(s0_src2 + Mux(src2_scalar, ins.src2.stride.as_unsigned(),
                                             ins.src2.stride[lw:])),
                    s0_dst.eq(s0_dst + ins.dst.stride[lw:]),
                    s0_rterm.eq(s0_rterm + ins.mask_a), s0_bterm.eq(0),
                ]
            with m.Else():
                m.d.sync += [s0_beat.eq(s0_beat + 1),
                             s0_bterm.eq(s0_bterm + _times(ins.mask_b, L))]
        with m.Elif(s0_pace != 0):
            m.d.sync += s0_pace.eq(s0_pace - 1)

        # ------------------------------------------------------------------------------------
        # s1: operands. Rows are sign-extended to 32 bits; a beat takes lanes b·L … b·L+L−1.
        row1 = [Mux(src1_acc, self.acc_rd1.data[p], self.sp_rd1.data[p]) for p in range(W)]
        row2 = [Mux(src2_acc, self.acc_rd2.data[p], self.sp_rd2.data[p]) for p in range(W)]
        scalar_now = Array(row2)[s1_src2_lane]
        scalar_hold = Signal(signed(32))
        scalar = Mux(s1_beat == 0, scalar_now, scalar_hold)
        with m.If(s1_valid & (s1_beat == 0)):
            m.d.sync += scalar_hold.eq(scalar_now)

        s2_valid = Signal()
        s2_a = Signal(data.ArrayLayout(signed(32), L))
        s2_b = Signal(data.ArrayLayout(signed(32), L))
        s2_cond = Signal(L)
        s2_last = Signal()
        s2_first = Signal()
        s2_beat = Signal(range(max(B, 2)))
        s2_row = Signal(COUNT_BITS)
        s2_dst = Signal(ra)
        m.d.sync += s2_valid.eq(s1_valid & (is_elem | is_red))
        m.d.sync += [s2_last.eq(s1_last), s2_first.eq(s1_first), s2_beat.eq(s1_beat),
                     s2_row.eq(s1_row), s2_dst.eq(s1_dst)]
        m.d.comb += lut.i_table.eq(ins.imm)
        for j in range(L):
            a = _select([row1[b * L + j] for b in range(B)], s1_beat)
            vec_b = _select([row2[b * L + j] for b in range(B)], s1_beat)
            m.d.sync += s2_a[j].eq(a)
            m.d.sync += s2_b[j].eq(Mux(src2_scalar, scalar, Mux(src2_vec, vec_b, ins.imm)))
            m.d.sync += s2_cond[j].eq(~(s1_rbterm + mask_c[j])[-1])

        # VTRANS: the arriving row fills a line of the buffer while the same line of the
        # previous block is read out (transposed) to the write register.
        m.d.comb += [tp.i_we.eq(s1_valid & is_trans & s1_read), tp.i_line.eq(s1_line),
                     tp.i_orient.eq(s1_orient)]
        for p in range(W):
            m.d.comb += tp.i_data[p].eq(row1[p])
        # VLUTLD: the arriving accumulator row, saturated to int16, is one LUT word.
        m.d.comb += [lut.i_wr_en.eq(s1_valid & is_lutld), lut.i_wr_addr.eq(s1_lutaddr)]
        for p in range(W):
            d = self.acc_rd1.data[p]
            m.d.comb += lut.i_wr_data[p].eq(clamp(d, 16))

        # ------------------------------------------------------------------------------------
        # s2: compute.
        m.d.comb += [alu.i_op.eq(op), alu.i_a.eq(s2_a), alu.i_b.eq(s2_b)]
        # VLUT: the table index sat8(a) + 128 goes to the LUT from the registered operand, and
        # the entry arrives in s3. (It used to go in s1, straight from the SRAM's output: the
        # SRAM read, the operand select and the clamp in front of the table's block-RAM address
        # were the fpga design's routed critical path.) Adding 128 to an int8 flips its sign
        # bit.
        for j in range(L):
            a8 = clamp(s2_a[j], 8)
            m.d.comb += lut.i_index[j].eq(Cat(a8[:7], ~a8[7]))
        min_t = Mux(dst_acc, _INT32_MIN, -128)
        s3_t = Signal(data.ArrayLayout(signed(T_BITS), L))
        s3_valid = Signal()
        s3_last = Signal()
        s3_beat = Signal(range(max(B, 2)))
        s3_dst = Signal(ra)
        m.d.sync += s3_valid.eq(s2_valid & is_elem & ~is_iter)
        with m.If(s2_valid):
            m.d.sync += [s3_last.eq(s2_last), s3_beat.eq(s2_beat), s3_dst.eq(s2_dst)]
            for j in range(L):
                t = Mux(op == Opcode.VMASK, Mux(s2_cond[j], min_t, s2_a[j]), alu.o_t[j])
                m.d.sync += s3_t[j].eq(t)
        m.d.comb += [
            div.i_start.eq(s2_valid & is_recip), div.i_num.eq(ins.imm), div.i_den.eq(s2_a),
            sqr.i_start.eq(s2_valid & is_isqrt), sqr.i_data.eq(s2_a),
            red.i_op.eq(op), red.i_horizontal.eq(ins.horizontal), red.i_to_acc.eq(dst_acc),
            red.i_valid.eq(s2_valid & is_red), red.i_first.eq(s2_first),
            red.i_last.eq(s2_last), red.i_beat.eq(s2_beat), red.i_row.eq(s2_row),
            red.i_data.eq(s2_a),
        ]

        # ------------------------------------------------------------------------------------
        # s3: select the requantiser's input: this beat's t, or a finished quotient or root. It is
        # registered so that the selection and the requantiser's 65-bit shift and carry chain do
        # not share a cycle; the shift and destination type travel with it, so the requantiser
        # sees only registers.
        s4_u = Signal(data.ArrayLayout(signed(T_BITS + 1), L))   # requant_prepare(t, shift)
        s4_valid = Signal()
        s4_last = Signal()
        s4_beat = Signal(range(max(B, 2)))
        s4_dst = Signal(ra)
        s4_shift = Signal(6)
        s4_to_acc = Signal()
        # At most one of the three is high: the iterative units only run for their own opcode.
        t3_valid = div.o_valid | sqr.o_valid | s3_valid
        m.d.sync += s4_valid.eq(t3_valid)
        shift3 = Signal(6)
        m.d.comb += shift3.eq(Mux(has_shift, ins.shift, 0))
        with m.If(t3_valid):
            m.d.sync += [s4_last.eq(s3_last), s4_beat.eq(s3_beat), s4_dst.eq(s3_dst),
                         s4_shift.eq(shift3), s4_to_acc.eq(dst_acc)]
            for j in range(L):
                t3 = Mux(is_recip, div.o_quot[j],
                         Mux(is_isqrt, sqr.o_root[j], Mux(is_lut, lut.o_data[j], s3_t[j])))
                m.d.sync += s4_u[j].eq(requant_prepare(t3, shift3))

        # ------------------------------------------------------------------------------------
        # s4: requantisation into the write register (which the reducer and VTRANS also load).
        m.d.comb += [rq.i_u.eq(s4_u), rq.i_shift.eq(s4_shift), rq.i_to_acc.eq(s4_to_acc)]

        s5_valid = Signal()
        s5_last = Signal()
        s5_row = Signal(ra)
        s5_en = Signal(W)
        s5_data = Signal(data.ArrayLayout(signed(32), W))
        m.d.sync += s5_valid.eq(0)
        with m.If(s4_valid):
            m.d.sync += [s5_valid.eq(1), s5_last.eq(s4_last), s5_row.eq(s4_dst),
                         s5_en.eq(Const((1 << L) - 1, W) << (s4_beat * L))]
            for p in range(W):
                m.d.sync += s5_data[p].eq(rq.o_out[p % L])
        with m.Elif(red.o_valid):
            m.d.sync += [s5_valid.eq(1), s5_last.eq(1), s5_row.eq(ins.dst.addr[lw:]),
                         s5_en.eq(-1), s5_data.eq(red.o_data)]
        with m.Elif(s1_valid & is_trans & s1_out):
            m.d.sync += [s5_valid.eq(1), s5_last.eq(s1_last), s5_row.eq(s1_dst),
                         s5_en.eq(-1)]
            for p in range(W):
                m.d.sync += s5_data[p].eq(saturate(tp.o_data[p], dst_acc))

        # ------------------------------------------------------------------------------------
        # s5: write.
        m.d.comb += [
            self.sp_wr.addr.eq(s5_row), self.acc_wr.addr.eq(s5_row),
            self.sp_wr.en.eq(Mux(s5_valid & ~dst_acc, s5_en, 0)),
            self.acc_wr.en.eq(Mux(s5_valid & dst_acc, s5_en, 0)),
        ]
        for p in range(W):
            m.d.comb += [self.sp_wr.data[p].eq(s5_data[p][:8]),
                         self.acc_wr.data[p].eq(s5_data[p])]

        # ------------------------------------------------------------------------------------
        # Control.
        finish = (s5_valid & s5_last) | (s1_valid & s1_last & is_lutld)
        done = Signal()
        m.d.comb += self.o_done.eq(done)
        m.d.sync += done.eq(finish)
        # Two flags rather than an FSM: ``busy`` from the handshake to the last write, ``issuing``
        # while s0 still has steps to issue.
        busy = Signal()
        issuing = Signal()
        # o_busy also covers the handshake cycle, so it is high for exactly vec_cycles cycles
        # per instruction (the cycle model's busy count).
        m.d.comb += [self.i_cmd.ready.eq(~busy),
                     self.o_busy.eq(busy | (self.i_cmd.valid & ~busy)),
                     issue.eq(issuing & (~is_iter | (s0_pace == 0)))]
        with m.If(issue & s0_last):
            m.d.sync += issuing.eq(0)
        with m.If(finish):
            m.d.sync += busy.eq(0)
        cmd = self.i_cmd.payload
        with m.If(self.i_cmd.valid & ~busy):
            m.d.sync += [
                ins.eq(cmd), s0_row.eq(0), s0_beat.eq(0), s0_pace.eq(0), s0_line.eq(0),
                s0_block.eq(0), s0_src1.eq(cmd.src1.addr[lw:]), s0_rterm.eq(0), s0_bterm.eq(0),
                *[c.eq(cmd.imm + _times(cmd.mask_b, j) - 1) for j, c in enumerate(mask_c)],
                s0_src2.eq(Mux(cmd.src2.mode == Src2Mode.SCALAR, cmd.src2.addr,
                               cmd.src2.addr[lw:])),
                s0_dst.eq(cmd.dst.addr[lw:]),
            ]
            with m.If((cmd.rows == 0) & (cmd.hdr.opcode != Opcode.VLUTLD)):
                m.d.sync += done.eq(1)
            with m.Else():
                m.d.sync += [busy.eq(1), issuing.eq(1)]
        return m
