"""UART receiver: 8 data bits, no parity, one stop bit (8N1), LSB first."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx"]


class UartRx(wiring.Component):
    """Receives 8N1 frames on ``i_rx`` at ``1 / divisor`` of the clock frequency.

    The line goes through a two-flop synchroniser. A falling edge starts a frame; the start bit
    is checked again half a bit later (a shorter glitch is ignored), then every data bit and the
    stop bit are sampled in the middle of their bit time. A frame whose stop bit is low (a
    framing error, or a break) is dropped and counted in ``o_frame_error``. The receiver is
    ready for the next start bit from the middle of the stop bit, so a transmitter up to half a
    bit per frame fast is tolerated.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (``clk_hz // baud``), at least 4.

    Ports
    -----
    i_rx : In(1)
        The serial line (idle high), asynchronous to the clock.
    o_data : Out(stream.Signature(8))
        Received bytes. A UART cannot be paused, so a byte that arrives while the previous one
        is still waiting for ``ready`` is dropped and ``o_overrun`` rises; the consumer keeps
        ``ready`` high (the bridge has a FIFO in front of its decoder for that reason).
    o_overrun : Out(1)
        Sticky: a byte was dropped because ``o_data`` was not taken in time.
    o_frame_error : Out(1)
        Sticky: a frame with a low stop bit was received.
    """

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
        self.divisor = divisor
        super().__init__({"i_rx": In(1, init=1), "o_data": Out(stream.Signature(8)),
                          "o_overrun": Out(1), "o_frame_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        s0_rx = Signal(init=1)
        s1_rx = Signal(init=1)
        m.d.sync += [s0_rx.eq(self.i_rx), s1_rx.eq(s0_rx)]

        timer = Signal(range(div))
        bits = Signal(3)
        shreg = Signal(8)

        with m.If(self.o_data.valid & self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)

        with m.FSM():
            with m.State("idle"), m.If(~s1_rx):
                m.d.sync += timer.eq(div // 2 - 1)
                m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(s1_rx):
                    m.next = "idle"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq((shreg >> 1) | (s1_rx << 7)), bits.eq(bits + 1),
                                 timer.eq(div - 1)]
                    with m.If(bits == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(~s1_rx):
                        m.d.sync += self.o_frame_error.eq(1)
                    with m.Elif(self.o_data.valid & ~self.o_data.ready):
                        m.d.sync += self.o_overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o_data.payload.eq(shreg), self.o_data.valid.eq(1)]
                    m.next = "idle"
        return m
