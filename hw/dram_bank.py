"""One DRAM bank: its storage and its row-buffer / timing state.

The storage holds ``bank_rows · cols_per_row`` entries of 256 bits (one column each), with
byte-granular writes: one Amaranth memory when that depth is a power of two, otherwise one
memory per power of two of its binary decomposition (see ``elaborate``). The row buffer is
modelled by its state (which row is open): data are read from and written to the array
directly, which is functionally the same as going through an open row because a column command
is only legal to the open row.

The bank keeps the per-bank timing constraints as down-counters, each meaning "cycles until the
command may issue" (zero: legal now). The channel's scheduler (:class:`~.dram_channel.DramChannel`)
tells the bank which command it issued to it each cycle; channel-wide constraints (tRRD, tFAW,
tCCD across banks, the data bus) live in the scheduler.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig

__all__ = ["DramBank", "DramCmd", "col_word_layout", "storage_names", "storage_pieces",
           "wait_counter"]


class DramCmd(enum.Enum, shape=3):
    """Commands on the channel's command bus (and per-bank PIM column reads, ``MAC``)."""

    NONE = 0
    ACT = 1
    PRE = 2
    RD = 3
    WR = 4
    REF = 5
    MAC = 6


def col_word_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """One 256-bit DRAM column as 32 bytes."""
    return data.ArrayLayout(unsigned(8), cfg.col_bytes)


def wait_counter(name: str, *constraints: int) -> Signal:
    """A down-counter ("cycles until legal", zero: legal now) for constraints of these lengths
    in cycles: a constraint of c cycles sets it to at most c - 1, so it is as wide as the
    longest needs rather than as wide as tREFI. Its comparisons are on the scheduler's path to
    the command, so the width counts. At least one bit (a zero-width signal is an illegal
    vector in Verilog); when every constraint is one cycle, as on the ``fpga`` preset, it
    stays zero and synthesis removes it."""
    return Signal(range(max(2, *constraints)), name=name)


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def storage_pieces(depth: int) -> list[tuple[int, int]]:
    """``(base, depth)`` of the memories a bank of ``depth`` entries is built from: the powers
    of two of ``depth``'s binary decomposition, largest first (``2560`` → ``(0, 2048), (2048,
    512)``), so each piece is aligned to its depth; one piece when ``depth`` is a power of two."""
    pieces, base = [], 0
    for bit in reversed(range(depth.bit_length())):
        if depth >> bit & 1:
            pieces.append((base, 1 << bit))
            base += 1 << bit
    return pieces


def storage_names(depth: int) -> list[str]:
    """Submodule names of those memories: ``mem``, or ``mem0``, ``mem1``, … when split."""
    n = len(storage_pieces(depth))
    return ["mem"] if n == 1 else [f"mem{i}" for i in range(n)]


