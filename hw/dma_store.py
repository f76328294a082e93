"""DMA store engine: DMA_STORE, scratchpad / accumulator → DRAM."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .isa import DmaInstr, Space
from .ports import acc_read_signature, dram_port_signature, sp_read_signature

__all__ = ["STORE_START", "DmaStore", "store_window_beats"]

#: First active cycle after the i_cmd handshake (cycle 0).
STORE_START = 1

_COL = 32      # bytes per DRAM column
_ABITS = 35    # signed DRAM byte addresses: in range plus or minus one stride
_SBITS = 22    # signed SRAM element addresses: in range plus or minus one stride
_IBITS = 32    # beat counters


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
        sstride = ins.sram_stride

        # Read walker state.
        rd_active = Signal()
        rd_b = Signal(signed(_SBITS))          # SRAM element address of the current row
        rd_q = Signal(signed(_SBITS))          # SRAM row to read next
        rd_left = Signal(16)
        nreads = Signal(_IBITS)
        # Column walker state.
        as_active = Signal()
        as_c = Signal(signed(_ABITS - 5))      # current column
        as_left = Signal(16)                   # rows left, the current one included
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
                        rd_left.eq(cmd.rows), nreads.eq(0),
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
        # Column walker. The geometry of the current (row, column) pair is held in registers
        # (g_*): the beats its first and last byte come from, where the column starts in the
        # window, its byte mask, whether it is the row's last column and whether a merge
        # follows. They are computed in the cycle the walker moves to the pair, from registers
        # that hold what the next pair needs — the current row's last column and SRAM row, the
        # next row's addresses, and for the current column U = b + ((col·32 − a) >> ls) and
        # V = b + ((col·32 + 31 − a) >> ls), which grow by 32 >> ls per column — so each step
        # is a few additions, not the whole geometry (FPGA timing, docs/fpga.md). For a row at
        # DRAM byte a and SRAM element b (ls = 2 for ACC, else 0):
        #   first column c0 = a >> 5, last c1 = (a + len·4^ls − 1) >> 5;
        #   beats bl = k0 + q_lo − q0, bh = k0 + q_hi − q0 with q0 = b >> lw, q_lo = q0 in the
        #   first column and U >> lw after it, q_hi = q1 = (b + len − 1) >> lw in the last
        #   column and V >> lw before it;
        #   window offset of the column in beat bl: (b mod W)·4^ls − (a mod 32) in the first
        #   column, ((−a) mod 4^ls) + (U mod W)·4^ls after it.
        src = Signal(DmaInstr)                 # the instruction the next pair belongs to
        m.d.comb += src.eq(Mux(idle, cmd.as_value(), ins.as_value()))
        s_acc = src.space == Space.ACC
        s_ls = Mux(s_acc, 2, 0)
        g_bl = Signal(signed(_IBITS + 2))      # beat indices of the pair's first and last byte
        g_bh = Signal(signed(_IBITS + 2))
        g_off = Signal(signed(9))              # column start − DRAM address of beat g_bl's lane 0
        g_mask = Signal(_COL)                  # the row's bytes in the column
        g_last = Signal()                      # the row's last column
        g_final = Signal()                     # the request is complete (no merge follows)
        # The current row.
        r_c1 = Signal(signed(_ABITS - 5))      # last column
        r_q1 = Signal(signed(_SBITS))          # last SRAM row
        r_k0q = Signal(signed(_IBITS + 2))     # k0 − q0: beat index minus SRAM row
        r_alo = Signal(5)                      # a mod 32
        r_elo = Signal(5)                      # (row end − 1) mod 32
        # The next row.
        r_an = Signal(signed(_ABITS))          # a + dstride
        r_bn = Signal(signed(_SBITS))          # b + sstride
        r_en = Signal(signed(_ABITS))          # its last byte: a + dstride + bytes − 1
        r_ln = Signal(signed(_SBITS))          # its last element: b + sstride + len − 1
        r_k0n = Signal(signed(_IBITS + 2))     # its first beat index
        # The current column.
        r_u = Signal(signed(_SBITS))
        r_v = Signal(signed(_SBITS))

        # Entering a row (the first at the start, the next one after a row's last column).
        e_a = Signal(signed(_ABITS))
        e_b = Signal(signed(_SBITS))
        e_e = Signal(signed(_ABITS))           # the row's last byte
        e_l = Signal(signed(_SBITS))           # its last element
        e_k0 = Signal(signed(_IBITS + 2))
        e_left = Signal(16)
        with m.If(idle):
            m.d.comb += [e_a.eq(a), e_b.eq(b),
                         e_e.eq(a + Mux(s_acc, src.len << 2, src.len) - 1),
                         e_l.eq(b + src.len - 1), e_k0.eq(0), e_left.eq(cmd.rows)]
        with m.Else():
            m.d.comb += [e_a.eq(r_an), e_b.eq(r_bn), e_e.eq(r_en), e_l.eq(r_ln),
                         e_k0.eq(r_k0n), e_left.eq(as_left - 1)]
        e_c0 = Signal(signed(_ABITS - 5))
        e_c1 = Signal(signed(_ABITS - 5))
        e_q0 = Signal(signed(_SBITS))
        e_q1 = Signal(signed(_SBITS))
        e_k0q = Signal(signed(_IBITS + 2))
        e_an = Signal(signed(_ABITS))
        e_u = Signal(signed(_SBITS))
        e_v = Signal(signed(_SBITS))
        e_last = Signal()
        m.d.comb += [
            e_c0.eq(e_a >> 5), e_c1.eq(e_e >> 5), e_q0.eq(e_b >> lw), e_q1.eq(e_l >> lw),
            e_k0q.eq(e_k0 - e_q0), e_an.eq(e_a + src.dram_stride),
            e_u.eq(e_b + (-e_a[:5] >> s_ls)),
            e_v.eq(e_b + ((31 - e_a[:5]) >> s_ls)),
            e_last.eq(e_c0 == e_c1),
        ]
        # Moving to the next column of the current row.
        c_c = Signal(signed(_ABITS - 5))
        c_u = Signal(signed(_SBITS))
        c_v = Signal(signed(_SBITS))
        c_last = Signal()
        m.d.comb += [
            c_c.eq(as_c + 1),
            c_u.eq(r_u + Mux(acc, 8, 32)), c_v.eq(r_v + Mux(acc, 8, 32)),
            c_last.eq(c_c == r_c1),
        ]
        form = Signal()                        # the current pair is formed this cycle
        enter = Signal()                       # the walker moves to a new row
        m.d.comb += enter.eq(idle | g_last)
        lanes = Const((1 << _COL) - 1, _COL)
        with m.If(idle | form):
            with m.If(enter):
                m.d.sync += [
                    as_c.eq(e_c0), as_left.eq(e_left),
                    r_c1.eq(e_c1), r_q1.eq(e_q1), r_k0q.eq(e_k0q), r_alo.eq(e_a[:5]),
                    r_elo.eq(e_e[:5]), r_an.eq(e_an), r_bn.eq(e_b + src.sram_stride),
                    r_en.eq(e_e + src.dram_stride), r_ln.eq(e_l + src.sram_stride),
                    r_k0n.eq(e_k0 + (e_q1 - e_q0) + 1), r_u.eq(e_u), r_v.eq(e_v),
                    g_bl.eq(e_k0),
                    g_bh.eq(e_k0q + Mux(e_last, e_q1, e_v >> lw)),
                    g_off.eq((e_b[:lw] << s_ls) - e_a[:5]),
                    g_mask.eq((lanes << e_a[:5])[:_COL] & Mux(e_last, lanes >> ~e_e[:5],
                                                               lanes)),
                    g_last.eq(e_last),
                    g_final.eq(~(e_last & (e_left != 1) & ((e_an >> 5) == e_c0))),
                ]
            with m.Else():
                m.d.sync += [
                    as_c.eq(c_c), r_u.eq(c_u), r_v.eq(c_v),
                    g_bl.eq(r_k0q + (c_u >> lw)),
                    g_bh.eq(r_k0q + Mux(c_last, r_q1, c_v >> lw)),
                    g_off.eq(Mux(acc, (-r_alo)[:2], 0) + (c_u[:lw] << Mux(acc, 2, 0))),
                    g_mask.eq(Mux(c_last, lanes >> ~r_elo, lanes)),
                    g_last.eq(c_last),
                    g_final.eq(~(c_last & (as_left != 1) & ((r_an >> 5) == c_c))),
                ]

        # Read walker.
        rd_q1 = (rd_b + ins.len - 1) >> lw
        b_n = Signal(signed(_SBITS))           # the next row's SRAM address
        m.d.comb += b_n.eq(rd_b + sstride)
        read = Signal()
        m.d.comb += read.eq(rd_active & as_active & (nreads < g_bl + K))
        m.d.comb += [
            self.sp_rd.addr.eq(rd_q), self.sp_rd.en.eq(read & ~acc),
            self.acc_rd.addr.eq(rd_q), self.acc_rd.en.eq(read & acc),
        ]
        sp_win = [Signal(8 * W, name=f"sp_win{i}") for i in range(K_sp - 1)]
        acc_win = [Signal(32 * W, name=f"acc_win{i}") for i in range(K_acc - 1)]
        with m.If(read):
            m.d.sync += nreads.eq(nreads + 1)
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

        # Column data: the window slot holding beat g_bl is g_bl - (nreads - K); the column's
        # byte 0 is g_off bytes from that slot's start.
        slot = Signal(range(max(K_sp, K_acc)))
        m.d.comb += slot.eq(g_bl + K - nreads)
        pos = Signal(range(_COL + max(K_sp * W, K_acc * 4 * W) + _COL))
        # slot × (bytes per SRAM row), a power of two: a shift, not a multiplier
        m.d.comb += pos.eq(Mux(acc, slot << (lw + 2), slot << lw) + g_off + _COL)
        zeros = Const(0, 8 * _COL)
        cut_sp = Cat(zeros, *sp_win, self.sp_rd.data, zeros).bit_select(pos * 8, 8 * _COL)
        cut_acc = Cat(zeros, *acc_win, self.acc_rd.data, zeros).bit_select(pos * 8, 8 * _COL)
        new_data = Signal(8 * _COL)
        m.d.comb += new_data.eq(Mux(acc, cut_acc, cut_sp))

        merge = Signal()
        m.d.comb += [
            merge.eq(out_valid & ~out_final),
            form.eq(as_active & (g_bh < nreads) & (~out_valid | ~out_final | req_hs)),
        ]
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
