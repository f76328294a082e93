"""The GEMM unit: executes ``GEMM`` instructions on the output-stationary systolic array."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import COUNT_BITS, AccelConfig
from .isa import GemmInstr
from .ports import acc_read_signature, acc_write_signature, sp_read_signature
from .systolic_array import SystolicArray

__all__ = ["GemmCore"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


class GemmCore(wiring.Component):
    """``C (=|+=) A·B`` on an R × C output-stationary systolic array, as ``GoldenMachine`` does it.

    An instruction is cut into folds, one per R × C block of the output (row block outer,
    column block inner). A fold streams ``k`` beats into the array — beat k reads SP row
    ``a_addr/W + (i//R)·a_stride/W + k`` (A column k of the row block, row i%R in lane i%R) and
    SP row ``b_addr/W + (j//C)·b_stride/W + k`` (B row k of the column block) — then ends with
    an end-of-fold (eof) beat. The array hands each finished fold to its result shift chain and
    emits it as C output columns, one per cycle; each column is one ACC row
    ``c_addr/W + (i//R)·c_stride/W + j`` holding the R outputs of that column in lanes i%R, so
    the drain writes it in one cycle (after reading it one cycle earlier when accumulating).
    Lanes i ≥ m of the last row block and columns j ≥ n of the last column block are not
    written. ``k = 0`` folds are a lone eof beat (they write 0, or the old value when
    accumulating); ``m = 0`` or ``n = 0`` is one empty fold that writes nothing and still
    pulses ``o_done``.

    Fold overlap (``cfg.gemm_overlap``): the next fold's first beat may follow the previous
    fold's last beat at once (its eof rides on the next fold's first beat) as long as eof beats
    stay C cycles apart, which is what the result chain needs: a fold costs ``max(k, C)``
    cycles. Without overlap, a fold's first beat waits until the previous fold's last MAC has
    happened (R + C − 2 cycles after its eof beat): ``k + R + C − 2`` cycles per fold, which is
    SCALE-Sim's output-stationary count. Successive instructions continue the same fold
    sequence: ``i_cmd`` is ready from the cycle of the current instruction's last beat on.
    Timing is exactly ``sim/golden/timing_gemm.py``; docs/gemm.md derives it.

    C blocks of one instruction must not overlap in ACC (``c_stride ≥ n·W`` when m > R): folds
    are written one after another, while the golden model reads every old value first.

    Parameters
    ----------
    cfg:
        The accelerator configuration (array size, SRAM sizes, ``gemm_overlap``).
    runtime_overlap:
        Replace ``cfg.gemm_overlap`` by an ``i_overlap`` input, so one build can measure both
        modes (test harnesses and benchmarks). Changing it between instructions is safe.

    Ports
    -----
    i_cmd: In(stream.Signature(GemmInstr))
        Instructions, already checked by the controller (aligned, in range). ``ready`` does not
        depend on ``valid``.
    o_done: Out(1)
        High for one cycle per instruction, in order, in the cycle of its last ACC write
        (results are visible to any read from the next cycle on).
    o_busy: Out(1)
        An instruction is accepted and not yet done.
    rd_a, rd_b: In(sp_read_signature(cfg))
        Scratchpad read ports for A and B (row address, one-cycle read latency).
    rd_c: In(acc_read_signature(cfg))
        Accumulator read port, used only when ``accumulate`` is set. The core forwards its own
        write of the same cycle, so the port need not be transparent.
    wr_c: In(acc_write_signature(cfg))
        Accumulator write port; per-lane enables mask the lanes beyond ``m``.
    i_overlap: In(1)
        Only with ``runtime_overlap``: 1 selects fold overlap.
    """

    def __init__(self, cfg: AccelConfig, *, runtime_overlap: bool = False):
        if not isinstance(cfg, AccelConfig):
            raise ValueError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.runtime_overlap = bool(runtime_overlap)
        members = {
            "i_cmd": In(stream.Signature(GemmInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "rd_a": In(sp_read_signature(cfg)),
            "rd_b": In(sp_read_signature(cfg)),
            "rd_c": In(acc_read_signature(cfg)),
            "wr_c": In(acc_write_signature(cfg)),
        }
        if self.runtime_overlap:
            members["i_overlap"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
        lw = W.bit_length() - 1
        sp_aw = len(self.rd_a.addr)
        acc_aw = len(self.rd_c.addr)

        m.submodules.array = array = SystolicArray(R, C)

        # Per-fold facts the drain needs, queued from the fold's first beat to its drain. At
        # most one fold is streaming and the others have had their eof beat, C cycles apart,
        # within the last R + C − 1 cycles; one more entry covers a push into a full queue in
        # the cycle of a pop.
        meta = data.StructLayout({
            "c_row": unsigned(acc_aw),       # ACC row of output column 0 of the fold
            "lanes": unsigned(R),            # lanes (rows i%R) to write
            "ncols": range(C + 1),           # output columns to write
            "accumulate": unsigned(1),
            "last": unsigned(1),             # last fold of its instruction: pulse o_done
        })
        depth = 3 + (R + C - 2) // C
        m.submodules.meta_fifo = meta_fifo = fifo.SyncFIFO(width=Shape.cast(meta).width,
                                                           depth=depth)

        if self.runtime_overlap:
            overlap = self.i_overlap
        else:
            overlap = Const(int(cfg.gemm_overlap), 1)

        # ---- s0: the beat generator (one beat per cycle: an SRAM read and/or an eof) --------
        s0_has_fold = Signal()        # a latched instruction has folds not yet started
        s0_noop = Signal()
        s0_k = Signal(COUNT_BITS)     # beats per fold (0 for an empty instruction)
        s0_acc = Signal()
        s0_a_stride = Signal(sp_aw)
        s0_b_stride = Signal(sp_aw)
        s0_c_stride = Signal(acc_aw)
        s0_b_row0 = Signal(sp_aw)
        s0_n = Signal(COUNT_BITS)
        s0_m_rem = Signal(COUNT_BITS)  # rows of A from the current row block on
        s0_n_rem = Signal(COUNT_BITS)  # columns of B from the current column block on
        s0_a_blk = Signal(sp_aw)       # SP row of beat 0 of the next fold
        s0_b_blk = Signal(sp_aw)
        s0_c_blk = Signal(acc_aw)      # ACC row of column 0 of the next fold
        s0_c_fi = Signal(acc_aw)       # ACC row of column 0 of the current row block
        s0_in_fold = Signal()          # streaming beats 1 … k−1 of a fold
        s0_kcnt = Signal(COUNT_BITS)
        s0_a_ptr = Signal(sp_aw)
        s0_b_ptr = Signal(sp_aw)
        s0_cur_last = Signal()         # the streaming fold is its instruction's last
        s0_eof_due = Signal()          # this cycle's beat carries the previous fold's eof
        sat = R + C - 2                # the longest gap ever waited for
        s0_since = Signal(range(sat + 1), init=sat)  # cycles since the last eof beat

        K = s0_k
        k_zero = K == 0
        last_fold = s0_noop | ((s0_m_rem <= R) & (s0_n_rem <= C))
        # A fold may start when its eof beat will be at least one period after the previous
        # one: merged into the pending eof beat when k ≥ C with overlap, else after a gap.
        merge_ok = overlap & (K >= C)
        gap_ok = Mux(overlap, (s0_since + K) >= C, s0_since >= R + C - 2)
        start = s0_has_fold & ~s0_in_fold & Mux(s0_eof_due, merge_ok, gap_ok)
        mac_first = start & ~k_zero
        mac = s0_in_fold | mac_first
        eof = s0_eof_due | (start & k_zero)
        beat_end = s0_in_fold & (s0_kcnt == K - 1)
        last_mac = beat_end | (mac_first & (K == 1))
        last_beat = (beat_end & s0_cur_last) | (start & last_fold & (K <= 1))
        m.d.comb += self.i_cmd.ready.eq(~(s0_has_fold | s0_in_fold) | last_beat)

        m.d.comb += [
            self.rd_a.addr.eq(Mux(s0_in_fold, s0_a_ptr, s0_a_blk)),
            self.rd_b.addr.eq(Mux(s0_in_fold, s0_b_ptr, s0_b_blk)),
            self.rd_a.en.eq(mac),
            self.rd_b.en.eq(mac),
        ]

        m.d.sync += [
            s0_since.eq(Mux(eof, 1, Mux(s0_since == sat, sat, s0_since + 1))),
            s0_eof_due.eq(last_mac),
        ]
        with m.If(mac_first):
            m.d.sync += [
                s0_in_fold.eq(K > 1),
                s0_kcnt.eq(1),
                s0_a_ptr.eq(s0_a_blk + 1),
                s0_b_ptr.eq(s0_b_blk + 1),
            ]
        with m.Elif(s0_in_fold):
            m.d.sync += [
                s0_kcnt.eq(s0_kcnt + 1),
                s0_a_ptr.eq(s0_a_ptr + 1),
                s0_b_ptr.eq(s0_b_ptr + 1),
            ]
            with m.If(beat_end):
                m.d.sync += s0_in_fold.eq(0)

        push = Signal(meta)
        m.d.comb += [
            push.c_row.eq(s0_c_blk),
            push.lanes.eq(Mux(s0_noop, 0, Cat(*(s0_m_rem > r for r in range(R))))),
            push.ncols.eq(Mux(s0_noop, 0, Mux(s0_n_rem >= C, C, s0_n_rem))),
            push.accumulate.eq(s0_acc),
            push.last.eq(last_fold),
            meta_fifo.w_data.eq(push),
            meta_fifo.w_en.eq(start),
        ]
        with m.If(start):
            m.d.sync += s0_cur_last.eq(last_fold)
            with m.If(last_fold):
                m.d.sync += s0_has_fold.eq(0)
            with m.Elif(s0_n_rem <= C):
                # Next row block: first column block again.
                m.d.sync += [
                    s0_m_rem.eq(s0_m_rem - R),
                    s0_n_rem.eq(s0_n),
                    s0_a_blk.eq(s0_a_blk + s0_a_stride),
                    s0_b_blk.eq(s0_b_row0),
                    s0_c_fi.eq(s0_c_fi + s0_c_stride),
                    s0_c_blk.eq(s0_c_fi + s0_c_stride),
                ]
            with m.Else():
                m.d.sync += [
                    s0_n_rem.eq(s0_n_rem - C),
                    s0_b_blk.eq(s0_b_blk + s0_b_stride),
                    s0_c_blk.eq(s0_c_blk + C),
                ]

        # Latching a new instruction overrides the fold bookkeeping of the last beat above.
        cmd = self.i_cmd.payload
        with m.If(self.i_cmd.valid & self.i_cmd.ready):
            noop = (cmd.m == 0) | (cmd.n == 0)
            m.d.sync += [
                s0_has_fold.eq(1),
                s0_noop.eq(noop),
                s0_k.eq(Mux(noop, 0, cmd.k)),
                s0_acc.eq(cmd.accumulate),
                s0_a_stride.eq(cmd.a_stride[lw:]),
                s0_b_stride.eq(cmd.b_stride[lw:]),
                s0_c_stride.eq(cmd.c_stride[lw:]),
                s0_b_row0.eq(cmd.b_addr[lw:]),
                s0_n.eq(cmd.n),
                s0_m_rem.eq(cmd.m),
                s0_n_rem.eq(cmd.n),
                s0_a_blk.eq(cmd.a_addr[lw:]),
                s0_b_blk.eq(cmd.b_addr[lw:]),
                s0_c_blk.eq(cmd.c_addr[lw:]),
                s0_c_fi.eq(cmd.c_addr[lw:]),
            ]

        # ---- s1: SRAM data arrives; the beat enters the array ------------------------------
        s1_mac = Signal()
        s1_eof = Signal()
        m.d.sync += [s1_mac.eq(mac), s1_eof.eq(eof)]
        # Zero the operands outside MAC beats: an eof-only beat then restarts the accumulators
        # at 0, and stale read data (undefined before the first read) never enters the array.
        for r in range(R):
            m.d.comb += array.a[r].eq(Mux(s1_mac, self.rd_a.data[r], 0))
        for c in range(C):
            m.d.comb += array.b[c].eq(Mux(s1_mac, self.rd_b.data[c], 0))
        m.d.comb += array.eof.eq(s1_eof)

        # ---- d0 / d1: drain one output column per cycle (read old value, then write) --------
        d0_active = Signal()
        d0_i = Signal(range(C))
        d0_meta = Signal(meta)
        cur = Signal(meta)
        drain_start = array.eof_last
        with m.If(drain_start):
            m.d.comb += cur.eq(meta_fifo.r_data)
        with m.Else():
            m.d.comb += cur.eq(d0_meta)
        cur_i = Mux(drain_start, 0, d0_i)
        active = drain_start | d0_active
        col_idx = C - 1 - cur_i
        row = Signal(acc_aw)
        m.d.comb += [
            row.eq(cur.c_row + col_idx),
            meta_fifo.r_en.eq(drain_start),
            self.rd_c.addr.eq(row),
            # Read only what the drain will write: an SRAM bank port is shared, and a read the
            # golden model does not see (an empty fold, columns j ≥ n) could meet another
            # unit's read of that bank.
            self.rd_c.en.eq(active & cur.accumulate & (col_idx < cur.ncols) & cur.lanes.any()),
        ]

        d1_valid = Signal()
        d1_row = Signal(acc_aw)
        d1_en = Signal(R)
        d1_acc = Signal()
        d1_done = Signal()
        d1_fwd = Signal(R)
        d1_fwd_data = Signal(data.ArrayLayout(self.wr_c.data.shape().elem_shape, R))
        with m.If(drain_start):
            m.d.sync += d0_meta.eq(meta_fifo.r_data)
        m.d.sync += [
            d0_active.eq(active & (cur_i != C - 1)),
            d0_i.eq(Mux(active & (cur_i != C - 1), cur_i + 1, 0)),
            d1_valid.eq(active),
            d1_row.eq(row),
            d1_en.eq(Mux(active & (col_idx < cur.ncols), cur.lanes, 0)),
            d1_acc.eq(cur.accumulate),
            d1_done.eq(active & (cur_i == C - 1) & cur.last),
            # A read of the row being written in this cycle returns the old value; forward the
            # new one (only the first column of a fold can meet the last of the previous one).
            d1_fwd.eq(Mux(d1_valid & (d1_row == row), d1_en, 0)),
        ]
        for r in range(R):
            m.d.sync += d1_fwd_data[r].eq(self.wr_c.data[r])
            old = Mux(d1_fwd[r], d1_fwd_data[r], self.rd_c.data[r])
            m.d.comb += self.wr_c.data[r].eq(array.col[r] + Mux(d1_acc, old, 0))
        m.d.comb += [
            self.wr_c.addr.eq(d1_row),
            self.wr_c.en.eq(d1_en),
            self.o_done.eq(d1_done),
            self.o_busy.eq(s0_has_fold | s0_in_fold | s0_eof_due | (meta_fifo.level != 0)
                           | d0_active | d1_valid),
        ]
        return m
