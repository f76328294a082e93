"""DMA store engine: DMA_STORE, scratchpad / accumulator → DRAM."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .byte_shift import select_bytes
from .config import AccelConfig
from .isa import DmaInstr, Space
from .ports import acc_read_signature, dram_port_signature, sp_read_signature

__all__ = ["STORE_START", "DmaStore", "store_window_beats"]

#: First active cycle after the i_cmd handshake (cycle 0).
STORE_START = 1

_COL = 32      # bytes per DRAM column
_ABITS = 35    # signed DRAM byte addresses: in range plus or minus one stride
_SBITS = 22    # signed SRAM element addresses: in range plus or minus one stride
_DBITS = 24    # signed byte offsets within a row (a row is at most 4 × 65 535 bytes)


def store_window_beats(cfg: AccelConfig, space: Space) -> int:
    """SRAM rows the window of ``space`` holds: as many as one DRAM column (32 bytes at any
    alignment) can touch, plus one so that a row can be read while the current column still uses
    the oldest one."""
    B = cfg.row_width * (4 if space is Space.ACC else 1)
    return -(-(_COL + B - 1) // B) + 1


class DmaStore(wiring.Component):
    """Executes DMA_STORE exactly as ``GoldenMachine._exec_dma_store``: rows × len elements of SP
    (int8) or ACC (little-endian int32) to a 2-D strided DRAM region at any byte alignment, with
    negative strides; later rows win where DRAM destinations overlap.

    Microarchitecture (docs/dma.md; exact timing in sim/golden/timing_dma.py):

    * a **read walker** reads every (row, SRAM row) pair, one per cycle; the read data becomes the
      newest slot of a **window** of the last K SRAM rows (:func:`store_window_beats`), the
      older slots being registers;
    * a **column walker** visits every (row, DRAM column) pair and, once the window holds every
      SRAM row the column's bytes come from, cuts the 32 bytes out with one byte shifter and puts
      them, with the byte mask of the row's bytes in that column, into the **request register**.
      When the next pair is the same column (a row starting where the previous one ended), it
      merges into the register (its bytes win) instead of becoming a new request, so a column is
      written once per run of consecutive pairs. A read is allowed only while the oldest window
      slot is not needed by the current column.

    The DRAM sees writes in program order, so later rows also win across requests, provided the
    channel applies one port's writes in order.

    ``o_done`` is high for one cycle, in the cycle after the last write request's handshake
    (for an empty transfer, the cycle after the i_cmd handshake); the engine accepts its next
    instruction in that cycle. A write counts as done once the channel has accepted it: the
    channel must order it before any request it accepts later, from any port.

    Parameters
    ----------
    cfg : AccelConfig

    Ports
    -----
    i_cmd : ``In(stream.Signature(DmaInstr))``
        DMA_STORE instructions that passed the controller's checks.
    o_done, o_busy : ``Out(1)``
        Completion pulse (once per instruction, in order) and busy level (``~i_cmd.ready``).
    dram : ``Out(dram_port_signature(cfg))``
        Column write requests (``write`` = 1, byte mask ``wmask``). ``rsp`` is never expected;
        its ``ready`` is tied high.
    sp_rd, acc_rd : ``In(sp_read_signature(cfg))``, ``In(acc_read_signature(cfg))``
        SRAM read ports; ``en`` is high only in cycles that read.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        super().__init__({
            "i_cmd": In(stream.Signature(DmaInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "dram": Out(dram_port_signature(cfg)),
            "sp_rd": In(sp_read_signature(cfg)),
            "acc_rd": In(acc_read_signature(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        W = cfg.row_width
        lw = W.bit_length() - 1
        K_sp = store_window_beats(cfg, Space.SP)
        K_acc = store_window_beats(cfg, Space.ACC)

        ins = Signal(DmaInstr)
        done = Signal()
        m.d.sync += done.eq(0)
        m.d.comb += self.o_done.eq(done)

        # Intermediate values are named signals: an expression object used in several places
        # is otherwise elaborated once per use.
        acc = Signal()
        K = Signal(range(max(K_sp, K_acc) + 1))
        m.d.comb += [acc.eq(ins.space == Space.ACC), K.eq(Mux(acc, K_acc, K_sp))]
        dstride = ins.dram_stride
        sstride = ins.sram_stride

        # Read walker state.
        rd_active = Signal()
        rd_b = Signal(signed(_SBITS))          # SRAM element address of the current row
        rd_q = Signal(signed(_SBITS))          # SRAM row to read next
        rd_left = Signal(16)
        # Column walker state.
        as_active = Signal()
        as_a = Signal(signed(_ABITS))          # DRAM byte address of the current row
        as_bl = Signal(max(lw, 1))             # lane of the current row's first element
        as_c = Signal(signed(_ABITS - 5))      # current column
        as_left = Signal(16)
        # The request register.
        out_valid = Signal()
        out_final = Signal()
        out_col = Signal(signed(_ABITS - 5))
        out_data = Signal(8 * _COL)
        out_mask = Signal(_COL)

        req = self.dram.req
        req_hs = Signal()
        m.d.comb += req_hs.eq(req.valid & req.ready)
        m.d.comb += [
            req.valid.eq(out_valid & out_final),
            req.payload.addr.eq(out_col),
            req.payload.write.eq(1),
            req.payload.wdata.eq(out_data),
            req.payload.wmask.eq(out_mask),
            self.dram.rsp.ready.eq(1),
        ]

        # Comb values are assigned unconditionally (outside m.If): the Verilog then has
        # continuous assignments, which Icarus evaluates at time 0, rather than always @*
        # blocks, which it only runs when an input changes.
        cmd = self.i_cmd.payload
        idle = Signal()
        a = Signal(signed(_ABITS))
        b = Signal(signed(_SBITS))
        m.d.comb += [a.eq(cmd.dram_addr), b.eq(cmd.sram_addr)]
        with m.FSM() as fsm:
            with m.State("IDLE"), m.If(self.i_cmd.valid):
                m.d.sync += ins.eq(cmd)
                with m.If((cmd.rows == 0) | (cmd.len == 0)):
                    m.d.sync += done.eq(1)
                with m.Else():
                    m.d.sync += [
                        rd_active.eq(1), rd_b.eq(b), rd_q.eq(b >> lw),
                        rd_left.eq(cmd.rows),
                        as_active.eq(1),
                    ]
                    m.next = "RUN"
            # Once the last pair has been formed, its request is the instruction's last.
            with m.State("RUN"), m.If(~as_active & req_hs):
                m.d.sync += done.eq(1)
                m.next = "IDLE"
        m.d.comb += [idle.eq(fsm.ongoing("IDLE")), self.i_cmd.ready.eq(idle),
                     self.o_busy.eq(~idle)]

        # ---------------------------------------------------------------------------------
        # Column walker: the geometry of the current (row, column) pair — which beats the
        # column needs, where its bytes sit in the window, its byte mask — is held in registers,
        # computed in the cycle the walker moves to the pair (from the instruction in IDLE, from
        # the next pair when a pair is formed). The request path then starts at registers instead
        # of running the whole geometry, the byte window and the merge in one cycle (FPGA
        # timing, docs/fpga.md); the cycles are the same.
        #
        # The geometry is kept relative to the row: D is the byte offset of the column's start
        # from lane 0 of the row's first beat (negative in a first column that starts before
        # the row). A column's beats relative to the row are its first and last byte's D
        # divided by the beat's bytes, its offset in its first beat is D's low bits, and the
        # next column's D is D + 32; what a row adds (its beats, its bytes in its last column,
        # whether the next row shares that column) depends only on the row's address modulo a
        # column and a beat. So a move is a few short additions, not the absolute address
        # arithmetic of DRAM and SRAM addresses (FPGA timing: that was the store engine's
        # critical path, docs/fpga.md).
        src = Signal(DmaInstr)                 # the instruction the next pair belongs to
        m.d.comb += src.eq(Mux(idle, cmd.as_value(), ins.as_value()))
        g_d = Signal(signed(_DBITS))           # D of the current column
        g_blr = Signal(_DBITS)                 # beat of the pair's first byte, from the row's first
        # beats from the pair's first byte's to its last's: a column touches at most K − 1
        g_span = Signal(range(max(K_sp, K_acc)))
        # The window slot holding the pair's first beat (beat − beats read + K, 0..K) and the
        # window position of the column's byte 0, (slot × beat bytes) + off + 32 (off: the
        # column's start − the DRAM address of lane 0 of the pair's first beat): registers
        # updated with every read and move, so that neither the read enable, nor the formed
        # condition, nor the byte shifter waits on an addition (FPGA timing, docs/fpga.md).
        slot = Signal(range(max(K_sp, K_acc) + 1))
        pos = Signal(range(_COL + max((K_sp + 1) * W, (K_acc + 1) * 4 * W) + _COL))
        g_mask = Signal(_COL)                  # the row's bytes in the column
        g_last = Signal()                      # the row's last column
        g_final = Signal()                     # the request is complete (no merge follows)
        # The row's registers, set when the walker enters it.
        r_nbm1 = Signal(_DBITS)                # the row's beats − 1
        r_e5 = Signal(range(_COL + 1))         # the row's bytes in its last column
        r_flast = Signal()                     # the row's last column is final
        r_cols = Signal(_DBITS)                # the row's columns after the current one

        def beats(x, space_acc):
            """Beat (relative to the row's first) of the byte at offset ``x`` from its lane 0."""
            return Mux(space_acc, x >> (lw + 2), x >> lw)

        ones = Const((1 << _COL) - 1, _COL)
        # The row the walker enters: the instruction's first while idle, else the next one.
        row_a = Signal(signed(_ABITS))
        row_bl = Signal(max(lw, 1))            # the row's first element's lane
        row_left = Signal(16)
        m.d.comb += [
            row_a.eq(Mux(idle, a, as_a + dstride)),
            row_bl.eq(Mux(idle, b, as_bl + sstride) if lw else 0),
            row_left.eq(Mux(idle, cmd.rows, as_left - 1)),
        ]
        rg = self._row_geometry(m, src, lw, row_a[:5], row_bl, row_left)
        src_acc = src.space == Space.ACC
        f_last = Signal()                      # the row's first column is its last
        f_bh = Signal(_DBITS)                  # beat of its last byte, relative to the row
        m.d.comb += [
            f_last.eq(rg["ncm1"] == 0),
            # D + 31 = (lane bytes − a5) + 31 = lane bytes + ~a5
            f_bh.eq(Mux(f_last, rg["nbm1"],
                        beats(Mux(src_acc, row_bl << 2, row_bl) + ~row_a[:5], src_acc))),
        ]
        # The next column of the current row.
        d1 = Signal(signed(_DBITS))
        c_last = Signal()
        c_off = Signal(lw + 2)                 # its start's byte in its first beat: D's low bits
        c_blr = Signal(_DBITS)                 # its first beat, from the row's first
        m.d.comb += [d1.eq(g_d + _COL), c_last.eq(r_cols == 1), c_blr.eq(beats(d1, acc)),
                     c_off.eq(Mux(acc, d1[:lw + 2], d1[:lw] if lw else 0))]

        # Read walker: reads while the window's oldest slot is not the pair's first beat.
        rd_q1 = (rd_b + ins.len - 1) >> lw
        b_n = Signal(signed(_SBITS))           # the next row's SRAM address
        m.d.comb += b_n.eq(rd_b + sstride)
        read = Signal()
        m.d.comb += read.eq(rd_active & as_active & (slot != 0))
        m.d.comb += [
            self.sp_rd.addr.eq(rd_q), self.sp_rd.en.eq(read & ~acc),
            self.acc_rd.addr.eq(rd_q), self.acc_rd.en.eq(read & acc),
        ]
        sp_win = [Signal(8 * W, name=f"sp_win{i}") for i in range(K_sp - 1)]
        acc_win = [Signal(32 * W, name=f"acc_win{i}") for i in range(K_acc - 1)]
        with m.If(read):
            # The read port's data (the previous read) moves into the registers.
            for win, port in ((sp_win, self.sp_rd), (acc_win, self.acc_rd)):
                m.d.sync += [win[i].eq(win[i + 1]) for i in range(len(win) - 1)]
                m.d.sync += win[-1].eq(port.data)
            with m.If(rd_q == rd_q1):
                with m.If(rd_left == 1):
                    m.d.sync += rd_active.eq(0)
                with m.Else():
                    m.d.sync += [rd_b.eq(b_n), rd_q.eq(b_n >> lw), rd_left.eq(rd_left - 1)]
            with m.Else():
                m.d.sync += rd_q.eq(rd_q + 1)

        # Column data: the column's byte 0 is at `pos` − 32 from the start of window slot 0
        # (slot K - 1 is the read port's data, slot 0 the oldest register).
        zeros = Const(0, 8 * _COL)
        # When a pair forms, its slot is below K and pos below this bound.
        cut_pos = pos[:Shape.cast(range(_COL + max(K_sp * W, K_acc * 4 * W) + _COL)).width]
        cut_sp = select_bytes(m, Cat(zeros, *sp_win, self.sp_rd.data), cut_pos, _COL,
                              name="cut_sp")
        cut_acc = select_bytes(m, Cat(zeros, *acc_win, self.acc_rd.data), cut_pos, _COL,
                               name="cut_acc")
        new_data = Signal(8 * _COL)
        m.d.comb += new_data.eq(Mux(acc, cut_acc, cut_sp))

        merge = Signal()
        form = Signal()
        m.d.comb += [
            merge.eq(out_valid & ~out_final),
            # the pair's last beat has been read: span < beats read − first beat = K − slot
            form.eq(as_active & (g_span + slot < K) & (~out_valid | ~out_final | req_hs)),
        ]

        def beat_bytes(x, space_acc):
            """``x`` beats in bytes: a shift, not a multiplier."""
            return Mux(space_acc, x << (lw + 2), x << lw)

        # The walker and its geometry move together: to the instruction's first pair while
        # idle, to the next pair when a pair is formed. The slot moves by the beats between
        # the two pairs' first bytes, less one for a read in the same cycle.
        n_slot = Signal(range(max(K_sp, K_acc) + 1))
        with m.If(idle):
            m.d.comb += n_slot.eq(Mux(src_acc, K_acc, K_sp))
        with m.Elif(form & g_last):
            m.d.comb += n_slot.eq(slot + (r_nbm1 + 1 - g_blr) - read)
        with m.Elif(form):
            m.d.comb += n_slot.eq(slot + (c_blr - g_blr) - read)
        with m.Else():
            m.d.comb += n_slot.eq(slot - read)
        m.d.sync += slot.eq(n_slot)
        with m.If(idle | (form & g_last)):
            m.d.sync += [
                as_a.eq(row_a), as_bl.eq(row_bl), as_left.eq(row_left), as_c.eq(row_a >> 5),
                r_nbm1.eq(rg["nbm1"]), r_e5.eq(rg["e5"]), r_flast.eq(rg["flast"]),
                r_cols.eq(rg["ncm1"]),
                g_d.eq(rg["d0"]), g_blr.eq(0), g_span.eq(f_bh),
                pos.eq(beat_bytes(n_slot, src_acc) + rg["d0"] + _COL),
                g_mask.eq((ones << row_a[:5]) & Mux(f_last, ~(ones << rg["e5"]), ones)),
                g_last.eq(f_last), g_final.eq(~(f_last & rg["flast"])),
            ]
        with m.Elif(form):
            m.d.sync += [
                as_c.eq(as_c + 1), r_cols.eq(r_cols - 1), g_d.eq(d1), g_blr.eq(c_blr),
                g_span.eq(Mux(c_last, r_nbm1, beats(g_d + (2 * _COL - 1), acc)) - c_blr),
                pos.eq(beat_bytes(n_slot, acc) + c_off + _COL),
                g_mask.eq(Mux(c_last, ~(ones << r_e5), ones)),
                g_last.eq(c_last), g_final.eq(~(c_last & r_flast)),
            ]
        with m.Else():
            m.d.sync += pos.eq(pos - beat_bytes(read, acc))
        with m.If(form):
            m.d.sync += [out_valid.eq(1), out_final.eq(g_final), out_col.eq(as_c)]
            with m.If(merge):
                m.d.sync += out_mask.eq(out_mask | g_mask)
                m.d.sync += out_data.eq(Cat(
                    Mux(g_mask[x], new_data.word_select(x, 8), out_data.word_select(x, 8))
                    for x in range(_COL)))
            with m.Else():
                m.d.sync += [out_mask.eq(g_mask), out_data.eq(new_data)]
            with m.If(g_last & (as_left == 1)):
                m.d.sync += as_active.eq(0)
        with m.Elif(req_hs):
            m.d.sync += out_valid.eq(0)
        return m

    @staticmethod
    def _row_geometry(m: Module, src, lw: int, a5, bl, left) -> dict:
        """What the column walker needs of the row of instruction ``src`` whose first DRAM
        byte is ``a5`` bytes into its column and whose first element is in lane ``bl`` of its
        first SRAM row (``left``: rows left including this one), as combinational signals:
        ``d0`` (the first column's start minus the DRAM address of the row's first beat's
        lane 0), ``nbm1`` (the row's beats − 1), ``ncm1`` (its columns − 1), ``e5`` (its bytes
        in its last column, 1..32) and ``flast`` (its last column is final: the next row
        does not start in it)."""
        acc = src.space == Space.ACC
        lm1 = Signal(signed(_DBITS))           # the row's bytes − 1
        blb = Signal(_DBITS)                   # bytes before the row in its first beat
        dend = Signal(signed(_DBITS))          # D of the row's last byte
        t = Signal(signed(_DBITS))             # the row's last byte, from its first column's start
        out = {"d0": Signal(signed(_DBITS)), "nbm1": Signal(_DBITS), "ncm1": Signal(_DBITS),
               "e5": Signal(range(_COL + 1)), "flast": Signal()}
        m.d.comb += [
            lm1.eq(Mux(acc, src.len << 2, src.len) - 1),
            blb.eq(Mux(acc, bl << 2, bl)),
            dend.eq(blb + lm1),
            t.eq(a5 + lm1),
            out["d0"].eq(blb - a5),
            out["nbm1"].eq(Mux(acc, dend >> (lw + 2), dend >> lw)),
            out["ncm1"].eq(t >> 5),
            out["e5"].eq(t[:5] + 1),
            # The next row starts in this row's last column: the rows' column indices differ
            # by the stride's, whatever the row's column.
            out["flast"].eq((left != 1) & (((a5 + src.dram_stride) >> 5) == out["ncm1"])),
        ]
        return out
