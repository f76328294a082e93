"""A stand-in for the accelerator top level: the host interface without the machine.

:class:`StandinTop` has the same ports as ``hw/accelerator.Accelerator`` — a Wishbone classic
(B4) slave implementing the register map of :mod:`llmaccel.hw.regs`, ``o_done`` and ``o_irq`` —
over three plain memories (DRAM, SP, ACC). It lets the simulation backends' plumbing (bus
transfers, bulk loads through the memory window, the run loop, counters, waveforms) be built and
tested in seconds, independently of the real machine.

A "program" here is one word: START reads the DRAM word at ``PROG_BASE``. A value ``n`` below
``0xFFFF0000`` runs for about ``n`` cycles, writes its cycle count to the DRAM word at
``PROG_BASE + 4`` and stops with status DONE; ``0xFFFF0000 | code`` stops at once with status
ERROR, error ``code`` and ``ERROR_PC = PROG_BASE``. The ``cycles`` counter counts running cycles
and ``retired_ctrl`` counts runs; a non-zero ``WATCHDOG`` ends a run that reaches it with
``ErrorCode.WATCHDOG``. While a run is RUNNING the DRAM window is closed, as the
accelerator's is (docs/host.md): reads return zero and writes are dropped.
"""

import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import ErrorCode
from llmaccel.hw.regs import (
    COUNTERS,
    ID_VALUE,
    HostMem,
    Reg,
    Status,
    config_word,
    counter_offset,
)

__all__ = ["StandinTop", "wishbone_signature"]

#: Word-address bits of the register file (the counters end below 0x200).
ADDR_BITS = 7


def wishbone_signature(addr_width: int = ADDR_BITS) -> wiring.Signature:
    """Wishbone classic B4 with 32-bit data, seen from the master."""
    return wiring.Signature({
        "adr": Out(addr_width), "dat_w": Out(32), "dat_r": In(32), "sel": Out(4),
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "ack": In(1),
    })


