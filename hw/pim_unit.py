"""The controller-side PIM front-end: executes PIM_WRGB, PIM_MAC and PIM_READ.

:class:`PimUnit` takes the PIM instructions from the controller and drives the channel's PIM
port (:func:`pim_port_signature`), which the :class:`~.dram_channel.DramChannel` implements with
one :class:`~.pim_mac.PimMac` per bank.

Sharing the channel with normal requests
----------------------------------------
The unit raises ``hold`` while it has an instruction to run or MACs in flight. The channel then
stops accepting requests on its ports, lets the requests it holds finish (commands issued and the
data bus idle) and answers with ``grant``; from then on only the PIM engines use the banks and
the data bus, until ``hold`` drops. Refresh goes on in both modes. Bank timing state is shared,
so the first PIM ACT after normal traffic obeys tRAS/tWR/tRTP/tRP/tRRD/tFAW like any other.

Instructions (semantics: ``GoldenMachine._exec_pim_*``)
--------------------------------------------------------
* ``PIM_WRGB`` walks the scratchpad rows holding ``SP[sram_addr : sram_addr + len]``, one row
  every ``P = max(1, ⌈W·tBURST/32⌉)`` cycles (so no more than 32 bytes per tBURST cross the data
  bus), rotates the bytes to their global-buffer offset and writes each completed 32-byte chunk
  (byte-masked) to every bank's replica.
* ``PIM_MAC`` is handed to every bank engine at once (``mac`` stream) as soon as every engine's
  pending slot is free, so the next MAC can be accepted while the banks still work on this one;
  ``mac_done`` from the channel (every bank finished it) retires it.
* ``PIM_READ`` walks the accumulator rows of ``ACC[sram_addr : sram_addr + nslots·B]``, one row
  every ``Q = max(1, ⌈W·4·tBURST/32⌉)`` cycles (32 bytes of int32 per tBURST), reading in each
  bank the slot that feeds its lane and writing the row with per-lane enables.

WRGB and READ wait until every earlier MAC has retired (they change or read what the MACs use).

Cycles of an instruction: from the cycle in which the ``i_cmd`` transfer happens (valid and
ready high) to the cycle in which ``o_done`` is high. ``sim/golden/timing_pim.py`` predicts them
exactly, given the channel state (docs/dram_pim.md).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .dram_bank import col_word_layout
from .isa import Opcode, PimInstr
from .ports import acc_write_signature, sp_read_signature

__all__ = ["PimUnit", "pim_port_signature", "read_row_period", "wrgb_row_period"]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def wrgb_row_period(cfg: AccelConfig) -> int:
    """Cycles between scratchpad rows of a ``PIM_WRGB`` (the data-bus rate limit)."""
    return max(1, -(-cfg.row_width * cfg.timing.tBURST // cfg.col_bytes))


def read_row_period(cfg: AccelConfig) -> int:
    """Cycles between accumulator rows of a ``PIM_READ`` (the data-bus rate limit)."""
    return max(1, -(-cfg.row_width * 4 * cfg.timing.tBURST // cfg.col_bytes))


def pim_port_signature(cfg: AccelConfig) -> wiring.Signature:
    """The PIM port between :class:`PimUnit` and the channel, seen from the unit.

    * ``hold`` (out) / ``grant`` (in): ownership of the banks and the data bus (see above).
    * ``mac`` (out stream of :class:`PimInstr`): a ``PIM_MAC`` for every bank engine; ready
      only while granted and every engine's pending slot is free.
    * ``mac_done`` (in): pulses once per MAC, in order, when every bank has finished it.
    * ``gb_wr`` (out): broadcast write of one global-buffer chunk (en, chunk addr, data, mask).
    * ``slot_rd_en``, ``slot_rd_addr`` (out, one slot per bank), ``slot_rd_data`` (in, one
      int32 per bank, the cycle after).
    """
    return wiring.Signature({
        "hold": Out(1),
        "grant": In(1),
        "mac": Out(stream.Signature(PimInstr)),
        "mac_done": In(1),
        "gb_wr": Out(data.StructLayout({
            "en": 1, "addr": _bits(cfg.gbuf_chunks), "data": col_word_layout(cfg),
            "mask": cfg.col_bytes})),
        "slot_rd_en": Out(1),
        "slot_rd_addr": Out(data.ArrayLayout(unsigned(_bits(cfg.pim_slots)), cfg.dram_banks)),
        "slot_rd_data": In(data.ArrayLayout(signed(32), cfg.dram_banks)),
    })


class PimUnit(wiring.Component):
    """PIM front-end (controller side).

    Parameters
    ----------
    cfg:
        The accelerator configuration. ``row_width`` must not exceed ``dram_banks`` (a
        read-out row takes at most one slot from each bank) nor ``col_bytes``.

    Ports
    -----
    i_cmd: In(stream.Signature(PimInstr))
        ``PIM_WRGB`` / ``PIM_MAC`` / ``PIM_READ`` that passed the controller's checks. Ready
        when the unit's command register is free (or frees this cycle).
    o_done: Out(1)
        Pulses once per instruction, in order.
    o_busy: Out(1)
        An instruction is held, running, or a MAC is in flight.
    sp_rd: In(sp_read_signature(cfg))
        Scratchpad read port (row address, data one cycle later), used by ``PIM_WRGB``.
    acc_wr: In(acc_write_signature(cfg))
        Accumulator write port (row address, per-lane enables), used by ``PIM_READ``.
    pim: Out(pim_port_signature(cfg))
        To the channel's PIM engines.
    """

    def __init__(self, cfg: AccelConfig):
        if cfg.row_width > cfg.dram_banks:
            raise ValueError(f"row width must not exceed dram_banks ({cfg.dram_banks}) for "
                             f"PIM read-out, not {cfg.row_width!r}")
        self.cfg = cfg
        super().__init__({
            "i_cmd": In(stream.Signature(PimInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "sp_rd": In(sp_read_signature(cfg)),
            "acc_wr": In(acc_write_signature(cfg)),
            "pim": Out(pim_port_signature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        W, B, CB = cfg.row_width, cfg.dram_banks, cfg.col_bytes
        wb = (W - 1).bit_length()            # lane bits
        bb = (B - 1).bit_length()            # bank bits

        cmd = Signal(PimInstr)
        cmd_valid = Signal()
        outstanding = Signal(3)              # MACs handed to the banks, not yet retired
        is_mac = cmd.hdr.opcode == Opcode.PIM_MAC
        is_wrgb = cmd.hdr.opcode == Opcode.PIM_WRGB

        mac_go = self.pim.mac.valid & self.pim.mac.ready

        # Walker state shared by WRGB (SP rows) and READ (ACC rows).
        busy = Signal()                      # a walk is running
        is_read = Signal()
        rows_left = Signal(18)                # rows still to issue
        row = Signal(max(len(self.sp_rd.addr), len(self.acc_wr.addr)))
        wait = Signal(range(max(wrgb_row_period(cfg), read_row_period(cfg)) + 1))
        start = Signal()                     # the held WRGB/READ starts this cycle
        walk_done = Signal()

        # A MAC must not overtake a WRGB still writing the global buffer.
        m.d.comb += [self.pim.mac.valid.eq(cmd_valid & is_mac & ~busy),
                     self.pim.mac.payload.eq(cmd)]
        can_start = cmd_valid & ~is_mac & self.pim.grant & (outstanding == 0) & ~busy
        m.d.comb += start.eq(can_start)

        cmd_free = ~cmd_valid | mac_go | start
        m.d.comb += self.i_cmd.ready.eq(cmd_free)
        with m.If(self.i_cmd.valid & self.i_cmd.ready):
            m.d.sync += [cmd.eq(self.i_cmd.payload), cmd_valid.eq(1)]
        with m.Elif(mac_go | start):
            m.d.sync += cmd_valid.eq(0)
        m.d.sync += outstanding.eq(outstanding + mac_go - self.pim.mac_done)

        m.d.comb += [self.pim.hold.eq(cmd_valid | (outstanding != 0) | busy),
                     self.o_busy.eq(cmd_valid | (outstanding != 0) | busy),
                     self.o_done.eq(self.pim.mac_done | walk_done)]

        # ---------------------------------------------------------------------------------
        # WRGB: rows r0..r1 of SP; the byte of SP element x goes to gbuf byte x - s + a.
        s_addr = Signal.like(cmd.sram_addr)
        length = Signal.like(cmd.len)
        gb_base = Signal.like(cmd.gb_addr)
        # READ: element sram_addr + o holds PACC[o % B][slot + o // B].
        slot0 = Signal.like(cmd.slot)
        n_elems = Signal(len(cmd.nslots) + bb)
        o_start = Signal(signed(len(n_elems) + 2))   # o of lane 0 of the current row

        first_row = cmd.sram_addr >> wb if wb else cmd.sram_addr
        last_elem_w = cmd.sram_addr + cmd.len - 1
        n_read = cmd.nslots << bb if bb else cmd.nslots
        last_elem_r = cmd.sram_addr + n_read - 1
        nrows_w = Mux((cmd.len != 0), (last_elem_w >> wb) - first_row + 1, 0)
        nrows_r = Mux((cmd.nslots != 0), (last_elem_r >> wb) - first_row + 1, 0)

        issue = Signal()                     # a row read is issued this cycle
        m.d.comb += issue.eq(busy & (rows_left != 0) & (wait == 0))
        period_w, period_r = wrgb_row_period(cfg), read_row_period(cfg)
        with m.If(start):
            m.d.sync += [busy.eq(1), is_read.eq(~is_wrgb), row.eq(first_row), wait.eq(0),
                         s_addr.eq(cmd.sram_addr), length.eq(cmd.len), gb_base.eq(cmd.gb_addr),
                         slot0.eq(cmd.slot), n_elems.eq(n_read),
                         o_start.eq(-(cmd.sram_addr & (W - 1)).as_signed() if wb else 0),
                         rows_left.eq(Mux(is_wrgb, nrows_w, nrows_r))]
        with m.Elif(issue):
            m.d.sync += [row.eq(row + 1), rows_left.eq(rows_left - 1),
                         wait.eq(Mux(is_read, period_r, period_w) - 1),
                         o_start.eq(o_start + W)]
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)

        # Stage 1 of a walk: the row read in the previous cycle is here.
        p1_valid = Signal()
        p1_row = Signal.like(row)
        p1_o = Signal.like(o_start)
        p1_last = Signal()
        m.d.sync += [p1_valid.eq(issue), p1_row.eq(row), p1_o.eq(o_start),
                     p1_last.eq(issue & (rows_left == 1))]

        # --- WRGB datapath: rotate the row into a 64-byte window at the staged chunk.
        m.d.comb += [self.sp_rd.addr.eq(row), self.sp_rd.en.eq(issue & ~is_read)]
        stage_data = Signal(8 * CB)
        stage_mask = Signal(CB)
        stage_chunk = Signal(len(self.pim.gb_wr.addr) + 1)
        flush = Signal()
        m.d.sync += flush.eq(p1_valid & p1_last & ~is_read)
        # Which lanes of the row hold SP[s : s + len], and where lane 0 goes, depend on the row
        # number alone: they are computed in the issue cycle and registered beside the read
        # (FPGA timing: their comparators and adders used to sit between the block RAM's data
        # and the chunk write).
        row_elem0 = Signal(len(row) + wb + 1)
        m.d.comb += row_elem0.eq(row << wb if wb else row)
        lane_mask = Signal(W)
        for lane in range(W):
            e = row_elem0 + lane
            m.d.sync += lane_mask[lane].eq((e >= s_addr) & (e < s_addr + length))
        # Window position of lane 0, plus W so that it is never negative (the first row's
        # lanes before sram_addr may lie before the first chunk): lane 0's destination byte
        # row_elem0 - s + a, relative to the staged chunk. That lies in [0, 2 CB + 2 W), so
        # it is exact modulo 2 ** len(shift); only the chunk's low bits are subtracted in
        # stage 1.
        shift = Signal(range(2 * CB + 2 * W))
        k = len(shift)
        dest_w = Signal(k)                   # row_elem0 - s + a + W, modulo 2 ** k
        m.d.sync += dest_w.eq((row_elem0 - s_addr + gb_base + W)[:k])
        staged = Signal()                    # a chunk is staged (false before the first row)
        base_chunk = Signal.like(stage_chunk)
        m.d.comb += base_chunk.eq(Mux(staged, stage_chunk, gb_base >> 5))
        m.d.comb += shift.eq((dest_w - (base_chunk[:k - 5] << 5))[:k])
        sp_bytes = Signal(8 * W)
        m.d.comb += sp_bytes.eq(self.sp_rd.data.as_value())
        win_data = Signal(16 * CB)
        win_mask = Signal(2 * CB)
        byte_mask = Cat(*[lane_mask[lane].replicate(8) for lane in range(W)])
        m.d.comb += [win_data.eq(((sp_bytes & byte_mask) << (shift * 8))[8 * W:]),
                     win_mask.eq((lane_mask << shift)[W:])]
        lo_mask, hi_mask = win_mask[:CB], win_mask[CB:]
        lo_bytes = Cat(*[lo_mask[x].replicate(8) for x in range(CB)])
        cur_data = Signal(8 * CB)
        cur_mask = Signal(CB)
        m.d.comb += [cur_data.eq(Mux(staged, stage_data, 0) & ~lo_bytes | win_data[:8 * CB]),
                     cur_mask.eq(Mux(staged, stage_mask, 0) | lo_mask)]
        # The chunk write is registered on its way to the banks' replicas (FPGA timing: the
        # engines sit by their banks, across the device), so a chunk lands a cycle after this
        # walk decides it; a MAC reads the buffer three cycles after the walk's done at the
        # earliest (mac_go, the engine's pending slot, its current one).
        gbw = Signal.like(self.pim.gb_wr)
        m.d.sync += self.pim.gb_wr.eq(gbw)
        with m.If(start):
            m.d.sync += staged.eq(0)
        with m.If(p1_valid & ~is_read):
            m.d.sync += staged.eq(1)
            with m.If(hi_mask != 0):
                m.d.comb += [gbw.en.eq(1), gbw.addr.eq(base_chunk), gbw.data.eq(cur_data),
                             gbw.mask.eq(cur_mask)]
                m.d.sync += [stage_data.eq(win_data[8 * CB:]), stage_mask.eq(hi_mask),
                             stage_chunk.eq(base_chunk + 1)]
            with m.Else():
                m.d.sync += [stage_data.eq(cur_data), stage_mask.eq(cur_mask),
                             stage_chunk.eq(base_chunk)]
        with m.Elif(flush):
            m.d.comb += [gbw.en.eq(stage_mask != 0), gbw.addr.eq(stage_chunk),
                         gbw.data.eq(stage_data), gbw.mask.eq(stage_mask)]

        # --- READ datapath: bank b serves the lane l ≡ b - o_start (mod B) of the row.
        rd_addr = self.pim.slot_rd_addr
        m.d.comb += self.pim.slot_rd_en.eq(issue & is_read)
        for b in range(B):
            lane = Signal(bb or 1, name=f"rd_lane{b}")
            m.d.comb += lane.eq((b - o_start)[:bb] if bb else 0)
            ob = Signal(signed(len(o_start) + 1), name=f"rd_o{b}")
            m.d.comb += ob.eq(o_start + lane)
            m.d.comb += rd_addr[b].eq(slot0 + (ob >> bb if bb else ob)[:len(rd_addr[b])])
        accw = self.acc_wr
        m.d.comb += accw.addr.eq(p1_row)
        for lane in range(W):
            o = Signal(signed(len(o_start) + 1), name=f"wr_o{lane}")
            m.d.comb += o.eq(p1_o + lane)
            src = Signal(bb or 1, name=f"wr_bank{lane}")
            m.d.comb += src.eq(o[:bb] if bb else 0)
            m.d.comb += [accw.data[lane].eq(self.pim.slot_rd_data[src]),
                         accw.en[lane].eq(p1_valid & is_read & (o >= 0) & (o < n_elems))]

        # The walk ends with its last write: the last row's stage-1 cycle (READ), or the flush
        # after it (WRGB). A walk with no rows ends at once.
        empty_walk = busy & (rows_left == 0) & ~p1_valid & ~flush
        with m.If((p1_valid & p1_last & is_read) | flush | empty_walk):
            m.d.comb += walk_done.eq(1)
            m.d.sync += busy.eq(0)
        return m
