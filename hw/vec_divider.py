"""The vector unit's reciprocal step: exact restoring division, one quotient bit per cycle."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["VecDivider"]

_INT32_MAX = (1 << 31) - 1


class VecDivider(wiring.Component):
    """``q = ⌊num / a⌋`` for ``a > 0`` and ``INT32_MAX`` for ``a ≤ 0`` (``numerics.recip``),
    for ``lanes`` divisors and one shared numerator.

    The numerator is an instruction immediate in ``0..INT32_MAX``, so the quotient has
    :attr:`STEPS` = 31 bits and a restoring divider produces it in 31 steps: the remainder
    (32 bits, because it is below the divisor < 2³¹ before each left shift) takes the next
    numerator bit, and the divisor is subtracted when it fits. The quotient bits shift into the
    register that the numerator bits shift out of.

    Timing: ``i_start`` high in cycle *x* samples the operands and performs the first step at the
    end of *x*; ``o_valid`` is high in cycle *x* + :attr:`STEPS`, when ``o_quot`` holds the
    result (it stays there until the next start). A start may coincide with ``o_valid``.

    Parameters
    ----------
    lanes : int
        Number of parallel dividers.

    Ports
    -----
    i_start : In(1)
        Start a division of every lane.
    i_num : In(unsigned(31))
        Numerator, shared by every lane.
    i_den : In(ArrayLayout(signed(32), lanes))
        Divisors; a divisor ≤ 0 gives ``INT32_MAX``.
    o_valid : Out(1)
        High for one cycle when the quotients are ready.
    o_quot : Out(ArrayLayout(signed(32), lanes))
        Quotients (non-negative).
    """

    STEPS = 31

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({
            "i_start": In(1),
            "i_num": In(unsigned(self.STEPS)),
            "i_den": In(data.ArrayLayout(signed(32), lanes)),
            "o_valid": Out(1),
            "o_quot": Out(data.ArrayLayout(signed(32), lanes)),
        })

    def _step(self, rem, quo, den):
        """One restoring step: returns the next (remainder, quotient/numerator register)."""
        n = self.STEPS
        shifted = Cat(quo[n - 1], rem[:31])          # (rem << 1) | next numerator bit
        fits = shifted >= den
        return Mux(fits, shifted - den, shifted), Cat(fits, quo[:n - 1])

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
            rem = Signal(unsigned(32), name=f"rem{j}")
            quo = Signal(unsigned(n), name=f"quo{j}")
            den = Signal(unsigned(31), name=f"den{j}")
            nonpos = Signal(name=f"nonpos{j}")
            with m.If(self.i_start):
                d = self.i_den[j]
                r0, q0 = self._step(Const(0, 32), self.i_num, d[:31])
                m.d.sync += [rem.eq(r0), quo.eq(q0), den.eq(d[:31]), nonpos.eq(d <= 0)]
            with m.Elif(count != 0):
                r1, q1 = self._step(rem, quo, den)
                m.d.sync += [rem.eq(r1), quo.eq(q1)]
            m.d.comb += self.o_quot[j].eq(Mux(nonpos, _INT32_MAX, quo))
        return m
