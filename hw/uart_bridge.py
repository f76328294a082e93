"""UART to Wishbone bridge: a host on a serial port reads and writes the accelerator's registers.

The protocol (docs/fpga.md, "Serial protocol"; ``llmaccel.sw.board`` is the host side) is a
sequence of frames, all integers little-endian:

===========================  =========================================  ======================
host → board                 meaning                                     board → host
===========================  =========================================  ======================
``01 a0 a1 d0 d1 d2 d3``     write word ``d`` to register byte address    ``01`` once written
                             ``a``
``02 a0 a1``                 read the register at ``a``                  ``d0 d1 d2 d3``
``03 a0 a1 n0 n1`` + n words write ``n`` words to ``a`` in turn (the      ``03`` after the last
                             ``MEM_DATA`` window advances by itself)     word
``04 a0 a1 n0 n1``           read ``n`` words from ``a`` in turn          ``4·n`` bytes
===========================  =========================================  ======================

Any other byte in place of an opcode is ignored (``00`` may be sent as padding). A frame that
stops arriving part-way is abandoned after ``timeout`` cycles without a byte, so a host that lost
track (a killed program) recovers by waiting that long. Burst counts of zero are allowed
(``03`` still acknowledges).
"""

from __future__ import annotations

import enum

from amaranth import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .uart_rx import UartRx
from .uart_tx import UartTx
from .wishbone import WB_ADDR_WIDTH, wishbone_signature

__all__ = ["BridgeOp", "UartBridge"]


class BridgeOp(enum.IntEnum):
    """Frame opcodes of the serial protocol (the first byte of a frame)."""

    WRITE = 0x01
    READ = 0x02
    WRITE_BURST = 0x03
    READ_BURST = 0x04


