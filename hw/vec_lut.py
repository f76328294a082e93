"""The vector unit's lookup tables: every lane reads any entry of the selected table at once."""

from __future__ import annotations

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig

__all__ = ["VecLut"]


class VecLut(wiring.Component):
    """``lut_tables`` tables of 256 int16 entries, read by ``vector_lanes`` lanes in parallel.

    One :class:`~amaranth.lib.memory.Memory` whose words are ``W`` entries wide (``W`` = the
    SRAM row width), so ``VLUTLD`` writes a whole accumulator row of entries per cycle, with one
    synchronous read port per lane (synthesis replicates the memory per port) so every lane can
    look up a different entry in the same cycle. Word ``table·(256/W) + index // W`` holds entry
    ``index``; the read port returns the word and a registered ``index % W`` selects the entry.

    Parameters
    ----------
    cfg : AccelConfig
        Uses ``row_width``, ``vector_lanes`` and ``lut_tables``.

    Ports
    -----
    i_table : In(range(lut_tables))
        Table the lanes read (held for the whole instruction).
    i_index : In(ArrayLayout(unsigned(8), lanes))
        Entry index per lane (``sat8(a) + 128``); the entry appears on ``o_data`` one cycle later.
    o_data : Out(ArrayLayout(signed(16), lanes))
        The entries addressed in the previous cycle.
    i_wr_en : In(1)
        Write ``i_wr_data`` to word ``i_wr_addr`` at the end of this cycle.
    i_wr_addr : In(range(lut_tables · 256 / W))
        Word address: ``table·(256/W) + row``.
    i_wr_data : In(ArrayLayout(signed(16), W))
        Entries ``W·row … W·row + W − 1`` of the table.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise ValueError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        self.words = cfg.lut_tables * 256 // cfg.row_width
        super().__init__({
            "i_table": In(range(cfg.lut_tables)),
            "i_index": In(data.ArrayLayout(unsigned(8), cfg.vector_lanes)),
            "o_data": Out(data.ArrayLayout(signed(16), cfg.vector_lanes)),
            "i_wr_en": In(1),
            "i_wr_addr": In(range(self.words)),
            "i_wr_data": In(data.ArrayLayout(signed(16), cfg.row_width)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.cfg
        W, L = cfg.row_width, cfg.vector_lanes
        wbits = (W - 1).bit_length()
        m.submodules.mem = mem = memory.Memory(
            shape=data.ArrayLayout(signed(16), W), depth=self.words, init=[])
        wp = mem.write_port()
        m.d.comb += [wp.addr.eq(self.i_wr_addr), wp.data.eq(self.i_wr_data),
                     wp.en.eq(self.i_wr_en)]
        for j in range(L):
            rp = mem.read_port()
            index = self.i_index[j]
            m.d.comb += rp.addr.eq(Cat(index[wbits:], self.i_table))
            sel = Signal(range(W), name=f"sel{j}")
            m.d.sync += sel.eq(index[:wbits])
            m.d.comb += self.o_data[j].eq(rp.data[sel])
        return m
