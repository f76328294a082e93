"""One processing element of the output-stationary systolic array."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """An int8 × int8 multiply-accumulate with an int32 accumulator and a result register.

    Every cycle the PE multiplies the operands it receives (``a_in`` from its left neighbour,
    ``b_in`` from the one above) and adds the product to its accumulator, wrapping to 32 bits;
    it passes both operands on, registered, to its right and lower neighbours. Operands that
    belong to no MAC arrive as zero (the array gates the A operand at its edge), so the PE needs
    no "valid" input.

    At the end of a fold (``eof``), the finished sum moves into the result register ``x`` and the
    accumulator restarts with this cycle's product, so the next fold's first MAC can happen in
    the same cycle. The result registers of one array row form a shift chain towards the
    right edge (``shift`` takes the left neighbour's ``x_in``), which is how a fold's results
    leave while the next fold computes.

    Ports
    -----
    a_in, b_in: In(signed(8))
        Operands of this cycle.
    a_out, b_out: Out(signed(8))
        The operands, one cycle later (to the right / lower neighbour).
    eof: In(1)
        End of fold at this PE: ``x ← acc`` and ``acc ← a_in·b_in``.
    shift: In(1)
        ``x ← x_in`` (ignored when ``eof`` is high; the array never asserts both).
    x_in: In(signed(32))
        The left neighbour's result register.
    x_out: Out(signed(32))
        The result register.
    """

    a_in: In(signed(8))
    b_in: In(signed(8))
    a_out: Out(signed(8))
    b_out: Out(signed(8))
    eof: In(1)
    shift: In(1)
    x_in: In(signed(32))
    x_out: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        acc = Signal(signed(32))
        # A plain 8-bit signed product so that synthesis infers a DSP multiplier.
        product = self.a_in * self.b_in
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.b_out.eq(self.b_in),
            acc.eq(Mux(self.eof, 0, acc) + product),
        ]
        with m.If(self.eof):
            m.d.sync += self.x_out.eq(acc)
        with m.Elif(self.shift):
            m.d.sync += self.x_out.eq(self.x_in)
        return m
