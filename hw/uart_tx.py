"""UART transmitter: 8 data bits, no parity, one stop bit (8N1), LSB first."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartTx"]


class UartTx(wiring.Component):
    """Sends every byte of ``i_data`` as an 8N1 frame on ``o_tx``, ``divisor`` cycles per bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``clk_hz // baud``), at least 4.

    Ports
    -----
    i_data : In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle, so a byte is taken in
        the cycle its frame starts and the next one one frame (ten bit times) later.
    o_tx : Out(1)
        The serial line, high when idle.
    """

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__({"i_data": In(stream.Signature(8)), "o_tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        # Start bit, eight data bits, stop bit; shifted out LSB first, ones shifted in behind.
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))

        m.d.comb += [self.o_tx.eq(shreg[0]), self.i_data.ready.eq(left == 0)]
        with m.If(self.i_data.valid & self.i_data.ready):
            m.d.sync += [shreg.eq(Cat(0, self.i_data.payload, 1)), left.eq(10),
                         timer.eq(div - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), left.eq(left - 1), timer.eq(div - 1)]
        return m
