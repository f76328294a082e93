"""The PIM engine of one bank: column sequencer, global-buffer replica, MAC and accumulators.

Every bank of the channel has one. The engine holds the ``PIM_MAC`` instruction it is executing
(``cur``) and the next one (``pend``), and asks the channel's scheduler for what its current
instruction needs: a PRE (another row is open), an ACT (the bank is closed) or, once the row is
open, one column read per tCCD_L (the scheduler checks tRCD, tCCD_L and refresh and answers with
``col_go``). Column reads are bank-internal: they do not use the command or data bus, so all
banks stream at once.

Each engine keeps its own replica of the global buffer. ``PIM_WRGB`` writes every replica at once
(the broadcast happens when the buffer is written), so each bank walks the same chunk sequence
at its own pace: a bank starts streaming as soon as its own row is open instead of waiting for
the last bank's activation (tRRD/tFAW stagger the ACTs of a row switch by up to
``(B-1)·tRRD_S`` cycles). The price is ``B × gbuf_bytes`` of storage; a shared buffer with a
delay line would need a fixed lag between banks, which refresh, row hits and bank-group timing
do not give.

Datapath, for a column issued in cycle t (``col_go``), pipelined so that no stage holds more
than a block-RAM read or a multiplier and two adder levels (the ECP5 FPGA flow: docs/fpga.md):

* t: bank read (``mem_addr``) and replica read of chunk ``gb_chunk + j % kc``;
* t+1: the column word (``mem_data``) and the chunk are registered;
* t+2: the 32 int8 × int8 products, summed in fours, are registered (8 partial sums);
* t+3: sums of four partial sums are registered (2);
* t+4: the dot product is registered; the output's accumulator is read when the column starts
  an output and ``accumulate`` is set;
* t+5 (= t + :data:`MAC_LATENCY`): the dot product is added to the running sum and, on the
  last column of an output, written to its slot; ``done`` pulses in this cycle for the
  instruction's last column.

With ``cfg.pim_multipliers`` = 16 (``cfg.pim_beats`` = 2; the ``fpga`` preset, which then needs
tCCD_L ≥ 2) there are 16 multipliers: they take the column's low half in t+2 and its high half
(held a cycle longer) in t+3, r4 sums the low half's four partial sums in t+3, and in t+4 the
dot product is r4 plus the high half's. Every cycle above stays the same; only the column rate
(tCCD_L) is slower.

The accumulator read port is transparent to the write port, so an instruction that accumulates
into the slot the previous one just wrote sees the new value even back to back.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import PIM_COL_BITS, AccelConfig
from .dram_bank import col_word_layout
from .isa import PimInstr

__all__ = ["MAC_LATENCY", "PimMac"]

#: Cycles from a column's read (``col_go`` in cycle t) to its accumulator update and, for an
#: instruction's last column, its ``done`` pulse (cycle t + MAC_LATENCY). An instruction with
#: ``ncols = 0`` pulses ``done`` MAC_LATENCY cycles after it becomes current. The channel counts
#: the pulse a cycle later (sim/golden/dram_model.py follows this).
MAC_LATENCY = 5


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _sums4(m: Module, values: list, name: str) -> list:
    """Registered sums of groups of four ``values`` (two adder levels per stage)."""
    out = []
    for i in range(0, len(values), 4):
        group = values[i:i + 4]
        width = max(len(v) for v in group) + (len(group) - 1).bit_length()
        r = Signal(signed(width), name=f"{name}_{i // 4}")
        m.d.sync += r.eq(sum(group))
        out.append(r)
    return out


class PimMac(wiring.Component):
    """Per-bank PIM engine.

    Parameters
    ----------
    cfg:
        The accelerator configuration.

    Ports
    -----
    disp: In(1), disp_instr: In(PimInstr)
        Load a ``PIM_MAC`` into the pending slot (only when ``pend_free``). The channel
        dispatches to every bank in the same cycle.
    pend_free: Out(1)
        The pending slot is empty.
    is_open, open_row: In
        The bank's row-buffer state.
    want_col, want_pre, want_act: Out(1)
        What the current instruction needs now: a column of the open row, a PRE, an ACT.
    act_row: Out(row bits)
        The row the current instruction works on (for the ACT).
    col_go: In(1)
        The scheduler lets the column read issue this cycle (only when ``want_col``).
    mem_addr: Out, mem_col: Out
        Entry and column index of the column to read (valid with ``want_col``).
    mem_data: In(32 bytes)
        The bank's read data, the cycle after ``col_go``.
    gb_wr: In(struct)
        Broadcast write of one global-buffer chunk (``en``, chunk ``addr``, ``data``, byte
        ``mask``).
    slot_rd_en, slot_rd_addr: In; slot_rd_data: Out(signed(32))
        Read-out port of the accumulators (``PIM_READ``), one-cycle latency. Only used while no
        MAC is in flight.
    done: Out(1)
        Pulses once per instruction, when its last accumulator write happens (``ncols = 0``:
        two cycles after it became current).
    seq: Out(3)
        Number of instructions that became current, modulo 8 (the current one is ``seq - 1``):
        the channel gives the banks still on the oldest MAC priority for PRE and ACT.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        aw = _bits(cfg.bank_rows * cfg.cols_per_row)
        super().__init__({
            "disp": In(1),
            "disp_instr": In(PimInstr),
            "pend_free": Out(1),
            "is_open": In(1),
            "open_row": In(_bits(cfg.bank_rows)),
            "want_col": Out(1),
            "want_pre": Out(1),
            "want_act": Out(1),
            "act_row": Out(_bits(cfg.bank_rows)),
            "col_go": In(1),
            "mem_addr": Out(aw),
            "mem_col": Out(PIM_COL_BITS),
            "mem_data": In(col_word_layout(cfg)),
            "gb_wr": In(data.StructLayout({
                "en": 1, "addr": _bits(cfg.gbuf_chunks), "data": col_word_layout(cfg),
                "mask": cfg.col_bytes})),
            "slot_rd_en": In(1),
            "slot_rd_addr": In(_bits(cfg.pim_slots)),
            "slot_rd_data": Out(signed(32)),
            "done": Out(1),
            "seq": Out(3),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        cb = (cfg.cols_per_row - 1).bit_length()
        rb = _bits(cfg.bank_rows)

        m.submodules.gbuf = gbuf = memory.Memory(shape=unsigned(8 * cfg.col_bytes),
                                                 depth=cfg.gbuf_chunks, init=[])
        gb_w = gbuf.write_port(granularity=8)
        gb_r = gbuf.read_port()
        m.submodules.slots = slots = memory.Memory(shape=signed(32), depth=cfg.pim_slots,
                                                   init=[])
        sl_w = slots.write_port()
        sl_r = slots.read_port(transparent_for=(sl_w,))
        m.d.comb += [gb_w.addr.eq(self.gb_wr.addr), gb_w.data.eq(self.gb_wr.data.as_value()),
                     gb_w.en.eq(self.gb_wr.mask & self.gb_wr.en.replicate(cfg.col_bytes))]

        # Pending and current instruction.
        pend = Signal(PimInstr)
        pend_valid = Signal()
        cur = Signal(PimInstr)
        cur_valid = Signal()
        j = Signal(PIM_COL_BITS)     # next column of the instruction
        jk = Signal(PIM_COL_BITS)    # j % kc
        o = Signal.like(cur.slot)    # output slot of column j
        g = Signal.like(cur.gb_chunk)  # chunk of column j

        hit = self.is_open & (self.open_row == cur.row)
        active = cur_valid & (cur.ncols != 0)
        m.d.comb += [
            self.pend_free.eq(~pend_valid),
            self.want_col.eq(active & hit),
            self.want_pre.eq(active & self.is_open & ~hit),
            self.want_act.eq(active & ~self.is_open),
            self.act_row.eq(cur.row),
            self.mem_col.eq(cur.col + j),
            self.mem_addr.eq((cur.row[:rb] << cb) | (cur.col + j)[:cb] if cb else cur.row[:rb]),
        ]

        last_col = j == cur.ncols - 1
        empty = cur_valid & (cur.ncols == 0)
        take = ~cur_valid | (self.col_go & last_col) | empty
        seq = Signal(3)
        m.d.comb += self.seq.eq(seq)
        with m.If(take):
            m.d.sync += [cur.eq(pend), cur_valid.eq(pend_valid), j.eq(0), jk.eq(0),
                         o.eq(pend.slot), g.eq(pend.gb_chunk), seq.eq(seq + pend_valid)]
        with m.If(self.disp):
            m.d.sync += [pend.eq(self.disp_instr), pend_valid.eq(1)]
        with m.Elif(take):
            m.d.sync += pend_valid.eq(0)

        # Stage 0 (column issue): counters and reads.
        first = jk == 0
        last_group = (jk == cur.kc - 1) | last_col
        with m.If(self.col_go & ~last_col):
            m.d.sync += j.eq(j + 1)
            with m.If(last_group):
                m.d.sync += [jk.eq(0), o.eq(o + 1), g.eq(cur.gb_chunk)]
            with m.Else():
                m.d.sync += [jk.eq(jk + 1), g.eq(g + 1)]
        m.d.comb += [gb_r.addr.eq(g), gb_r.en.eq(self.col_go)]

        # The control of a column travels down the pipeline beside its data: c[i] goes with
        # the data registered in t+i, and the data stages below (x2/w2, q3, r4, dot) are
        # MAC_LATENCY − 1 registers deep, so c[MAC_LATENCY] meets the dot product.
        ctrl = data.StructLayout({"valid": 1, "first": 1, "last": 1, "fin": 1, "acc": 1,
                                  "o": len(o)})
        c = [None] + [Signal(ctrl, name=f"c{i}") for i in range(1, MAC_LATENCY + 1)]
        m.d.sync += [c[1].valid.eq(self.col_go), c[1].first.eq(first),
                     c[1].last.eq(last_group), c[1].fin.eq((self.col_go & last_col) | empty),
                     c[1].acc.eq(cur.accumulate), c[1].o.eq(o)]
        for i in range(1, MAC_LATENCY):
            m.d.sync += c[i + 1].eq(c[i])

        # t+1: register the column word and the chunk (the block RAMs' output registers).
        P = cfg.pim_multipliers
        x2 = Signal(8 * P)
        w2 = Signal(8 * P)
        mem_word = self.mem_data.as_value()
        if cfg.pim_beats == 1:
            m.d.sync += [x2.eq(mem_word), w2.eq(gb_r.data)]
        else:
            # Two beats: x2/w2 hold the column's low half in t+2 and its high half in t+3.
            # The high half waits a cycle in x2h/w2h (registered every cycle: only its value
            # at the end of t+1 is used), and x2/w2 load it at the end of t+2, when no column
            # word arrives (the bank's next column is read at t + tCCD_L ≥ t+2, so its word
            # arrives at t+3). The multipliers always read x2/w2: no multiplexer in front of
            # them, and no enable on the registers.
            x2h = Signal(8 * P)
            w2h = Signal(8 * P)
            m.d.sync += [x2h.eq(mem_word[8 * P:]), w2h.eq(gb_r.data[8 * P:]),
                         x2.eq(Mux(c[1].valid, mem_word[:8 * P], x2h)),
                         w2.eq(Mux(c[1].valid, gb_r.data[:8 * P], w2h))]
        # t+2 (and t+3 for a second beat): the products (multipliers fed by registers) summed
        # in fours. (Registering the products themselves, the multipliers' output registers,
        # makes YoWASP's ABC9 fail.)
        products = [x2.word_select(x, 8).as_signed() * w2.word_select(x, 8).as_signed()
                    for x in range(P)]
        q3 = _sums4(m, products, "q3")
        # t+3: the sums of four of those; t+4: the dot product. With two beats q3 holds the
        # low half's sums in t+3 (r4 adds them up) and the high half's in t+4.
        r4 = _sums4(m, q3, "r4")
        dot = Signal(signed(32))
        m.d.sync += dot.eq(sum(r4) if cfg.pim_beats == 1 else r4[0] + sum(q3))

        # t+4: read the accumulator of the output the column at t+5 starts.
        m.d.comb += [sl_r.addr.eq(Mux(self.slot_rd_en, self.slot_rd_addr, c[MAC_LATENCY - 1].o)),
                     sl_r.en.eq(1), self.slot_rd_data.eq(sl_r.data)]

        # t+5: accumulate into the running sum; write the slot at the end of an output.
        s = c[MAC_LATENCY]
        run = Signal(signed(32))
        base = Signal(signed(32))
        total = Signal(signed(32))
        m.d.comb += [base.eq(Mux(s.first, Mux(s.acc, sl_r.data, 0), run)),
                     total.eq(base + dot)]
        with m.If(s.valid):
            m.d.sync += run.eq(total)
        m.d.comb += [sl_w.addr.eq(s.o), sl_w.data.eq(total), sl_w.en.eq(s.valid & s.last),
                     self.done.eq(s.fin)]
        return m
