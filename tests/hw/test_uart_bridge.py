"""UART receiver/transmitter and the UART-to-Wishbone bridge under Amaranth's simulator, driven
by the host code of sw/board.py through its simulated serial transport."""

import random

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from llmaccel.hw.board_top import ecp5_pll_params, uart_divisor
from llmaccel.hw.uart_bridge import BridgeOp, UartBridge
from llmaccel.hw.uart_rx import UartRx
from llmaccel.hw.uart_tx import UartTx
from llmaccel.hw.wishbone import wishbone_signature
from llmaccel.sim.testing import stream_get, stream_put
from llmaccel.sw.board import BoardError, BridgeClient, SimTransport

DIV = 6
WINDOW = 0x48      # the stub's auto-incrementing data register (like Reg.MEM_DATA)
WINDOW_ADDR = 0x44


class WishboneStub(wiring.Component):
    """A Wishbone classic slave: 64 plain registers, plus a memory window (``WINDOW_ADDR``
    holds the address, every access to ``WINDOW`` reads or writes ``mem[addr]`` and advances
    it) over a 256-word memory. Acknowledges after ``wait`` cycles, like a slow slave."""

    def __init__(self, wait: int = 1):
        self.wait = wait
        self.regs = memory.MemoryData(shape=32, depth=64, init=[])
        self.mem = memory.MemoryData(shape=32, depth=256, init=[])
        super().__init__({"bus": In(wishbone_signature())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = memory.Memory(data=self.regs)
        m.submodules.mem = mem = memory.Memory(data=self.mem)
        rr, rw = regs.read_port(domain="comb"), regs.write_port()
        mr, mw = mem.read_port(domain="comb"), mem.write_port()
        b = self.bus
        ptr = Signal(8)
        cnt = Signal(range(self.wait + 1))
        win = b.adr == WINDOW // 4
        m.d.comb += [rr.addr.eq(b.adr), rw.addr.eq(b.adr), rw.data.eq(b.dat_w),
                     mr.addr.eq(ptr), mw.addr.eq(ptr), mw.data.eq(b.dat_w)]
        go = b.cyc & b.stb & ~b.ack & (cnt == self.wait)
        with m.If(b.cyc & b.stb & ~b.ack & (cnt != self.wait)):
            m.d.sync += cnt.eq(cnt + 1)
        m.d.sync += b.ack.eq(go)
        with m.If(go):
            m.d.sync += [cnt.eq(0), b.dat_r.eq(rr.data)]
            with m.If(win):
                m.d.sync += [b.dat_r.eq(mr.data), ptr.eq(ptr + 1)]
                m.d.comb += mw.en.eq(b.we)
            with m.Elif(b.we & (b.adr == WINDOW_ADDR // 4)):
                m.d.sync += ptr.eq(b.dat_w)
            with m.Elif(b.we):
                m.d.comb += rw.en.eq(1)
        return m


class Harness(wiring.Component):
    def __init__(self, wait: int = 1):
        self.stub = WishboneStub(wait)
        self.bridge = UartBridge(DIV, timeout=40 * DIV)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.stub, m.submodules.bridge = self.stub, self.bridge
        wiring.connect(m, self.bridge.bus, self.stub.bus)
        m.d.comb += [self.bridge.i_rx.eq(self.uart_rx), self.uart_tx.eq(self.bridge.o_tx)]
        return m


@pytest.mark.parametrize("wait", [1, 5])
def test_register_and_memory_round_trip(seed, wait):
    rng = random.Random(seed)
    h = Harness(wait)
    t = SimTransport(h, DIV)
    bus = BridgeClient(t)
    regs = {4 * rng.randrange(0, 16): rng.getrandbits(32) for _ in range(6)}
    for a, v in regs.items():
        bus.write(a, v)
    for a, v in regs.items():
        assert bus.read(a) == v
    words = np.array([rng.getrandbits(32) for _ in range(37)], dtype=np.uint32)
    bus.write(WINDOW_ADDR, 10)
    bus.write_burst(WINDOW, words)
    bus.write_burst(WINDOW, words[:0])          # an empty burst is acknowledged too
    bus.write(WINDOW_ADDR, 9)
    got = bus.read_burst(WINDOW, 39)
    np.testing.assert_array_equal(got[1:38], words)
    assert got[0] == 0 and got[38] == 0         # guard words around the burst stay zero


def test_garbage_between_frames_and_abandoned_frame_are_ignored():
    h = Harness()
    t = SimTransport(h, DIV)
    bus = BridgeClient(t)
    bus.write(8, 0x12345678)
    t.write(bytes([0x00, 0xFF, 0x7E]))          # not opcodes: ignored
    t.write(bytes([BridgeOp.WRITE, 8, 0, 1]))   # stops part-way: abandoned after the timeout
    t.advance(20 * 10 * DIV + 40 * DIV)
    assert bus.read(8) == 0x12345678
    bus.write(8, 0xCAFEF00D)
    assert bus.read(8) == 0xCAFEF00D


def test_missing_reply_raises():
    h = Harness()
    t = SimTransport(h, DIV, max_cycles=2000)
    t.write(bytes([0x00]))
    with pytest.raises(BoardError, match="expected bytes"):
        t.read(1)


@pytest.mark.parametrize("stall", [0.0, 0.5])
def test_uart_tx_to_rx_loopback(seed, stall):
    rng = random.Random(seed)
    data = [rng.getrandbits(8) for _ in range(12)]

    class Loop(wiring.Component):
        def __init__(self):
            self.tx, self.rx = UartTx(DIV), UartRx(DIV)
            super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

        def elaborate(self, platform):
            m = Module()
            m.submodules.tx, m.submodules.rx = self.tx, self.rx
            wiring.connect(m, wiring.flipped(self.i), self.tx.i_data)
            wiring.connect(m, self.rx.o_data, wiring.flipped(self.o))
            m.d.comb += self.rx.i_rx.eq(self.tx.o_tx)
            return m

    dut = Loop()
    got = []

    async def producer(ctx):
        for b in data:
            await stream_put(ctx, dut.i, b, rng=rng, stall=stall)

    async def consumer(ctx):
        for _ in data:
            # The consumer may pause, but for less than a frame: a UART cannot be stopped.
            got.append(await stream_get(ctx, dut.o, rng=rng, stall=stall))
        assert not ctx.get(dut.rx.o_overrun) and not ctx.get(dut.rx.o_frame_error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == data


def test_rx_flags_overrun_and_framing_error():
    dut = UartRx(DIV)

    async def bench(ctx):
        async def send(byte, stop=1):
            for bit in [0, *((byte >> i) & 1 for i in range(8)), stop]:
                ctx.set(dut.i_rx, bit)
                await ctx.tick().repeat(DIV)
            ctx.set(dut.i_rx, 1)
            await ctx.tick().repeat(2 * DIV)

        await send(0x5A)
        assert ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.payload) == 0x5A
        await send(0x33)                      # nobody took 0x5A: 0x33 is dropped
        assert ctx.get(dut.o_overrun) and ctx.get(dut.o_data.payload) == 0x5A
        await send(0x0F, stop=0)
        assert ctx.get(dut.o_frame_error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_baud_divisor_and_pll_settings():
    assert uart_divisor(25_000_000, 1_000_000) == 25
    assert uart_divisor(100_000_000, 115_200) == 868
    with pytest.raises(ValueError, match="off"):
        uart_divisor(25_000_000, 3_000_000)     # 8.33 cycles per bit: 4 % off
    with pytest.raises(ValueError, match="too fast"):
        uart_divisor(10_000_000, 5_000_000)
    p = ecp5_pll_params(25_000_000, 100_000_000)
    assert 25e6 / p["CLKI_DIV"] * p["CLKFB_DIV"] == 100e6
    assert 400e6 <= 100e6 * p["CLKOP_DIV"] <= 800e6
    with pytest.raises(ValueError, match=r"exactly 99\.999999 MHz .* 75, 87\.5, 100, 112\.5 MHz"):
        ecp5_pll_params(25_000_000, 99_999_999)
