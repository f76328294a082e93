"""The vector unit's element-wise arithmetic: add, subtract, multiply, maximum, minimum."""

from __future__ import annotations

from amaranth import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .isa import Opcode
from .vec_requant import T_BITS

__all__ = ["VecAlu"]


class VecAlu(wiring.Component):
    """``t = a (op) b`` exactly, per lane, combinationally (``numerics.valu`` before requant).

    The product is a full 32×32 → 64-bit signed multiply written as a plain ``*`` so that
    synthesis maps it onto DSP blocks; sums and differences need 33 bits. Every result is
    sign-extended to 64 bits for the requantisation stage.

    Parameters
    ----------
    lanes : int
        Number of lanes.

    Ports
    -----
    i_op : In(Opcode)
        ``VADD``, ``VSUB``, ``VMUL``, ``VMAX`` or ``VMIN``; any other opcode gives ``t = a``.
    i_a, i_b : In(ArrayLayout(signed(32), lanes))
        Operands (int8 operands already sign-extended).
    o_t : Out(ArrayLayout(signed(64), lanes))
        Exact results.
    """

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({
            "i_op": In(Opcode),
            "i_a": In(data.ArrayLayout(signed(32), lanes)),
            "i_b": In(data.ArrayLayout(signed(32), lanes)),
            "o_t": Out(data.ArrayLayout(signed(T_BITS), lanes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        for j in range(self.lanes):
            a, b, t = self.i_a[j], self.i_b[j], self.o_t[j]
            with m.Switch(self.i_op):
                with m.Case(Opcode.VADD):
                    m.d.comb += t.eq(a + b)
                with m.Case(Opcode.VSUB):
                    m.d.comb += t.eq(a - b)
                with m.Case(Opcode.VMUL):
                    m.d.comb += t.eq(a * b)
                with m.Case(Opcode.VMAX):
                    m.d.comb += t.eq(Mux(a > b, a, b))
                with m.Case(Opcode.VMIN):
                    m.d.comb += t.eq(Mux(a < b, a, b))
                with m.Default():
                    m.d.comb += t.eq(a)
        return m
