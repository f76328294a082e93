"""cocotb testbench of the accelerator top level (hw/accelerator.py) through its Wishbone bus.

Driver: :class:`WishboneDriver` (classic B4 single accesses). Monitor: :class:`IrqMonitor`
(``o_irq`` pulses and the ``o_done`` level, cycle-stamped from reset). Model: GoldenMachine for
memory contents and SystemModel for the counters of every run. Scoreboard: the asserts of
:func:`host_interface`. Launched by test_accelerator.py, which builds the Verilog with
:func:`image` as the DRAM contents.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from llmaccel.hw.config import preset
from llmaccel.hw.isa import ErrorCode
from llmaccel.hw.regs import COUNTERS, ID_VALUE, HostMem, Reg, Status, counter_offset
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.system_model import SystemModel
from llmaccel.sw.asm import assemble, to_binary

CFG = preset("tiny")
# Programs and data away from bank 0: under Icarus the DRAM channel's head multiplexers stay X
# when the first request after reset goes to bank 0 (reported to the channel's owner).
GOOD = 0x400
BAD = 0x1400
SEED = int(os.environ.get("LLMACCEL_ACCEL_SEED", "1"))


def image() -> bytes:
    """Two programs: one that computes and stores, one that fails at its second word."""
    good = assemble("\n".join([
        "vadd dst=sp:64:4 src1=sp:0:4 src2=imm imm=5 rows=2",
        "dma_store space=sp dram_addr=0x2400 sram_addr=64 rows=1 len=8 wait=vec",
        "halt"]))
    img = bytearray(0x3000)
    img[GOOD:GOOD + 96] = to_binary(good)
    img[BAD:BAD + 32] = to_binary(good[:1])
    img[BAD + 32] = 0x3F                       # an illegal opcode
    return bytes(img)


class WishboneDriver:
    """Single reads and writes; counts cycles since reset (cycle 0 = the first after it)."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0

    async def tick(self):
        await RisingEdge(self.dut.clk)
        self.cycle += 1

    async def access(self, addr, we, value=0, sel=0xF):
        d = self.dut
        d.bus__adr.value = addr >> 2
        d.bus__we.value = we
        d.bus__dat_w.value = value
        d.bus__sel.value = sel
        d.bus__cyc.value = 1
        d.bus__stb.value = 1
        start = self.cycle
        while True:
            await self.tick()
            await ReadOnly()
            if int(d.bus__ack.value):
                data = int(d.bus__dat_r.value)
                break
        await RisingEdge(d.clk)              # the acknowledged cycle ends; idle one cycle
        self.cycle += 1
        d.bus__cyc.value = 0
        d.bus__stb.value = 0
        d.bus__we.value = 0
        return start, data

    async def write(self, addr, value, sel=0xF):
        return (await self.access(addr, 1, value, sel))[0]

    async def read(self, addr):
        return (await self.access(addr, 0))[1]

    async def read64(self, name):
        return await self.read(counter_offset(name)) | \
            await self.read(counter_offset(name) + 4) << 32

    async def mem(self, sel, addr, words=None, n=0):
        await self.write(Reg.MEM_SEL, sel)
        await self.write(Reg.MEM_ADDR, addr)
        if words is not None:
            for w in words:
                await self.write(Reg.MEM_DATA, w)
            return None
        return [await self.read(Reg.MEM_DATA) for _ in range(n)]


class IrqMonitor:
    def __init__(self, dut):
        self.dut = dut
        self.pulses = 0

    async def run(self):
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            self.pulses += int(self.dut.o_irq.value)


async def run_program(wb, base, limit=5000):
    await wb.write(Reg.PROG_BASE, base)
    start = await wb.write(Reg.CTRL, 3)              # clear the counters and start
    while await wb.read(Reg.STATUS) == Status.RUNNING:
        assert wb.cycle - start < limit, "the run did not end"
    return start


@cocotb.test()
async def host_interface(dut):
    """Every register, the memory window in all three memories, START/STATUS/ERROR, counters
    (exactly the system model's), CLEAR_COUNTERS."""
    cocotb.log.info(f"seed={SEED}")
    rng = random.Random(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.bus__cyc.value = 0
    dut.bus__stb.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    wb = WishboneDriver(dut)
    mon = IrqMonitor(dut)
    cocotb.start_soon(mon.run())

    W = CFG.row_width
    cocotb.log.info("registers")
    assert await wb.read(Reg.ID) == ID_VALUE
    assert await wb.read(Reg.CONFIG) == (CFG.array_rows | CFG.array_cols << 8
                                         | CFG.dram_banks << 16 | W << 24)
    assert await wb.read(Reg.STATUS) == Status.IDLE
    assert await wb.read(0x3FC) == 0
    for reg in (Reg.PROG_BASE, Reg.WATCHDOG, Reg.MEM_ADDR):
        await wb.write(reg, 0x11223344)
        await wb.write(reg, 0xAABBCCDD, sel=0b0101)
        assert await wb.read(reg) == 0x11BB33DD
    cocotb.log.info(f"memory window (cycle {wb.cycle})")
    for sel, addr in ((HostMem.DRAM, 0x2804), (HostMem.SP, 200), (HostMem.ACC, 77)):
        words = [rng.getrandbits(32) for _ in range(5)]
        await wb.mem(sel, addr, words)
        assert await wb.read(Reg.MEM_ADDR) == addr + (1 if sel == HostMem.ACC else 4) * 5
        assert await wb.mem(sel, addr, n=5) == words, sel
    img = image()
    assert await wb.mem(HostMem.DRAM, GOOD, n=3) == [
        int.from_bytes(img[i:i + 4], "little") for i in (GOOD, GOOD + 4, GOOD + 8)]

    cocotb.log.info(f"a program (cycle {wb.cycle})")
    sp = np.zeros(CFG.sp_bytes, np.int8)
    sp[:8] = np.arange(1, 9)
    await wb.mem(HostMem.SP, 0, [int.from_bytes(sp[i:i + 4].tobytes(), "little")
                                 for i in (0, 4)])
    g = GoldenMachine(CFG)
    g.load_dram(0, img)
    g.sp[:] = sp
    res = g.run(GOOD, trace=True)
    start = await run_program(wb, GOOD)
    assert await wb.read(Reg.STATUS) == Status.DONE
    assert (await wb.read(Reg.ERROR), await wb.read(Reg.ERROR_PC)) == (0, 0)
    assert int(dut.o_done.value) == 1 and mon.pulses == 1
    got = await wb.mem(HostMem.DRAM, 0x2400, n=2)
    assert got == [int.from_bytes(g.dram[0x2400 + i:0x2404 + i].tobytes(), "little")
                   for i in (0, 4)]
    rep = SystemModel(CFG).run(res, start_cycle=start, base=GOOD, program=img)
    for name in COUNTERS:
        assert await wb.read64(name) == rep.counters[name], name
    cocotb.log.info(f"clear and a failing program (cycle {wb.cycle})")
    await wb.write(Reg.CTRL, 2)
    for name in COUNTERS:
        assert await wb.read64(name) == 0, name
    # A failing program.
    await run_program(wb, BAD)
    assert await wb.read(Reg.STATUS) == Status.ERROR
    assert await wb.read(Reg.ERROR) == ErrorCode.ILLEGAL_OPCODE.value
    assert await wb.read(Reg.ERROR_PC) == BAD + 32
    assert await wb.read64("retired_vec") == 1
    assert mon.pulses == 2
