"""The vector unit's W×W transpose buffer for VTRANS."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig

__all__ = ["VecTransposer"]


class VecTransposer(wiring.Component):
    """A W×W register buffer that transposes one block while the next one streams in.

    Lines are rows (``i_orient`` = 0) or columns (``i_orient`` = 1) of the buffer. In one cycle
    the unit reads line ``c`` (combinationally, before this cycle's write) and writes line ``c``
    with the same orientation. Filling block *k* in one orientation and then reading its lines in
    the other orientation yields the transpose; writing block *k + 1* into the lines as they are
    read out makes the buffer hold block *k + 1* in the flipped orientation, so blocks stream at
    one row per cycle with a single buffer.

    Parameters
    ----------
    cfg : AccelConfig
        Uses ``row_width`` (W).

    Ports
    -----
    i_we : In(1)
        Write ``i_data`` to line ``i_line`` at the end of this cycle.
    i_line : In(range(W))
        The line read on ``o_data`` and written by ``i_we``.
    i_orient : In(1)
        0: lines are rows of the buffer; 1: columns.
    i_data : In(ArrayLayout(signed(32), W))
        Line to write.
    o_data : Out(ArrayLayout(signed(32), W))
        Current contents of line ``i_line``.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise ValueError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        W = cfg.row_width
        super().__init__({
            "i_we": In(1),
            "i_line": In(range(W)),
            "i_orient": In(1),
            "i_data": In(data.ArrayLayout(signed(32), W)),
            "o_data": Out(data.ArrayLayout(signed(32), W)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self.cfg.row_width
        buf = [[Signal(signed(32), name=f"b{i}_{j}") for j in range(W)] for i in range(W)]
        rows = Array(Array(row) for row in buf)
        for j in range(W):
            m.d.comb += self.o_data[j].eq(Mux(self.i_orient, rows[j][self.i_line],
                                              rows[self.i_line][j]))
        for i in range(W):
            for j in range(W):
                with m.If(self.i_we):
                    with m.If(~self.i_orient & (self.i_line == i)):
                        m.d.sync += buf[i][j].eq(self.i_data[j])
                    with m.Elif(self.i_orient & (self.i_line == j)):
                        m.d.sync += buf[i][j].eq(self.i_data[i])
        return m
