"""DMA store engine: DMA_STORE, scratchpad / accumulator → DRAM."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
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
        dstride = ins.dram_stride
        sstride = ins.sram_stride

        # Read walker state.
        rd_active = Signal()
        rd_b = Signal(signed(_SBITS))          # SRAM element address of the current row
        rd_q = Signal(signed(_SBITS))          # SRAM row to read next
        rd_left = Signal(16)
        nreads = Signal(_IBITS)
        # Column walker state.
        as_active = Signal()
        as_a = Signal(signed(_ABITS))          # DRAM byte address of the current row
        as_b = Signal(signed(_SBITS))          # SRAM element address of the current row
        as_c = Signal(signed(_ABITS - 5))      # current column
        as_k0 = Signal(_IBITS)                 # beat index of the row's first SRAM row
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
        # Column walker: the geometry of the current (row, column) pair — which beats the
        # column needs, where its bytes sit in the window, its byte mask — is held in registers,
        # computed in the cycle the walker moves to the pair (from the instruction in IDLE, from
        # the next pair when a pair is formed). The request path then starts at registers instead
        # of running the whole geometry, the byte window and the merge in one cycle (FPGA
        # timing, docs/fpga.md); the cycles are the same.
        src = Signal(DmaInstr)                 # the instruction the next pair belongs to
        m.d.comb += src.eq(Mux(idle, cmd.as_value(), ins.as_value()))
        g_bl = Signal(signed(_IBITS + 2))      # beat indices of the pair's first and last byte
        g_bh = Signal(signed(_IBITS + 2))
        g_off = Signal(signed(_ABITS))         # column start − DRAM address of beat g_bl's lane 0
        g_mask = Signal(_COL)                  # the row's bytes in the column
        g_last = Signal()                      # the row's last column
        g_final = Signal()                     # the request is complete (no merge follows)
        a_next = Signal(signed(_ABITS))
        q0 = Signal(signed(_SBITS))
        q1 = Signal(signed(_SBITS))
        m.d.comb += [
            a_next.eq(as_a + dstride),
            q0.eq(as_b >> lw),
            q1.eq((as_b + ins.len - 1) >> lw),
        ]
        # The pair the walker moves to.
        n_a = Signal(signed(_ABITS))
        n_b = Signal(signed(_SBITS))
        n_c = Signal(signed(_ABITS - 5))
        n_k0 = Signal(_IBITS)
        n_left = Signal(16)
        m.d.comb += [
            n_a.eq(Mux(idle, a, Mux(g_last, a_next, as_a))),
            n_b.eq(Mux(idle, b, Mux(g_last, as_b + sstride, as_b))),
            n_c.eq(Mux(idle, a >> 5, Mux(g_last, a_next >> 5, as_c + 1))),
            n_k0.eq(Mux(idle, 0, Mux(g_last, as_k0 + (q1 - q0) + 1, as_k0))),
            n_left.eq(Mux(idle, cmd.rows, Mux(g_last, as_left - 1, as_left))),
        ]
        geom = self._geometry(m, src, lw, n_a, n_b, n_c, n_k0, n_left)

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
        cut_sp = select_bytes(m, Cat(zeros, *sp_win, self.sp_rd.data), pos, _COL, name="cut_sp")
        cut_acc = select_bytes(m, Cat(zeros, *acc_win, self.acc_rd.data), pos, _COL,
                               name="cut_acc")
        new_data = Signal(8 * _COL)
        m.d.comb += new_data.eq(Mux(acc, cut_acc, cut_sp))

        merge = Signal()
        form = Signal()
        m.d.comb += [
            merge.eq(out_valid & ~out_final),
            form.eq(as_active & (g_bh < nreads) & (~out_valid | ~out_final | req_hs)),
        ]
        # The walker and its geometry move together: to the instruction's first pair while
        # idle, to the next pair when a pair is formed.
        with m.If(idle | form):
            m.d.sync += [g_bl.eq(geom["bl"]), g_bh.eq(geom["bh"]), g_off.eq(geom["off"]),
                         g_mask.eq(geom["mask"]), g_last.eq(geom["last"]),
                         g_final.eq(geom["final"]), as_a.eq(n_a), as_b.eq(n_b), as_c.eq(n_c),
                         as_k0.eq(n_k0), as_left.eq(n_left)]
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
    def _geometry(m: Module, src, lw: int, a, b, c, k0, left) -> dict:
        """The column walker's view of DRAM column ``c`` of the row at DRAM byte ``a`` and SRAM
        element ``b`` (``k0``: beat index of the row's first SRAM row, ``left``: rows left
        including this one) of instruction ``src``, as combinational signals: ``bl``/``bh``
        (beats of the row's first and last byte in the column), ``off`` (column start minus
        the DRAM address of beat ``bl``'s lane 0), ``mask`` (the row's bytes in the column),
        ``last`` (the row's last column) and ``final`` (no next pair merges into it)."""
        acc = src.space == Space.ACC
        ls = Mux(acc, 2, 0)
        row_end = Signal(signed(_ABITS))       # one past the row's last DRAM byte
        c1 = Signal(signed(_ABITS - 5))        # the row's last column
        q0 = Signal(signed(_SBITS))            # the row's first SRAM row
        col_base = Signal(signed(_ABITS))
        x_lo = Signal(signed(_ABITS))          # the row's first and last byte in this column
        x_hi = Signal(signed(_ABITS))
        q_lo = Signal(signed(_SBITS))          # SRAM rows holding them
        q_hi = Signal(signed(_SBITS))
        lo_off = Signal(signed(_ABITS))        # the row's first byte within the column
        hi_off = Signal(signed(_ABITS))        # one past its last byte
        out = {"bl": Signal(signed(_IBITS + 2)), "bh": Signal(signed(_IBITS + 2)),
               "off": Signal(signed(_ABITS)), "mask": Signal(_COL), "last": Signal(),
               "final": Signal()}
        ones = Const((1 << _COL) - 1, _COL)
        m.d.comb += [
            row_end.eq(a + Mux(acc, src.len << 2, src.len)),
            c1.eq((row_end - 1) >> 5),
            q0.eq(b >> lw),
            col_base.eq(c << 5),
            x_lo.eq(Mux(col_base > a, col_base, a)),
            x_hi.eq(Mux(col_base + _COL < row_end, col_base + _COL, row_end) - 1),
            q_lo.eq((b + ((x_lo - a) >> ls)) >> lw),
            q_hi.eq((b + ((x_hi - a) >> ls)) >> lw),
            lo_off.eq(a - col_base),
            hi_off.eq(row_end - col_base),
            out["bl"].eq(k0 + (q_lo - q0)),
            out["bh"].eq(k0 + (q_hi - q0)),
            out["off"].eq(col_base - (a + (((q_lo << lw) - b) << ls))),
            # Bytes lo_off <= x < hi_off of the column, from the offsets clamped to 0.._COL:
            # two thermometer codes of 6-bit values rather than 64 comparisons of 35-bit ones
            # (2 200 carry LUTs on the FPGA, docs/fpga.md).
            out["mask"].eq((ones << _col_clamp(lo_off)) & ~(ones << _col_clamp(hi_off))),
            out["last"].eq(c == c1),
            out["final"].eq(~(out["last"] & (left != 1) & (((a + src.dram_stride) >> 5) == c))),
        ]
        return out


def _col_clamp(off):
    """A signed byte offset from a column's start, clamped to ``0.._COL``: for every byte ``x``
    of the column, ``x >= off`` and ``x < off`` are the same with the clamped value."""
    lb = (_COL - 1).bit_length()
    return Mux(off[-1], 0, Mux(off[lb:] != 0, _COL, off[:lb]))
