"""Host side of the FPGA board: the serial protocol of ``hw/uart_bridge.py`` over any byte
transport, and a :class:`~llmaccel.sim.backends.Backend` on top of it.

The layers are independent of where the bytes go:

* a **transport** moves bytes: :class:`SerialTransport` (a serial port through plain file I/O
  and ``termios``, no pyserial) or :class:`SimTransport` (the board top in Amaranth's simulator,
  its UART pins driven and sampled bit by bit);
* :class:`BridgeClient` speaks the frame protocol (register read/write, burst writes and reads
  of the memory window);
* :class:`BoardBackend` is the accelerator behind it, with the same host operations as the RTL
  simulation backends (load DRAM, run a program, read counters), so
  :class:`~llmaccel.sw.driver.Generator` runs text generation on a board unchanged.

``llmaccel board --port /dev/ttyUSB0 --prompt TEXT`` uses all three.
"""

from __future__ import annotations

import os
import select
import time
from collections import deque
from typing import Protocol

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.regs import HostMem, Reg, Status, config_word
from llmaccel.hw.uart_bridge import BridgeOp
from llmaccel.sim.backends.rtl import CTRL_START, RtlBackend

__all__ = [
    "MAX_BURST",
    "BoardBackend",
    "BoardError",
    "BridgeClient",
    "SerialTransport",
    "SimTransport",
    "Transport",
]

#: Words per burst frame (the count field is 16 bits).
MAX_BURST = 0xFFFF


class BoardError(LlmaccelError):
    """The board did not answer as the protocol says (no reply, wrong acknowledge)."""


class Transport(Protocol):
    """A byte pipe to the bridge."""

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""

    def read(self, n: int) -> bytes:
        """Receive exactly ``n`` bytes or raise :class:`BoardError` on timeout."""

    def close(self) -> None:
        """Release the transport."""