class StandinTop(wiring.Component):
    """Register file, memory window and a pretend run (see the module docstring).

    Parameters
    ----------
    cfg : AccelConfig
        Memory sizes and the CONFIG register.
    image : bytes, optional
        Initial DRAM contents from address 0.

    Ports
    -----
    bus : In(wishbone_signature())
        The host bus (slave side). ``ack`` is registered: one access per two cycles.
    o_done : Out(1)
        High while STATUS is DONE or ERROR.
    o_irq : Out(1)
        High for one cycle when a run ends.
    """

    def __init__(self, cfg: AccelConfig, image: bytes | None = None):
        self.cfg = cfg
        init = np.zeros(cfg.dram_bytes, np.uint8)
        if image is not None:
            img = np.frombuffer(bytes(image), np.uint8)
            init[:img.size] = img
        self._dram_init = [int(w) for w in init.view("<u4")]
        super().__init__({"bus": In(wishbone_signature()), "o_done": Out(1),
                          "o_irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        bus = self.bus
        m.submodules.dram = dram = memory.Memory(shape=32, depth=cfg.dram_bytes // 4,
                                                 init=self._dram_init)
        m.submodules.sp = sp = memory.Memory(shape=32, depth=cfg.sp_bytes // 4, init=[])
        m.submodules.acc = acc = memory.Memory(shape=32, depth=cfg.acc_elems, init=[])
        mems = (dram, sp, acc)
        rports = [mem.read_port(transparent_for=()) for mem in mems]
        wports = [mem.write_port() for mem in mems]
        run_r = dram.read_port(transparent_for=())
        run_w = dram.write_port()

        status = Signal(2, init=Status.IDLE)
        error = Signal(4)
        error_pc = Signal(32)
        prog_base = Signal(32)
        watchdog = Signal(32)
        mem_sel = Signal(2)
        mem_addr = Signal(32)
        counters = {name: Signal(64, name=f"cnt_{name}") for name in COUNTERS}

        # Bus: decode in the request cycle, answer with a registered ack one cycle later.
        req = bus.cyc & bus.stb & ~bus.ack
        word = bus.adr
        rdata = Signal(32)
        s1_mem_read = Signal()
        s1_sel = Signal(2)
        m.d.sync += bus.ack.eq(req)
        m.d.comb += bus.dat_r.eq(rdata)
        with m.If(s1_mem_read):
            m.d.comb += rdata.eq(Cat(*[p.data for p in rports]).word_select(s1_sel, 32))
        regs = {Reg.ID: ID_VALUE, Reg.STATUS: status, Reg.ERROR: error, Reg.ERROR_PC: error_pc,
                Reg.PROG_BASE: prog_base, Reg.WATCHDOG: watchdog,
                Reg.CONFIG: config_word(cfg),
                Reg.MEM_SEL: mem_sel, Reg.MEM_ADDR: mem_addr}
        s1_value = Signal(32)
        with m.If(~s1_mem_read):
            m.d.comb += rdata.eq(s1_value)
        m.d.sync += s1_mem_read.eq(0)
        # The window address in words of the selected memory.
        win = Signal(32)
        with m.Switch(mem_sel):
            with m.Case(HostMem.DRAM):
                m.d.comb += win.eq(mem_addr >> 2)
            with m.Case(HostMem.SP):
                m.d.comb += win.eq(mem_addr >> 2)
            with m.Default():
                m.d.comb += win.eq(mem_addr)
        # As in hw/wishbone.py, the DRAM window is closed while a run is RUNNING: its reads
        # return zero, its writes are dropped and MEM_ADDR still advances.
        dram_closed = Signal()
        m.d.comb += dram_closed.eq((mem_sel == HostMem.DRAM) & (status == Status.RUNNING))
        for i, (rp, wp) in enumerate(zip(rports, wports, strict=True)):
            access = req & (word == Reg.MEM_DATA >> 2) & (mem_sel == i) & ~dram_closed
            m.d.comb += [rp.addr.eq(win), wp.addr.eq(win), wp.data.eq(bus.dat_w)]
            m.d.comb += [rp.en.eq(access & ~bus.we), wp.en.eq(access & bus.we)]
        step = Signal(32)
        m.d.comb += step.eq(Mux(mem_sel == HostMem.ACC, 1, 4))
        with m.If(req), m.Switch(word):
            for reg, value in regs.items():
                with m.Case(reg >> 2):
                    m.d.sync += s1_value.eq(value)
            for name in COUNTERS:
                with m.Case(counter_offset(name) >> 2):
                    m.d.sync += s1_value.eq(counters[name][:32])
                with m.Case((counter_offset(name) >> 2) + 1):
                    m.d.sync += s1_value.eq(counters[name][32:])
            with m.Case(Reg.MEM_DATA >> 2):
                m.d.sync += [s1_mem_read.eq(~bus.we & ~dram_closed), s1_value.eq(0),
                             s1_sel.eq(mem_sel), mem_addr.eq(mem_addr + step)]
            with m.Default():
                m.d.sync += s1_value.eq(0)

        # The pretend run: fetch the word at PROG_BASE, count, write the count to PROG_BASE + 4.
        start = Signal()
        clear = Signal()
        with m.If(req & bus.we), m.Switch(word):
            with m.Case(Reg.CTRL >> 2):
                m.d.comb += [start.eq(bus.dat_w[0]), clear.eq(bus.dat_w[1])]
            with m.Case(Reg.PROG_BASE >> 2):
                m.d.sync += prog_base.eq(bus.dat_w)
            with m.Case(Reg.WATCHDOG >> 2):
                m.d.sync += watchdog.eq(bus.dat_w)
            with m.Case(Reg.MEM_SEL >> 2):
                m.d.sync += mem_sel.eq(bus.dat_w)
            with m.Case(Reg.MEM_ADDR >> 2):
                m.d.sync += mem_addr.eq(bus.dat_w)
        with m.If(clear):
            m.d.sync += [c.eq(0) for c in counters.values()]
        remaining = Signal(32)
        fetched = Signal(32)
        m.d.comb += [run_r.addr.eq(prog_base >> 2), run_w.addr.eq((prog_base >> 2) + 1),
                     run_w.data.eq(counters["cycles"])]
        with m.FSM():
            with m.State("idle"), m.If(start):
                m.d.comb += run_r.en.eq(1)
                m.d.sync += [status.eq(Status.RUNNING), error.eq(ErrorCode.NONE),
                             counters["cycles"].eq(0)]
                m.next = "fetch"
            with m.State("fetch"):
                m.d.sync += [fetched.eq(run_r.data), remaining.eq(run_r.data),
                             counters["cycles"].eq(counters["cycles"] + 1)]
                m.next = "count"
            with m.State("count"):
                m.d.sync += counters["cycles"].eq(counters["cycles"] + 1)
                with m.If(fetched[16:] == 0xFFFF):
                    m.d.sync += [status.eq(Status.ERROR), error.eq(fetched[:4]),
                                 error_pc.eq(prog_base)]
                    m.d.comb += self.o_irq.eq(1)
                    m.next = "idle"
                with m.Elif((watchdog != 0) & (counters["cycles"] >= watchdog)):
                    m.d.sync += [status.eq(Status.ERROR), error.eq(ErrorCode.WATCHDOG),
                                 error_pc.eq(prog_base)]
                    m.d.comb += self.o_irq.eq(1)
                    m.next = "idle"
                with m.Elif(remaining == 0):
                    m.next = "bump"
                with m.Else():
                    m.d.sync += remaining.eq(remaining - 1)
            with m.State("bump"):
                m.d.comb += [run_w.en.eq(1), self.o_irq.eq(1)]
                m.d.sync += [status.eq(Status.DONE),
                             counters["retired_ctrl"].eq(counters["retired_ctrl"] + 1)]
                m.next = "idle"
        m.d.comb += self.o_done.eq((status == Status.DONE) | (status == Status.ERROR))
        return m
