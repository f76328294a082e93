"""The host register block's bus timing (hw/wishbone.py): a register access is acknowledged in
the cycle after it is seen, a MEM_DATA access a cycle later, performed from registers in
between; CTRL's START and CLEAR reach the controller CTRL_LATENCY cycles after the write
(docs/host.md)."""

from amaranth.sim import Simulator

from llmaccel.hw.config import preset
from llmaccel.hw.regs import ID_VALUE, HostMem, Reg
from llmaccel.hw.wishbone import CTRL_LATENCY, Wishbone

CFG = preset("tiny")


def test_register_access_takes_two_cycles_and_memory_access_three():
    dut = Wishbone(CFG)
    seen = {}

    async def bench(ctx):
        bus = dut.bus

        async def access(reg, *, write=None):
            """One access; returns (cycles until ack, dat_r, per-cycle memory strobes)."""
            ctx.set(bus.adr, reg >> 2)
            ctx.set(bus.we, write is not None)
            ctx.set(bus.dat_w, write or 0)
            ctx.set(bus.sel, 0xF)
            ctx.set(bus.cyc, 1)
            ctx.set(bus.stb, 1)
            strobes = []
            for n in range(1, 6):
                strobes.append((ctx.get(dut.sp_wr.en) != 0, ctx.get(dut.dram.re),
                                ctx.get(dut.o_start), ctx.get(dut.o_clear)))
                await ctx.tick()
                if ctx.get(bus.ack):
                    data = ctx.get(bus.dat_r)
                    seen["ctrl_at_ack"] = (ctx.get(dut.o_start), ctx.get(dut.o_clear))
                    ctx.set(bus.cyc, 0)
                    ctx.set(bus.stb, 0)
                    await ctx.tick()
                    return n, data, strobes
            raise AssertionError("no ack")

        seen["id"] = await access(Reg.ID)
        await access(Reg.MEM_SEL, write=HostMem.SP)
        await access(Reg.MEM_ADDR, write=0)
        seen["sp_write"] = await access(Reg.MEM_DATA, write=0x04030201)
        await access(Reg.MEM_SEL, write=HostMem.DRAM)
        await access(Reg.MEM_ADDR, write=0x40)
        seen["dram_read"] = await access(Reg.MEM_DATA)
        seen["addr"] = await access(Reg.MEM_ADDR)
        seen["start"] = await access(Reg.CTRL, write=1)
        seen["start_at_ack"] = seen["ctrl_at_ack"]
        seen["after_start"] = (ctx.get(dut.o_start), ctx.get(dut.o_clear))
        await access(Reg.CTRL, write=2)
        seen["clear_at_ack"] = seen["ctrl_at_ack"]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    n, data, _ = seen["id"]
    assert (n, data) == (1, ID_VALUE)
    # MEM_DATA: seen in cycle 0, performed in cycle 1 (the write enable, the read strobe),
    # acknowledged in cycle 2.
    n, _, strobes = seen["sp_write"]
    assert n == 2 and [s[0] for s in strobes] == [False, True]
    n, _, strobes = seen["dram_read"]
    assert n == 2 and [s[1] for s in strobes] == [0, 1]
    assert seen["addr"][1] == 0x44          # the access advanced MEM_ADDR by a word
    # CTRL: performed in cycle 0, seen by the controller CTRL_LATENCY cycles later (the ack
    # cycle), for one cycle.
    assert CTRL_LATENCY == 1
    n, _, strobes = seen["start"]
    assert n == 1 and [s[2:] for s in strobes] == [(0, 0)]
    assert seen["start_at_ack"] == (1, 0) and seen["after_start"] == (0, 0)
    assert seen["clear_at_ack"] == (0, 1)