class SerialTransport:
    """A serial port as raw 8N1 without flow control, through ``os`` and ``termios``.

    Parameters
    ----------
    port : str
        Device path (``/dev/ttyUSB0``; the ULX3S's FT231X usually appears there).
    baud : int
        One of the standard rates ``termios`` knows (115200 … 3000000).
    timeout : float
        Seconds a read may wait for the next byte.
    """

    def __init__(self, port: str, baud: int, *, timeout: float = 2.0):
        import termios  # noqa: PLC0415 (POSIX only; the simulated transport needs none)

        speed = getattr(termios, f"B{baud}", None)
        if speed is None:
            raise BoardError(f"baud {baud} is not a standard serial rate on this system")
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise BoardError(f"cannot open serial port {port}: {e.strerror}") from None
        self.timeout = timeout
        try:
            attrs = termios.tcgetattr(self.fd)
        except termios.error as e:
            os.close(self.fd)
            raise BoardError(f"{port} is not a serial port ({e})") from None
        iflag, oflag, cflag, lflag, _ispeed, _ospeed, cc = attrs
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                   | termios.IXOFF | termios.IXANY)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                   | termios.IEXTEN)
        cflag &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB
                   | getattr(termios, "CRTSCTS", 0))
        cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
        cc[termios.VMIN] = 0
        cc[termios.VTIME] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW,
                          [iflag, oflag, cflag, lflag, speed, speed, cc])
        termios.tcflush(self.fd, termios.TCIOFLUSH)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            ready, _, _ = select.select([self.fd], [], [], self.timeout)
            if not ready:
                raise BoardError(f"the board sent {len(out)} of {n} expected bytes within "
                                 f"{self.timeout} s; check the port, the baud rate and that "
                                 f"the bitstream is loaded")
            out += os.read(self.fd, n - len(out))
        return bytes(out)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SimTransport:
    """The serial line of a design in Amaranth's simulator.

    ``dut`` has a ``uart_rx`` input and a ``uart_tx`` output (:class:`~llmaccel.hw.board_top.
    BoardTop`, or any harness with those ports) and runs ``divisor`` clock cycles per bit.
    Bytes written are sent on ``uart_rx`` by a background testbench; bytes the design sends
    on ``uart_tx`` are sampled in the middle of each bit. :meth:`read` advances simulated time
    until the bytes have arrived, so the host code runs unchanged against the simulation.

    Parameters
    ----------
    dut : wiring.Component
    divisor : int
        Clock cycles per bit of the design's UART.
    max_cycles : int
        Cycles a single :meth:`read` may simulate before it raises :class:`BoardError`.
    start_cycles : int
        Cycles simulated before the line is used (a board top's power-on reset; like a host
        that opens the port after the bitstream has started).
    """

    def __init__(self, dut, divisor: int, *, max_cycles: int = 2_000_000,
                 start_cycles: int = 0):
        from amaranth.sim import Simulator  # noqa: PLC0415

        self.dut = dut
        self.divisor = divisor
        self.max_cycles = max_cycles
        self._to_dut: deque[int] = deque()
        self._from_dut: deque[int] = deque()
        self.period = 1e-8
        self.cycles = 0
        self.sim = Simulator(dut)
        if hasattr(dut, "clk_in"):
            # A board top makes its clock domain from its clock pin: toggle the pin.
            self.sim.add_process(self._clock)
        else:
            self.sim.add_clock(self.period)
        self.sim.add_testbench(self._drive, background=True)
        self.sim.add_testbench(self._sample, background=True)
        if start_cycles:
            self.advance(start_cycles)

    async def _clock(self, ctx):
        half = self.period / 2
        while True:
            ctx.set(self.dut.clk_in, 1)
            await ctx.delay(half)
            ctx.set(self.dut.clk_in, 0)
            await ctx.delay(half)

    async def _drive(self, ctx):
        # Timed by delays rather than clock ticks: one wake-up per bit keeps the simulation
        # fast, and a board top's line keeps its timing while the design is in reset.
        bit_time = self.divisor * self.period
        ctx.set(self.dut.uart_rx, 1)
        while True:
            if not self._to_dut:
                await ctx.delay(bit_time)
                continue
            byte = self._to_dut.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(self.dut.uart_rx, bit)
                await ctx.delay(bit_time)

    async def _sample(self, ctx):
        bit_time = self.divisor * self.period
        while True:
            await ctx.negedge(self.dut.uart_tx)
            await ctx.delay(bit_time / 2)
            byte = 0
            for i in range(8):
                await ctx.delay(bit_time)
                byte |= ctx.get(self.dut.uart_tx) << i
            await ctx.delay(bit_time)
            self._from_dut.append(byte)

    def advance(self, cycles: int) -> None:
        """Simulate ``cycles`` more clock cycles."""
        self.cycles += cycles
        self.sim.run_until(self.cycles * self.period)

    def write(self, data: bytes) -> None:
        self._to_dut.extend(data)

    def read(self, n: int) -> bytes:
        start = self.cycles
        # Enough cycles for what is queued to go out and n bytes to come back, in steps.
        step = 10 * self.divisor * 4
        while len(self._from_dut) < n:
            if self.cycles - start > self.max_cycles:
                raise BoardError(f"the simulated board sent {len(self._from_dut)} of {n} "
                                 f"expected bytes within {self.max_cycles} cycles")
            self.advance(step)
        return bytes(self._from_dut.popleft() for _ in range(n))

    def close(self) -> None:
        pass


