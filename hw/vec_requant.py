"""The vector unit's requantisation stage: round-half-up right shift, then saturation."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["COARSE_BITS", "T_BITS", "VecRequant", "clamp", "requant_prepare", "saturate"]

#: Width of the exact intermediate ``t`` of a vector operation: a 32×32-bit signed product.
T_BITS = 64

def clamp(value, bits: int):
    """Expression clamping ``value`` (signed or unsigned) to ``signed(bits)``.

    Built without comparators: the value is in range exactly when its bits from ``bits − 1``
    up (sign-extended) are all equal, so the test is an OR and an AND of those bits instead
    of two subtractions with carry chains as wide as the value.
    """
    v = Value.cast(value)
    if not v.shape().signed:
        v = Cat(v, Const(0, 1)).as_signed()
    if len(v) <= bits:
        return v
    top = v[bits - 1:]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(~top.any() | top.all(), v[:bits].as_signed(), Mux(v[-1], lo, hi))


def saturate(value, to_acc):
    """Expression clamping ``value`` to int32 when ``to_acc`` is high, else to int8.

    The result fits ``signed(32)``; an SP destination keeps the low 8 bits. This is
    ``numerics.sat`` for the two destination types of every vector instruction.
    """
    return Mux(to_acc, clamp(value, 32), clamp(value, 8))


#: The requantiser's shift is split: the stage before it shifts by the multiple of
#: ``1 << COARSE_BITS`` (:func:`requant_prepare`), the requantiser by the rest.
COARSE_BITS = 4


def requant_prepare(t, shift):
    """The first part of ``rshift_round(t, shift)``, for the pipeline stage before
    :class:`VecRequant`: ``2t`` arithmetically shifted right by ``shift``'s multiple of 16
    (``signed(T_BITS + 1)``). Splitting the 65-bit barrel shifter across two stages keeps the
    requantiser's stage to four shift levels, the rounding carry chain and the saturation
    (FPGA timing, docs/fpga.md); the result is the same.
    """
    t = Value.cast(t)
    shift = Value.cast(shift)
    return (t << 1) >> Cat(Const(0, COARSE_BITS), shift[COARSE_BITS:])


class VecRequant(wiring.Component):
    """``out = sat_T(rshift_round(t, shift))`` for ``lanes`` lanes, combinationally, from
    ``u = requant_prepare(t, shift)``.

    ``rshift_round(t, s) = (t >> s) + ((t >> (s-1)) & 1)`` (round half up, ``t`` for ``s = 0``)
    is computed as ``((2t >> s) + 1) >> 1``: one arithmetic shift of a 65-bit value whose low bit
    is the rounding bit, so ``s = 0`` needs no special case and nothing can overflow. ``u`` is
    ``2t`` already shifted by ``s``'s multiple of 16; this component shifts by the rest.

    Parameters
    ----------
    lanes : int
        Number of lanes.

    Ports
    -----
    i_u : In(ArrayLayout(signed(65), lanes))
        ``requant_prepare(t, shift)`` of the exact intermediate values ``t``.
    i_shift : In(unsigned(6))
        Right shift, 0..63 (the same as given to ``requant_prepare``).
    i_to_acc : In(1)
        Saturate to int32 (ACC destination) when high, to int8 (SP destination) when low.
    o_out : Out(ArrayLayout(signed(32), lanes))
        Requantised, saturated values (sign-extended to 32 bits for an SP destination).
    """

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({
            "i_u": In(data.ArrayLayout(signed(T_BITS + 1), lanes)),
            "i_shift": In(unsigned(6)),
            "i_to_acc": In(1),
            "o_out": Out(data.ArrayLayout(signed(32), lanes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        for j in range(self.lanes):
            half = self.i_u[j] >> self.i_shift[:COARSE_BITS]    # t >> (s-1), or 2t when s = 0
            rounded = (half + 1) >> 1
            m.d.comb += self.o_out[j].eq(saturate(rounded, self.i_to_acc))
        return m
