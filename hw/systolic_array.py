"""The output-stationary systolic array: R × C processing elements, skew and deskew buffers."""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .processing_element import ProcessingElement

__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """R × C int8 MACs, output-stationary, with a result shift chain per row.

    PE (r, c) accumulates output (r, c) of the current fold. A beat presented at the edge in
    cycle t (``a`` = one A column: row r's operand in lane r; ``b`` = one B row: column c's
    operand in lane c; ``eof`` = the beat ends the previous fold) reaches PE (r, c) in cycle
    t + r + c: the skew buffers delay lane r of ``a`` by r cycles and lane c of ``b`` by c
    cycles, and the operands then move one PE per cycle, A to the right and B down. ``eof``
    travels on a shared delay line; PE (r, c) reads tap r + c, which is the same wavefront
    without R·C flag registers.

    Draining (the reason the design keeps up with one fold every max(k, C) cycles): at its eof
    each PE moves its sum into its result register. Row r's result registers hold still until
    the wavefront has passed the row's last PE (C cycles after PE (r, 0)), then shift right
    once per cycle, so the right edge emits column C−1, C−2, …, 0 of row r in consecutive
    cycles. A PE stops shifting as soon as the values to its left have passed, which is why the
    next fold's eof may follow after only C cycles. Row r is emitted r cycles after row 0, so a
    deskew buffer delays it by R−1−r cycles and ``col`` presents whole output columns (one
    accumulator row of R outputs) per cycle.

    Timing contract, for an eof beat at the edge in cycle t: ``eof_last`` is high in cycle
    t + R + C − 2 (the eof reaches PE (R−1, C−1)), and ``col`` carries output column C−1−i of
    the finished fold in cycle t + R + C − 1 + i, for i = 0 … C−1. Consecutive eof beats must
    be at least C cycles apart (the result chain of a row is busy for C cycles per fold).

    Parameters
    ----------
    rows, cols:
        R and C, each at least 2.

    Ports
    -----
    a: In(ArrayLayout(signed(8), rows))
        A operands of this beat (zero when the beat carries no MAC).
    b: In(ArrayLayout(signed(8), cols))
        B operands of this beat.
    eof: In(1)
        This beat ends the previous fold.
    col: Out(ArrayLayout(signed(32), rows))
        One finished output column (see the timing contract).
    eof_last: Out(1)
        The eof wavefront is at PE (R−1, C−1): ``col`` carries the first column next cycle.
    """

    def __init__(self, rows: int, cols: int):
        for name, v in (("rows", rows), ("cols", cols)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                raise ValueError(f"{name} must be an integer of at least 2, not {v!r}")
        self.rows = rows
        self.cols = cols
        super().__init__({
            "a": In(data.ArrayLayout(signed(8), rows)),
            "b": In(data.ArrayLayout(signed(8), cols)),
            "eof": In(1),
            "col": Out(data.ArrayLayout(signed(32), rows)),
            "eof_last": Out(1),
        })

    @staticmethod
    def _delay(m: Module, value, n: int, name: str):
        """``value`` delayed by ``n`` registers."""
        for i in range(n):
            reg = Signal.like(value, name=f"{name}_{i}")
            m.d.sync += reg.eq(value)
            value = reg
        return value

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        # The eof delay line: tap d is the eof flag of the beat that entered the edge d cycles
        # ago. Taps 0 … R+C−2 drive the PEs, taps up to R+2C−3 the shift windows.
        line = [self.eof]
        for d in range(1, R + 2 * C - 2):
            tap = Signal(name=f"eof_d{d}")
            m.d.sync += tap.eq(line[-1])
            line.append(tap)
        m.d.comb += self.eof_last.eq(line[R + C - 2])

        a_skew = [self._delay(m, self.a[r], r, f"a_skew{r}") for r in range(R)]
        b_skew = [self._delay(m, self.b[c], c, f"b_skew{c}") for c in range(C)]

        pes = [[ProcessingElement() for _ in range(C)] for _ in range(R)]
        for r in range(R):
            # PE (r, c) shifts in cycles t_r + C … t_r + C + c − 1, where t_r is the eof at
            # PE (r, 0): exactly while values from its left still have to pass it. The window
            # is a prefix OR over the eof taps r + C … r + C + c − 1.
            window = None
            for c in range(C):
                pe = pes[r][c]
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [
                    pe.a_in.eq(a_skew[r] if c == 0 else pes[r][c - 1].a_out),
                    pe.b_in.eq(b_skew[c] if r == 0 else pes[r - 1][c].b_out),
                    pe.eof.eq(line[r + c]),
                ]
                if c:
                    tap = line[r + C + c - 1]
                    window = tap if window is None else window | tap
                    shift = Signal(name=f"shift_{r}_{c}")
                    m.d.comb += [
                        shift.eq(window),
                        pe.shift.eq(shift),
                        pe.x_in.eq(pes[r][c - 1].x_out),
                    ]
            out = self._delay(m, pes[r][C - 1].x_out, R - 1 - r, f"deskew{r}")
            m.d.comb += self.col[r].eq(out)
        return m
