"""DMA load engine: DMA_LOAD and DMA_GATHER, DRAM → scratchpad / accumulator."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .byte_shift import select_bytes
from .config import AccelConfig
from .isa import DmaInstr, Opcode, Space
from .ports import (
    acc_read_signature,
    acc_write_signature,
    dram_port_signature,
    sp_write_signature,
)

__all__ = ["GATHER_START", "LOAD_OUTSTANDING", "LOAD_START", "DmaLoad", "load_window_columns"]

#: Column requests in flight at most (the response FIFO's depth): one DRAM row of 1 KiB, enough
#: to cover a row-miss latency at the channel's data rate.
LOAD_OUTSTANDING = 32
#: First active cycle after the i_cmd handshake (cycle 0) of a DMA_LOAD ...
LOAD_START = 1
#: ... and of a DMA_GATHER, which first reads its index (cycle 0), registers it (cycle 1),
#: computes the base (cycle 2) and checks the range (cycle 3); ``o_gather_checked`` is high in
#: this cycle.
GATHER_START = 4

_COL = 32      # bytes per DRAM column
_ABITS = 35    # signed DRAM byte addresses: in range plus or minus one stride
_SBITS = 22    # signed SRAM element addresses: in range plus or minus one stride
_IBITS = 32    # request counters


def load_window_columns(cfg: AccelConfig) -> int:
    """Columns the window holds: as many as one accumulator beat (4·W bytes at any byte
    alignment) can touch, plus one so that a column can move in while the current beat still
    uses the oldest one (full rate when every beat needs two columns)."""
    return -(-(4 * cfg.row_width + _COL - 1) // _COL) + 1


class DmaLoad(wiring.Component):
    """Executes DMA_LOAD and DMA_GATHER exactly as ``GoldenMachine._exec_dma_load`` /
    ``_exec_dma_gather``: rows × len elements (int8 into SP, little-endian int32 into ACC) from a
    2-D strided DRAM region, with broadcast, any byte alignment in DRAM, any element alignment in
    SRAM, negative strides, and later rows overwriting earlier ones where SRAM destinations
    overlap (rows are written in program order).

    Microarchitecture (docs/dma.md has the pictures; sim/golden/timing_dma.py the exact timing):

    * a **request walker** visits every (row, DRAM column) pair, one per cycle, and requests the
      column unless it is the column it requested last (rows that start in the column the
      previous row ended in reuse it); up to ``outstanding`` requests are in flight;
    * responses enter a FIFO (``outstanding`` deep, so ``dram.rsp.ready`` never actually drops)
      and move one per cycle into a **window**, a shift register of the last K columns
      (:func:`load_window_columns`);
    * a **beat walker** visits every (row, SRAM row) pair and, once the window holds every column
      the beat needs, cuts the beat's bytes out of the window with one byte shifter and writes the
      SRAM row with a per-lane enable the next cycle. A column moves into the window only while
      the oldest window column is not needed by the current beat.

    A long transfer therefore runs at one SRAM row per cycle or one DRAM column per cycle,
    whichever the DRAM's rate and the row width make slower.

    ``o_done`` is high for one cycle, in the cycle after the last SRAM write (for an empty
    transfer, the cycle after the handshake); the engine accepts its next instruction in that
    cycle. ``i_cmd.ready`` is high exactly when ``o_busy`` is low.

    DMA_GATHER reads the int32 index from ACC element ``idx_addr`` through ``acc_rd`` in the
    handshake cycle, registers it in cycle 1, forms ``base = dram_addr + index·idx_scale`` in
    cycle 2 and checks the range in cycle 3. In cycle 4 (:data:`GATHER_START`)
    ``o_gather_checked`` is high for one cycle; if the index is negative or the transfer leaves
    DRAM, ``o_error`` and ``o_done`` are high in the same cycle and nothing was requested or
    written. Otherwise the transfer runs from cycle 4 like a DMA_LOAD from ``base``. The
    controller may dispatch past a gather once it sees ``o_gather_checked`` without
    ``o_error``.

    Parameters
    ----------
    cfg : AccelConfig
    outstanding : int
        Maximum column requests in flight (and response FIFO depth).

    Ports
    -----
    i_cmd : ``In(stream.Signature(DmaInstr))``
        Instructions (DMA_LOAD or DMA_GATHER) that passed the controller's checks.
    o_done, o_busy : ``Out(1)``
        Completion pulse (once per instruction, in order) and busy level.
    o_error : ``Out(1)``
        One-cycle pulse, with ``o_gather_checked`` and ``o_done``, for a gather out of range.
    o_gather_checked : ``Out(1)``
        One-cycle pulse when a gather's index has been checked.
    dram : ``Out(dram_port_signature(cfg))``
        Column read requests (``write`` = 0) and their in-order responses.
    sp_wr, acc_wr : ``In(sp_write_signature(cfg))``, ``In(acc_write_signature(cfg))``
        SRAM write ports (row address, row data, per-lane enable).
    acc_rd : ``In(acc_read_signature(cfg))``
        Accumulator read port for the gather index.
    """

    def __init__(self, cfg: AccelConfig, *, outstanding: int = LOAD_OUTSTANDING):
        if not isinstance(outstanding, int) or outstanding < 1:
            raise ValueError(f"outstanding must be a positive integer, not {outstanding!r}")
        self.cfg = cfg
        self.outstanding = outstanding
        super().__init__({
            "i_cmd": In(stream.Signature(DmaInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "o_error": Out(1),
            "o_gather_checked": Out(1),
            "dram": Out(dram_port_signature(cfg)),
            "sp_wr": In(sp_write_signature(cfg)),
            "acc_wr": In(acc_write_signature(cfg)),
            "acc_rd": In(acc_read_signature(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        W = cfg.row_width
        lw = W.bit_length() - 1
        K = load_window_columns(cfg)
        P = 4 * (W - 1)          # window padding below: lanes before the first element of a row
        D = self.outstanding
        B_acc = 4 * W            # bytes of an accumulator row (the widest beat)

        ins = Signal(DmaInstr)
        done = Signal()
        error = Signal()
        checked = Signal()
        m.d.sync += [done.eq(0), error.eq(0), checked.eq(0)]
        m.d.comb += [self.o_done.eq(done), self.o_error.eq(error),
                     self.o_gather_checked.eq(checked)]

        def geometry(src):
            """Per-instruction values of a DmaInstr view (the payload or the register)."""
            acc = src.space == Space.ACC
            ls = Mux(acc, 2, 0)
            bcast = src.bcast & (src.hdr.opcode == Opcode.DMA_LOAD)
            ns = Mux(acc, src.len << 2, src.len)
            span = Mux(bcast, Mux(acc, 4, 1), ns)
            return acc, ls, bcast, ns, span

        # Intermediate values are named signals: an expression object used in several places
        # is otherwise elaborated once per use.
        acc = Signal()
        ls = Signal(2)
        bcast = Signal()
        ns = Signal(18)                        # bytes per row
        span = Signal(18)                      # DRAM bytes per row (one element if bcast)
        B = Signal(range(B_acc + 1))           # bytes per SRAM row
        m.d.comb += [a.eq(b) for a, b in zip((acc, ls, bcast, ns, span), geometry(ins),
                                             strict=True)]
        m.d.comb += B.eq(Mux(acc, B_acc, W))
        dstride = ins.dram_stride
        sstride = ins.sram_stride

        # Request walker state.
        rw_active = Signal()
        rw_a = Signal(signed(_ABITS))          # DRAM byte address of the current row
        rw_col = Signal(signed(_ABITS - 5))    # current column
        rw_c1 = Signal(signed(_ABITS - 5))     # last column of the current row
        rw_left = Signal(16)                   # rows left, the current one included
        rw_last = Signal(signed(_ABITS - 5))   # column requested last
        rw_last_valid = Signal()
        # Beat walker state.
        bw_active = Signal()
        bw_a = Signal(signed(_ABITS))          # DRAM byte address of the current row
        bw_b = Signal(signed(_SBITS))          # SRAM element address of the current row
        bw_q = Signal(signed(_SBITS))          # SRAM row of the current beat
        bw_base = Signal(signed(_ABITS))       # DRAM address of the current beat's lane 0
        bw_j0 = Signal(_IBITS)                 # request index of the row's first column
        bw_left = Signal(16)
        # Values of the current row and beat the walker keeps in registers, computed when it
        # moves to a row or beat rather than in the cycle the beat is decided (FPGA timing;
        # the cycles are the same): the row's last SRAM row, the lanes of its first and last
        # element, its last column, and request index minus first column (j0c).
        bw_qe = Signal(signed(_SBITS))
        bw_l0 = Signal(lw)
        bw_lend = Signal(lw)
        bw_c1 = Signal(signed(_ABITS - 5))
        bw_j0c = Signal(signed(_IBITS + 2))
        bw_row = (bw_qe, bw_l0, bw_lend, bw_c1, bw_j0c)
        bw_hicol = Signal(signed(_ABITS - 5))  # the beat's last column (if not the row's last)
        # The current beat's own values, also computed when the walker moves (FPGA timing: the
        # byte shifter's position then comes from registers through one small adder): whether
        # it is the row's first / last beat, its first request index plus K (``jlk``) and the
        # byte position of its lane 0 in the oldest column, plus the padding (``off``).
        first = Signal()
        last = Signal()
        jlk = Signal(signed(_IBITS + 3))
        off = Signal(range(P + _COL))

        def beat_row(a, b, c1, j0, length):
            """The ``bw_row`` values of a row at DRAM byte ``a``, SRAM element ``b``, last
            column ``c1``, first request index ``j0``, ``length`` elements."""
            end = b + length - 1
            return end >> lw, b[:lw], end[:lw], c1, j0 - (a >> 5)

        def single_beat(b, length):
            """Whether a row at SRAM element ``b`` of ``length`` elements is one SRAM row."""
            return (b >> lw) == ((b + length - 1) >> lw)

        def first_beat(a, l0, j0, bcast_, ls_, last_):
            """The beat registers for the first beat of a row at DRAM byte ``a`` whose first
            element is in lane ``l0`` and whose first column has request index ``j0``."""
            lane0 = Mux(bcast_, a[:5], a[:5] - (l0 << ls_))
            return [first.eq(1), last.eq(last_), jlk.eq(j0 + K), off.eq(lane0 + P)]

        def next_beat(base, last_):
            """The beat registers for the next beat of the current row, lane 0 at ``base``."""
            jl = Mux(bcast, bw_j0, bw_j0c + (base >> 5))
            lane0 = Mux(bcast, bw_a[:5], base[:5])
            return [first.eq(0), last.eq(last_), jlk.eq(jl + K), off.eq(lane0 + P)]

        def beat_hicol(base, nbytes, tag):
            """Last DRAM column of a beat whose lane 0 is at ``base`` and spans ``nbytes``."""
            hc = Signal(signed(_ABITS - 5), name=f"{tag}_hicol")
            m.d.comb += hc.eq((base + nbytes - 1) >> 5)
            return hc
        nloads = Signal(_IBITS)                # columns moved into the window so far
        inflight = Signal(range(D + 1))
        fin = Signal()                         # the last beat's SRAM write is this cycle

        # Comb values are assigned unconditionally (outside m.If): the Verilog then has
        # continuous assignments, which Icarus evaluates at time 0, rather than always @*
        # blocks, which it only runs when an input changes.
        def launch(src, base, tag):
            """Start both walkers on row 0 of ``src`` with DRAM base ``base``."""
            s_acc, s_ls, s_bcast, _, s_span = geometry(src)
            a = Signal(signed(_ABITS), name=f"launch_{tag}_a")
            b = Signal(signed(_SBITS), name=f"launch_{tag}_b")
            c1 = Signal(signed(_ABITS - 5), name=f"launch_{tag}_c1")
            base_q = Signal(signed(_ABITS), name=f"launch_{tag}_base")
            m.d.comb += [a.eq(base), b.eq(src.sram_addr), c1.eq((a + s_span - 1) >> 5),
                         base_q.eq(a - (b[:lw] << s_ls))]
            row = beat_row(a, b, c1, 0, src.len)
            hicol = beat_hicol(base_q, Mux(s_acc, B_acc, W), f"launch_{tag}")
            beat = first_beat(a, b[:lw], 0, s_bcast, s_ls, single_beat(b, src.len))
            return a, b, c1, base_q, src.rows, row, hicol, beat

        def start(values):
            a, b, c1, base_q, rows, row, hicol, beat = values
            m.d.sync += [
                rw_active.eq(1), rw_a.eq(a), rw_col.eq(a >> 5), rw_c1.eq(c1),
                rw_left.eq(rows), rw_last_valid.eq(0),
                bw_active.eq(1), bw_a.eq(a), bw_b.eq(b), bw_q.eq(b >> lw), bw_base.eq(base_q),
                bw_j0.eq(0), bw_left.eq(rows), nloads.eq(0), bw_hicol.eq(hicol),
                *[reg.eq(val) for reg, val in zip(bw_row, row, strict=True)], *beat,
            ]

        def empty(src):
            return (src.rows == 0) | (src.len == 0)

        # Gather index and range check.
        g_base = Signal(signed(52))
        g_neg = Signal()
        g_ext = Signal(signed(50))
        index = Signal(signed(32))              # the gather index, in cycle 1
        g_index = Signal(signed(32))            # ... registered, in cycle 2
        m.d.comb += index.eq(self.acc_rd.data[ins.idx_addr[:lw]])
        g_lo = g_base + Mux(g_ext < 0, g_ext, 0)
        g_hi = g_base + Mux(g_ext > 0, g_ext, 0) + ns - 1
        g_bad = Signal()
        m.d.comb += g_bad.eq(g_neg | (~empty(ins) & ((g_lo < 0) | (g_hi >= cfg.dram_bytes))))

        cmd = self.i_cmd.payload
        from_cmd = launch(cmd, cmd.dram_addr, "cmd")
        from_gather = launch(ins, g_base, "gather")
        is_gather = cmd.hdr.opcode == Opcode.DMA_GATHER
        with m.FSM() as fsm:
            with m.State("IDLE"), m.If(self.i_cmd.valid):
                m.d.sync += ins.eq(cmd)
                with m.If(is_gather):
                    m.next = "GATHER_INDEX"
                with m.Elif(empty(cmd)):
                    m.d.sync += done.eq(1)
                with m.Else():
                    start(from_cmd)
                    m.next = "RUN"
            with m.State("GATHER_INDEX"):
                # The index out of the ACC block RAM is registered before it is scaled: the
                # RAM's output, the lane select, the product and the sum were one cycle, the
                # whole design's routed critical path at f3c2ea8 (FPGA timing).
                m.d.sync += [g_index.eq(index), g_ext.eq((ins.rows - 1) * dstride)]
                m.next = "GATHER_BASE"
            with m.State("GATHER_BASE"):
                m.d.sync += [
                    g_base.eq(ins.dram_addr + g_index * ins.idx_scale),
                    g_neg.eq(g_index < 0),
                ]
                m.next = "GATHER_CHECK"
            with m.State("GATHER_CHECK"):
                m.d.sync += checked.eq(1)
                with m.If(g_bad):
                    m.d.sync += [error.eq(1), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(empty(ins)):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    start(from_gather)
                    m.next = "RUN"
            with m.State("RUN"), m.If(fin):
                m.d.sync += done.eq(1)
                m.next = "IDLE"
        m.d.comb += [
            self.i_cmd.ready.eq(fsm.ongoing("IDLE")),
            self.o_busy.eq(~fsm.ongoing("IDLE")),
            self.acc_rd.addr.eq(cmd.idx_addr >> lw),
            self.acc_rd.en.eq(fsm.ongoing("IDLE") & self.i_cmd.valid & is_gather),
        ]

        # ---------------------------------------------------------------------------------
        # Request walker: one (row, column) pair per cycle.
        req = self.dram.req
        dup = Signal()
        req_hs = Signal()
        m.d.comb += [
            dup.eq(rw_last_valid & (rw_col == rw_last)),
            req.valid.eq(rw_active & ~dup & (inflight < D)),
            req.payload.addr.eq(rw_col),
            req.payload.write.eq(0),
            req_hs.eq(req.valid & req.ready),
        ]
        with m.If(rw_active & (dup | req_hs)):
            with m.If(rw_col == rw_c1):
                with m.If(rw_left == 1):
                    m.d.sync += rw_active.eq(0)
                with m.Else():
                    a_n = rw_a + dstride
                    m.d.sync += [rw_a.eq(a_n), rw_col.eq(a_n >> 5),
                                 rw_c1.eq((a_n + span - 1) >> 5), rw_left.eq(rw_left - 1)]
            with m.Else():
                m.d.sync += rw_col.eq(rw_col + 1)
        with m.If(req_hs):
            m.d.sync += [rw_last.eq(rw_col), rw_last_valid.eq(1)]

        # Response FIFO. It can always take a response: at most D requests are in flight.
        m.submodules.rsp_fifo = rsp_fifo = fifo.SyncFIFO(width=8 * _COL, depth=D)
        m.d.comb += [
            rsp_fifo.w_en.eq(self.dram.rsp.valid),
            rsp_fifo.w_data.eq(self.dram.rsp.payload.as_value()),
            self.dram.rsp.ready.eq(rsp_fifo.w_rdy),
        ]

        # ---------------------------------------------------------------------------------
        # Beat walker: one (row, SRAM row) pair per cycle once its columns are in the window.
        c0 = Signal(signed(_ABITS - 5))        # the row's first column
        m.d.comb += c0.eq(bw_a >> 5)
        l0 = bw_l0
        lend = bw_lend
        # Requests (window columns) the beat needs: from the column of its first byte (the
        # row's first column in its first beat; ``jlk`` - K, a register) to that of its last
        # (the row's last column in its last beat); a broadcast row needs the columns of its
        # one element.
        jh = Signal(signed(_IBITS + 2))
        m.d.comb += jh.eq(bw_j0c + Mux(bcast | last, bw_c1, bw_hicol))

        # The window: win[K-1] is the newest column (request nloads-1), win[0] the oldest.
        win = [Signal(8 * _COL, name=f"win{i}") for i in range(K)]
        pop = Signal()
        m.d.comb += pop.eq(bw_active & rsp_fifo.r_rdy & (nloads < jlk))
        m.d.comb += rsp_fifo.r_en.eq(pop)
        with m.If(pop):
            m.d.sync += [win[i].eq(win[i + 1]) for i in range(K - 1)]
            m.d.sync += [win[K - 1].eq(rsp_fifo.r_data), nloads.eq(nloads + 1)]
        m.d.sync += inflight.eq(inflight + req_hs - pop)

        # The beat's first column is window slot jl - (nloads - K), in 0 .. K-1 when it is
        # emitted, so the slot's low bits suffice; its bytes start ``off`` - P bytes into it.
        emit = Signal()
        nsl = max(1, (K - 1).bit_length())
        slot = Signal(nsl)
        m.d.comb += [emit.eq(bw_active & (jh < nloads)), slot.eq(jlk[:nsl] - nloads[:nsl])]
        pos = Signal(range(P + _COL * K + 1))
        m.d.comb += pos.eq(Cat(off[:5], slot + off[5:]))
        padded = Cat(Const(0, 8 * P), *win)
        cut = select_bytes(m, padded, pos, B_acc, name="cut")
        beat = Signal(8 * B_acc)
        lanes = Signal(W)
        m.d.comb += [
            beat.eq(Mux(acc, Mux(bcast, cut[:32].replicate(W), cut),
                        Mux(bcast, cut[:8].replicate(W), cut[:8 * W]))),
            lanes.eq(Cat(_lane_enable(j, W, first, last, l0, lend) for j in range(W))),
        ]

        a_n = Signal(signed(_ABITS))           # the next row's DRAM and SRAM addresses
        b_n = Signal(signed(_SBITS))
        base_n = Signal(signed(_ABITS))        # lane 0 of the next beat
        j0_n = Signal(_IBITS)                  # the next row's first request index
        m.d.comb += [a_n.eq(bw_a + dstride), b_n.eq(bw_b + sstride),
                     j0_n.eq(bw_j0 + (bw_c1 - c0) + ((a_n >> 5) != bw_c1))]
        c1_n = Signal(signed(_ABITS - 5))      # the next row's last column
        m.d.comb += [base_n.eq(Mux(last, a_n - (b_n[:lw] << ls), bw_base + B)),
                     c1_n.eq((a_n + span - 1) >> 5)]
        hicol_n = beat_hicol(base_n, B, "next")
        s1_valid = Signal()
        s1_acc = Signal()
        s1_addr = Signal(_SBITS)
        s1_data = Signal(8 * B_acc)
        s1_en = Signal(W)
        m.d.sync += [s1_valid.eq(emit), fin.eq(0)]
        with m.If(emit):
            m.d.sync += [s1_acc.eq(acc), s1_addr.eq(bw_q), s1_en.eq(lanes),
                         s1_data.eq(beat), bw_base.eq(base_n),
                         bw_hicol.eq(hicol_n)]
            with m.If(last):
                with m.If(bw_left == 1):
                    m.d.sync += [bw_active.eq(0), fin.eq(1)]
                with m.Else():
                    m.d.sync += [
                        bw_a.eq(a_n), bw_b.eq(b_n), bw_q.eq(b_n >> lw), bw_j0.eq(j0_n),
                        bw_left.eq(bw_left - 1),
                        *[reg.eq(val) for reg, val in zip(
                            bw_row, beat_row(a_n, b_n, c1_n, j0_n, ins.len), strict=True)],
                        *first_beat(a_n, b_n[:lw], j0_n, bcast, ls, single_beat(b_n, ins.len)),
                    ]
            with m.Else():
                m.d.sync += [bw_q.eq(bw_q + 1), *next_beat(base_n, bw_q + 1 == bw_qe)]

        m.d.comb += [
            self.sp_wr.addr.eq(s1_addr),
            self.sp_wr.data.eq(s1_data[:8 * W]),
            self.sp_wr.en.eq(Mux(s1_valid & ~s1_acc, s1_en, 0)),
            self.acc_wr.addr.eq(s1_addr),
            self.acc_wr.data.eq(s1_data),
            self.acc_wr.en.eq(Mux(s1_valid & s1_acc, s1_en, 0)),
        ]
        return m


def _lane_enable(j: int, W: int, first, last, l0, lend):
    """Lane ``j`` of a beat is written unless it lies before the row's first element (in the
    row's first beat) or after its last (in its last beat). The end lanes skip the comparison
    that is constant there, which lint would flag."""
    after_start = (l0 == 0) if j == 0 else Const(1) if j == W - 1 else (l0 <= j)
    before_end = (lend == W - 1) if j == W - 1 else Const(1) if j == 0 else (lend >= j)
    return (~first | after_start) & (~last | before_end)