class UartBridge(wiring.Component):
    """A UART (8N1) and a Wishbone classic initiator executing the frames of the module
    docstring, one bus access at a time.

    Received bytes pass through a FIFO (``fifo_depth``) so the decoder may wait for a slow bus
    acknowledge while bytes keep arriving; every access of the accelerator's register block
    takes two cycles, far less than a byte time, so the FIFO never fills in practice.
    Replies go out as fast as the transmitter sends them.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit: ``clk_hz // baud`` (at least 4; the baud error is
        ``clk_hz / divisor / baud - 1`` and must stay within about ±2 % for 8N1).
    timeout : int
        Cycles without a byte after which a partial frame is abandoned.
    addr_width : int
        Word-address width of the bus (the register block's ``WB_ADDR_WIDTH``).
    fifo_depth : int
        Receive FIFO depth in bytes.

    Ports
    -----
    i_rx : In(1)
        Serial input from the host (idle high).
    o_tx : Out(1)
        Serial output to the host (idle high).
    bus : Out(wishbone_signature(addr_width))
        Wishbone classic initiator; ``sel`` is always all ones (whole words).
    o_overrun, o_frame_error : Out(1)
        Sticky receiver errors (:class:`~.uart_rx.UartRx`), for status LEDs.
    o_active : Out(1)
        A frame is being received or answered.
    """

    def __init__(self, divisor: int, *, timeout: int = 1 << 22,
                 addr_width: int = WB_ADDR_WIDTH, fifo_depth: int = 16):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor must be an integer of at least 4, not {divisor!r}")
        if not isinstance(timeout, int) or timeout < 20 * divisor:
            raise ValueError(f"timeout must be at least two byte times ({20 * divisor} "
                             f"cycles), not {timeout!r}")
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 14:
            raise ValueError(f"addr_width must be between 1 and 14, not {addr_width!r}")
        self.divisor = divisor
        self.timeout = timeout
        self.addr_width = addr_width
        self.fifo_depth = fifo_depth
        super().__init__({
            "i_rx": In(1, init=1), "o_tx": Out(1, init=1),
            "bus": Out(wishbone_signature(addr_width)),
            "o_overrun": Out(1), "o_frame_error": Out(1), "o_active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(self.divisor)
        m.submodules.tx = tx = UartTx(self.divisor)
        m.submodules.rx_fifo = rxf = fifo.SyncFIFO(width=8, depth=self.fifo_depth)
        m.d.comb += [
            rx.i_rx.eq(self.i_rx), self.o_tx.eq(tx.o_tx),
            self.o_overrun.eq(rx.o_overrun), self.o_frame_error.eq(rx.o_frame_error),
            rxf.w_data.eq(rx.o_data.payload), rxf.w_en.eq(rx.o_data.valid),
            rx.o_data.ready.eq(rxf.w_rdy),
        ]

        op = Signal(8)
        addr = Signal(16)
        count = Signal(16)
        buf = Signal(32)          # bytes shifted in from the top: a little-endian word
        need = Signal(range(5))   # bytes still to collect
        phase = Signal(2)         # what is being collected: 0 address, 1 burst count, 2 data
        tx_buf = Signal(32)
        tx_left = Signal(range(5))
        idle_cycles = Signal(range(self.timeout + 1))
        byte = rxf.r_data
        is_write = (op == BridgeOp.WRITE) | (op == BridgeOp.WRITE_BURST)
        is_burst = (op == BridgeOp.WRITE_BURST) | (op == BridgeOp.READ_BURST)

        bus = self.bus
        m.d.comb += [bus.adr.eq(addr[2:2 + self.addr_width]), bus.dat_w.eq(buf),
                     bus.sel.eq(0xF), bus.we.eq(is_write)]

        def reply(m, value, n):
            m.d.sync += [tx_buf.eq(value), tx_left.eq(n)]
            m.next = "send"

        with m.FSM():
            with m.State("idle"):
                m.d.comb += rxf.r_en.eq(1)
                with m.If(rxf.r_rdy):
                    m.d.sync += [op.eq(byte), need.eq(2), phase.eq(0), idle_cycles.eq(0)]
                    with m.If((byte >= BridgeOp.WRITE) & (byte <= BridgeOp.READ_BURST)):
                        m.next = "collect"
            with m.State("collect"):
                m.d.comb += [rxf.r_en.eq(1), self.o_active.eq(1)]
                with m.If(rxf.r_rdy):
                    m.d.sync += [buf.eq((buf >> 8) | (byte << 24)), need.eq(need - 1),
                                 idle_cycles.eq(0)]
                    with m.If(need == 1):
                        m.next = "collected"
                with m.Elif(idle_cycles == self.timeout):
                    m.next = "idle"
                with m.Else():
                    m.d.sync += idle_cycles.eq(idle_cycles + 1)
            with m.State("collected"):
                m.d.comb += self.o_active.eq(1)
                with m.Switch(phase):
                    with m.Case(0):       # the address
                        m.d.sync += addr.eq(buf[16:])
                        with m.If(is_burst):
                            m.d.sync += [need.eq(2), phase.eq(1)]
                            m.next = "collect"
                        with m.Elif(is_write):
                            m.d.sync += [need.eq(4), phase.eq(2)]
                            m.next = "collect"
                        with m.Else():
                            m.next = "bus"
                    with m.Case(1):       # the burst count
                        m.d.sync += count.eq(buf[16:])
                        with m.If(buf[16:] == 0):
                            with m.If(is_write):
                                reply(m, op, 1)
                            with m.Else():
                                m.next = "idle"
                        with m.Elif(is_write):
                            m.d.sync += [need.eq(4), phase.eq(2)]
                            m.next = "collect"
                        with m.Else():
                            m.next = "bus"
                    with m.Default():     # a data word
                        m.next = "bus"
            with m.State("bus"):
                m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1), self.o_active.eq(1)]
                with m.If(bus.ack):
                    m.d.sync += count.eq(count - 1)
                    with m.If(~is_write):
                        reply(m, bus.dat_r, 4)
                    with m.Elif(~is_burst | (count == 1)):
                        reply(m, op, 1)
                    with m.Else():
                        m.d.sync += need.eq(4)
                        m.next = "collect"
            with m.State("send"):
                m.d.comb += [tx.i_data.valid.eq(1), tx.i_data.payload.eq(tx_buf[:8]),
                             self.o_active.eq(1)]
                with m.If(tx.i_data.ready):
                    m.d.sync += [tx_buf.eq(tx_buf >> 8), tx_left.eq(tx_left - 1)]
                    with m.If(tx_left == 1):
                        with m.If(~is_write & is_burst & (count != 0)):
                            m.next = "bus"
                        with m.Else():
                            m.next = "idle"
        return m