class BridgeClient:
    """The frame protocol of :mod:`llmaccel.hw.uart_bridge` over a :class:`Transport`."""

    def __init__(self, transport: Transport):
        self.t = transport

    @staticmethod
    def _addr(offset: int) -> bytes:
        if not 0 <= offset < 1 << 16 or offset % 4:
            raise ValueError(f"register offset must be a word address below 64 KiB, not "
                             f"{offset!r}")
        return offset.to_bytes(2, "little")

    def _ack(self, op: BridgeOp) -> None:
        got = self.t.read(1)
        if got != bytes([op]):
            raise BoardError(f"the board acknowledged {op.name} with {got.hex()}, not "
                             f"{int(op):02x}")

    def write(self, offset: int, value: int) -> None:
        self.t.write(bytes([BridgeOp.WRITE]) + self._addr(offset)
                     + (value & 0xFFFFFFFF).to_bytes(4, "little"))
        self._ack(BridgeOp.WRITE)

    def read(self, offset: int) -> int:
        self.t.write(bytes([BridgeOp.READ]) + self._addr(offset))
        return int.from_bytes(self.t.read(4), "little")

    def write_burst(self, offset: int, words: np.ndarray) -> None:
        """Write every word to register ``offset`` in turn (the memory window advances)."""
        w = np.ascontiguousarray(words, dtype="<u4")
        for i in range(0, max(w.size, 1), MAX_BURST):
            part = w[i:i + MAX_BURST]
            self.t.write(bytes([BridgeOp.WRITE_BURST]) + self._addr(offset)
                         + part.size.to_bytes(2, "little") + part.tobytes())
            self._ack(BridgeOp.WRITE_BURST)

    def read_burst(self, offset: int, n: int) -> np.ndarray:
        out = []
        for i in range(0, n, MAX_BURST):
            k = min(MAX_BURST, n - i)
            self.t.write(bytes([BridgeOp.READ_BURST]) + self._addr(offset)
                         + k.to_bytes(2, "little"))
            out.append(np.frombuffer(self.t.read(4 * k), dtype="<u4"))
        return np.concatenate(out).astype(np.uint32) if out else np.zeros(0, np.uint32)


class BoardBackend(RtlBackend):
    """The accelerator on a board (or a simulated one) behind a :class:`BridgeClient`.

    Parameters
    ----------
    cfg : AccelConfig
        The config the bitstream was built for (checked against the CONFIG register).
    transport : Transport
    clock_hz : float
        Core clock, to turn the cycle limit of a run into a wall-clock limit (real boards).
    poll : callable, optional
        Called between STATUS polls of a run (the simulated transport advances time there).
    """

    name = "board"

    def __init__(self, cfg: AccelConfig, transport: Transport, *, clock_hz: float = 25e6,
                 poll=None, max_cycles: int | None = None):
        kw = {"max_cycles": max_cycles} if max_cycles else {}
        super().__init__(cfg, **kw)
        self.bus = BridgeClient(transport)
        self.transport = transport
        self.clock_hz = clock_hz
        self._poll = poll
        self._cycles = 0
        self.identify()
        want = config_word(cfg)
        got = self.reg_read(Reg.CONFIG)
        if got != want:
            raise BoardError(f"the board's CONFIG register reads {got:#010x}, but config "
                             f"{cfg.name!r} is {want:#010x}: the bitstream was built for "
                             f"another config")

    def reg_read(self, offset: int) -> int:
        return self.bus.read(int(offset))

    def reg_write(self, offset: int, value: int) -> None:
        self.bus.write(int(offset), int(value))

    def _mem_write_runs(self, sel: HostMem, addrs, lens, words) -> None:
        self.reg_write(Reg.MEM_SEL, sel)
        pos = 0
        for a, n in zip(addrs.tolist(), lens.tolist(), strict=True):
            self.reg_write(Reg.MEM_ADDR, a)
            self.bus.write_burst(Reg.MEM_DATA, words[pos:pos + n])
            pos += n

    def _mem_read(self, sel: HostMem, addr: int, n: int) -> np.ndarray:
        self.reg_write(Reg.MEM_SEL, sel)
        self.reg_write(Reg.MEM_ADDR, addr)
        return self.bus.read_burst(Reg.MEM_DATA, n)

    def _start_and_wait(self, limit: int) -> int:
        self.reg_write(Reg.CTRL, CTRL_START)
        deadline = time.monotonic() + 2.0 + limit / self.clock_hz
        while True:
            status = self.reg_read(Reg.STATUS)
            if status != Status.RUNNING:
                break
            if self._poll is not None:
                self._poll()
            elif time.monotonic() > deadline:
                return -1
        self._cycles += self.reg_read(Reg.COUNTER_BASE)
        return status

    @property
    def ticks(self) -> int:
        return self._cycles

    def idle(self, cycles: int) -> None:
        raise BoardError("a board cannot wait for a DRAM refresh phase: its host does not see "
                         "the core's clock (leave refresh_phase unset)")

    def close(self) -> None:
        self.transport.close()
