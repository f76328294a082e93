"""A first-word-fall-through FIFO whose read side comes from registers."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["RegisteredFIFO"]


class RegisteredFIFO(wiring.Component):
    """A synchronous FIFO with the cycle behaviour of ``amaranth.lib.fifo.SyncFIFO`` whose
    ``r_data`` and ``r_rdy`` are registers.

    Why it exists: ``SyncFIFO``'s ``r_data`` is an asynchronous read of its storage at the read
    pointer (LUT RAM on an FPGA), so whatever consumes the head in the same cycle sits behind the
    pointer register, the RAM's address decoder and its output multiplexer. The controller's fetch
    FIFO feeds the instruction checker's first stage, whose decode and products already fill a
    cycle; that chain was the controller's critical path. ``SyncFIFOBuffered`` registers the
    head too, but a word written to it empty becomes readable a cycle later than in
    ``SyncFIFO``, which would change every cycle count the golden model predicts. This FIFO
    keeps ``SyncFIFO``'s timing exactly (tests/hw/test_registered_fifo.py compares the two cycle
    by cycle, resets included).

    The head entry lives in a register (``head_data``, ``head_valid``); the other
    ``depth − 1`` entries live in a memory behind it. A word written while that memory is empty
    and the head is empty or read in the same cycle goes straight into the head register, so it
    is readable the cycle after it is written, as in ``SyncFIFO``; any other word goes into the
    memory, and a read of the head refills it from the memory. Head and memory together hold
    ``depth`` words, and ``w_rdy`` is low when ``depth`` words are held whether or not the head
    is read in the same cycle, as in ``SyncFIFO``, so a write to a full FIFO is refused (not
    lost silently) even when it is read in that cycle.

    Parameters
    ----------
    width : int
        Bits per entry (positive).
    depth : int
        Entries (positive), as ``SyncFIFO``'s ``depth``.

    Ports
    -----
    w_en : In(1)
        Write strobe; ignored while ``w_rdy`` is low.
    w_data : In(width)
        The word written when ``w_en`` and ``w_rdy`` are high.
    w_rdy : Out(1)
        Fewer than ``depth`` entries are held.
    r_en : In(1)
        Read strobe; ignored while ``r_rdy`` is low.
    r_data : Out(width)
        The oldest entry, valid while ``r_rdy`` is high (a register).
    r_rdy : Out(1)
        At least one entry is held (a register).
    level : Out(range(depth + 1))
        Entries held (a register), as ``SyncFIFO``'s ``level``.
    r_after : Out(width)
        The entry behind the head (valid while ``level`` ≥ 2): an asynchronous read of the
        memory, the word a read of the head moves into the head register.
    head_from_mem, head_from_write : Out(1)
        What the head register takes at the next clock edge: ``r_after`` (the head is read
        and the memory holds more), or ``w_data`` (a write that goes straight to the head);
        neither: it keeps its word (or is emptied by the read). With these a consumer can
        evaluate a function of the next head from the three candidates in parallel and
        register the result, so it is ready with the head itself (the controller's wait
        masks); a reset of the FIFO overrides them.
    """

    def __init__(self, *, width: int, depth: int):
        if not isinstance(width, int) or width <= 0:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        self.width = width
        self.depth = depth
        super().__init__({
            "w_en": In(1),
            "w_data": In(width),
            "w_rdy": Out(1),
            "r_en": In(1),
            "r_data": Out(width),
            "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
            "r_after": Out(width),
            "head_from_mem": Out(1),
            "head_from_write": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        head_valid = Signal()
        head_data = Signal(self.width, reset_less=True)
        m.d.comb += [
            self.w_rdy.eq(self.level != depth),
            self.r_rdy.eq(head_valid),
            self.r_data.eq(head_data),
        ]
        do_write = self.w_en & self.w_rdy
        do_read = self.r_en & head_valid
        # The memory holds level − head_valid entries and is only used while the head is
        # occupied, so it is empty exactly when at most one entry is held.
        mem_empty = self.level <= 1
        to_head = do_write & mem_empty & (~head_valid | do_read)
        refill = do_read & ~mem_empty
        m.d.comb += [self.head_from_mem.eq(refill), self.head_from_write.eq(to_head)]

        with m.If(do_write & ~do_read):
            m.d.sync += self.level.eq(self.level + 1)
        with m.Elif(do_read & ~do_write):
            m.d.sync += self.level.eq(self.level - 1)

        if depth > 1:
            n = depth - 1
            m.submodules.storage = storage = Memory(shape=self.width, depth=n, init=[])
            w_port = storage.write_port()
            r_port = storage.read_port(domain="comb")
            to_mem = do_write & ~to_head
            m.d.comb += [w_port.data.eq(self.w_data), w_port.en.eq(to_mem),
                         self.r_after.eq(r_port.data)]
            with m.If(refill):
                m.d.sync += head_data.eq(r_port.data)
            if n > 1:
                # (One entry behind the head needs no pointers: a zero-width register would
                # reach the Verilog as an ascending range, [-1:0].)
                produce = Signal(range(n))
                consume = Signal(range(n))

                def incr(ptr):
                    return ptr + 1 if n == 1 << len(ptr) else Mux(ptr == n - 1, 0, ptr + 1)

                m.d.comb += [w_port.addr.eq(produce), r_port.addr.eq(consume)]
                with m.If(to_mem):
                    m.d.sync += produce.eq(incr(produce))
                with m.If(refill):
                    m.d.sync += consume.eq(incr(consume))

        with m.If(to_head):
            m.d.sync += head_data.eq(self.w_data)
        with m.If(to_head | refill):
            m.d.sync += head_valid.eq(1)
        with m.Elif(do_read):
            m.d.sync += head_valid.eq(0)
        return m
