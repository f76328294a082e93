"""The vector unit's square-root step: exact digit-by-digit integer square root."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["VecIsqrt"]


class VecIsqrt(wiring.Component):
    """``r = ⌊√max(a, 0)⌋`` (``numerics.isqrt``) for ``lanes`` lanes, one result bit per cycle.

    Binary digit-by-digit method: each of the :attr:`STEPS` = 16 steps brings the next two
    input bits into the partial remainder and subtracts ``4·root + 1`` when it fits, appending
    one root bit. A non-negative int32 has 16 such bit pairs; negative inputs are replaced by 0.
    The remainder never exceeds ``2·root`` < 2¹⁷ after a step, so 20 bits hold it.

    Timing: as :class:`~llmaccel.hw.vec_divider.VecDivider` — ``i_start`` in cycle *x*,
    ``o_valid`` in cycle *x* + :attr:`STEPS`; a start may coincide with ``o_valid``.

    Parameters
    ----------
    lanes : int
        Number of lanes.

    Ports
    -----
    i_start : In(1)
        Start a square root in every lane.
    i_data : In(ArrayLayout(signed(32), lanes))
        Inputs.
    o_valid : Out(1)
        High for one cycle when the roots are ready.
    o_root : Out(ArrayLayout(signed(32), lanes))
        Roots (0..46340).
    """

    STEPS = 16

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({
            "i_start": In(1),
            "i_data": In(data.ArrayLayout(signed(32), lanes)),
            "o_valid": Out(1),
            "o_root": Out(data.ArrayLayout(signed(32), lanes)),
        })

    @staticmethod
    def _step(x, rem, root):
        """One digit step: returns the next (input shift register, remainder, root)."""
        brought = Cat(x[30:32], rem)[:20]           # (rem << 2) | next two input bits
        trial = Cat(Const(1, 2), root)               # (root << 2) | 1
        fits = brought >= trial
        return (Cat(Const(0, 2), x[:30]), Mux(fits, brought - trial, brought)[:20],
                Cat(fits, root[:15]))

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.STEPS
        count = Signal(range(n))
        running = Signal()
        m.d.comb += self.o_valid.eq(running & (count == 0))
        with m.If(self.i_start):
            m.d.sync += [running.eq(1), count.eq(n - 1)]
        with m.Elif(count != 0):
            m.d.sync += count.eq(count - 1)
        with m.Elif(running):
            m.d.sync += running.eq(0)

        for j in range(self.lanes):
            x = Signal(unsigned(32), name=f"x{j}")
            rem = Signal(unsigned(20), name=f"rem{j}")
            root = Signal(unsigned(16), name=f"root{j}")
            with m.If(self.i_start):
                a = self.i_data[j]
                x0 = Mux(a < 0, 0, a.as_unsigned())
                m.d.sync += Cat(x, rem, root).eq(Cat(*self._step(x0, Const(0, 20),
                                                                    Const(0, 16))))
            with m.Elif(count != 0):
                m.d.sync += Cat(x, rem, root).eq(Cat(*self._step(x, rem, root)))
            m.d.comb += self.o_root[j].eq(root)
        return m