class DramBank(wiring.Component):
    """Storage and timing state of one bank.

    Parameters
    ----------
    cfg:
        The accelerator configuration (geometry and :class:`~.config.DramTiming`).
    init:
        Optional list of ``bank_rows · cols_per_row`` integers, the bank's initial columns
        (entry ``row · cols_per_row + col``, byte 0 in bits 0–7).

    Ports
    -----
    cmd: In(DramCmd)
        The command the scheduler issues to this bank in this cycle (``NONE`` otherwise). ``REF``
        is broadcast to every bank; ``MAC`` is a PIM column read that does not use the bus.
    cmd_row: In(row bits)
        Row of an ``ACT``.
    rd_addr, rd_en: In
        Column read (entry index ``row · cols_per_row + col``); ``rd_data`` is valid the next
        cycle and holds while ``rd_en`` is low.
    rd_data: Out(32 bytes)
    wr_addr, wr_data, wr_mask: In
        Column write with a byte mask (bytes with a zero mask bit keep their value). A read of
        the word written in the same cycle returns the old word in simulation; on an FPGA it
        is undefined (see ``elaborate``), and the channel never uses such a read.
    is_open: Out(1), open_row: Out(row bits)
        Row-buffer state.
    act_ok, pre_ok, col_ok, ccd_ok: Out(1)
        ACT (tRP after PRE, tRC after ACT, tRFC after REF), PRE (tRAS after ACT, tRTP after a
        read, tWR after the end of a write burst), column (tRCD after ACT) and same-bank column
        spacing (tCCD_L after any column command, RD, WR or MAC) are legal in this cycle.
    """

    def __init__(self, cfg: AccelConfig, init: list[int] | None = None):
        self.cfg = cfg
        depth = cfg.bank_rows * cfg.cols_per_row
        if init is not None and len(init) != depth:
            raise ValueError(f"init must have {depth} entries, not {len(init)!r}")
        self._init = init
        self._depth = depth
        aw = _bits(depth)
        word = col_word_layout(cfg)
        super().__init__({
            "cmd": In(DramCmd),
            "cmd_row": In(_bits(cfg.bank_rows)),
            "rd_addr": In(aw),
            "rd_en": In(1),
            "rd_data": Out(word),
            "wr_addr": In(aw),
            "wr_data": In(word),
            "wr_mask": In(cfg.col_bytes),
            "is_open": Out(1),
            "open_row": Out(_bits(cfg.bank_rows)),
            "act_ok": Out(1),
            "pre_ok": Out(1),
            "col_ok": Out(1),
            "ccd_ok": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, t = self.cfg, self.cfg.timing
        # A plain 256-bit memory (rather than an array layout) keeps the initialiser cheap to
        # build for large banks; the ports view the words as bytes.
        #
        # One write port and one read port, each with its own address: the shape of a
        # pseudo-dual-port block RAM (ECP5 PDPW16KD, 512 × 36, so a bank of 32-column rows
        # tiles in steps of 16 rows). The channel multiplexes its host backdoor onto these two
        # ports. Block RAM cannot return the old word when its read port reads the word its
        # write port writes in the same cycle; the channel never uses such a read (its read
        # port is always enabled, so it reads the written column in a WR cycle, data nobody
        # samples), and sw/fpga.py declares that collision undefined for the DRAM banks.
        #
        # A depth that is not a power of two is split into power-of-two memories (2560 = 2048 +
        # 512 at the fpga preset's 80 rows): as one memory, Yosys tiles it 5 blocks deep and
        # selects among them with a 5-way read multiplexer on the path from the block RAM into
        # the PIM dot product (981 LUT4 per bank); two memories take the same 40 blocks and a
        # 2-way multiplexer (377 LUT4, tests/sw/test_fpga.py). A power-of-two depth stays one
        # memory, ``mem``, as the backdoors and sw/fpga.py expect.
        pieces = storage_pieces(self._depth)
        split = len(pieces) > 1
        rd_hit, rd_data = [], []
        for name, (base, depth) in zip(storage_names(self._depth), pieces, strict=True):
            m.submodules[name] = mem = memory.Memory(
                shape=unsigned(8 * cfg.col_bytes), depth=depth,
                init=self._init[base:base + depth] if self._init else [])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            aw = len(wp.addr)
            rd_en, wr_en = self.rd_en, self.wr_mask
            if split:
                # Pieces are aligned to their depth: the address bits above the piece's own
                # select it.
                rd_hit.append(self.rd_addr[aw:] == base >> aw)
                rd_en = self.rd_en & rd_hit[-1]
                wr_en = Mux(self.wr_addr[aw:] == base >> aw, self.wr_mask, 0)
            rd_data.append(rp.data)
            m.d.comb += [
                rp.addr.eq(self.rd_addr[:aw]), rp.en.eq(rd_en),
                wp.addr.eq(self.wr_addr[:aw]), wp.data.eq(self.wr_data.as_value()),
                wp.en.eq(wr_en),
            ]
        if split:
            # Which piece the last read went to; like the read ports' data it changes only
            # on a read (and not on reset), so rd_data holds while rd_en is low.
            s1_piece = Signal(range(len(pieces)), reset_less=True)
            with m.If(self.rd_en):
                for i, hit in enumerate(rd_hit):
                    with m.If(hit):
                        m.d.sync += s1_piece.eq(i)
            m.d.comb += self.rd_data.as_value().eq(Array(rd_data)[s1_piece])
        else:
            m.d.comb += self.rd_data.as_value().eq(rd_data[0])

        act_wait = wait_counter("act_wait", t.tRC, t.tRP, t.tRFC)
        pre_wait = wait_counter("pre_wait", t.tRAS, t.tRTP, t.tBURST + t.tWR)
        col_wait = wait_counter("col_wait", t.tRCD)
        ccd_wait = wait_counter("ccd_wait", t.tCCD_L)
        is_open = Signal()
        open_row = Signal.like(self.open_row)
        m.d.comb += [
            self.is_open.eq(is_open), self.open_row.eq(open_row),
            self.act_ok.eq(act_wait == 0), self.pre_ok.eq(pre_wait == 0),
            self.col_ok.eq(col_wait == 0), self.ccd_ok.eq(ccd_wait == 0),
        ]

        def dec(x):
            return Mux((x == 0), 0, x - 1)

        def upd(x, cycles):
            # A new constraint "not before `cycles` from now" on top of an older one.
            d = dec(x)
            return Mux((d > cycles - 1), d, cycles - 1)

        new_act, new_pre, new_col, new_ccd = dec(act_wait), dec(pre_wait), dec(col_wait), \
            dec(ccd_wait)
        m.d.sync += [act_wait.eq(new_act), pre_wait.eq(new_pre), col_wait.eq(new_col),
                     ccd_wait.eq(new_ccd)]
        with m.Switch(self.cmd):
            with m.Case(DramCmd.ACT):
                m.d.sync += [is_open.eq(1), open_row.eq(self.cmd_row),
                             act_wait.eq(upd(act_wait, t.tRC)), col_wait.eq(t.tRCD - 1),
                             pre_wait.eq(upd(pre_wait, t.tRAS))]
            with m.Case(DramCmd.PRE):
                m.d.sync += [is_open.eq(0), act_wait.eq(upd(act_wait, t.tRP))]
            with m.Case(DramCmd.RD, DramCmd.MAC):
                m.d.sync += [pre_wait.eq(upd(pre_wait, t.tRTP)), ccd_wait.eq(t.tCCD_L - 1)]
            with m.Case(DramCmd.WR):
                m.d.sync += [pre_wait.eq(upd(pre_wait, t.tBURST + t.tWR)),
                             ccd_wait.eq(t.tCCD_L - 1)]
            with m.Case(DramCmd.REF):
                m.d.sync += act_wait.eq(upd(act_wait, t.tRFC))
        return m
