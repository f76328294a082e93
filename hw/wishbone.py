"""The host interface: a Wishbone classic (B4) slave implementing the register map of hw/regs.py.

:func:`wishbone_signature` is the bus (seen from the initiator); :class:`Wishbone` is the
register block behind it. docs/host.md describes the protocol and every register.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .dram_channel import host_signature
from .isa import ErrorCode
from .ports import acc_read_signature, acc_write_signature, sp_read_signature, sp_write_signature
from .regs import COUNTERS, ID_VALUE, HostMem, Reg, Status, config_word

__all__ = ["CTRL_LATENCY", "WB_ADDR_WIDTH", "Wishbone", "wishbone_signature"]

#: Word-address width of the bus: 1 KiB of register space.
WB_ADDR_WIDTH = 8
#: Cycles from the cycle a CTRL write is performed to the cycle the controller sees its START
#: and CLEAR_COUNTERS (``o_start``, ``o_clear`` are registered).
CTRL_LATENCY = 1


def wishbone_signature(addr_width: int = WB_ADDR_WIDTH) -> wiring.Signature:
    """Wishbone classic B4, 32-bit data, word addresses, seen from the initiator: ``adr``,
    ``dat_w``, ``sel`` (byte enables), ``cyc``, ``stb``, ``we`` out; ``dat_r``, ``ack`` in."""
    return wiring.Signature({
        "adr": Out(addr_width),
        "dat_w": Out(32),
        "dat_r": In(32),
        "sel": Out(4),
        "cyc": Out(1),
        "stb": Out(1),
        "we": Out(1),
        "ack": In(1),
    })


class Wishbone(wiring.Component):
    """Register block of the accelerator on a Wishbone classic slave port.

    A register access takes two cycles: in the cycle ``cyc & stb`` is first seen the access is
    performed (a register write takes effect), and ``ack`` is high in the next cycle with
    ``dat_r``. A MEM_DATA access takes three: it is registered in the first cycle, performed
    from those registers in the second (a memory write takes effect, a memory read is
    issued), and acknowledged in the third. A new access may start in the cycle after ``ack``.
    Unmapped addresses read as zero and ignore writes. Writes to read/write registers honour
    ``sel``. CTRL's START and CLEAR_COUNTERS reach the controller ``CTRL_LATENCY`` cycle later,
    in the cycle the write is acknowledged, so a STATUS read after it sees the run.

    Registers (hw/regs.py): ID, CTRL (bit 0 START, bit 1 CLEAR_COUNTERS), STATUS, ERROR,
    ERROR_PC, PROG_BASE, WATCHDOG, CONFIG, MEM_SEL, MEM_ADDR, MEM_DATA, counters. A counter is
    64 bits: reading its low word latches its high word, which a read of the high word of the
    same counter returns (any other high-word read returns the live value).

    MEM_DATA reads or writes one 32-bit word of the memory MEM_SEL selects at MEM_ADDR and
    advances MEM_ADDR: DRAM by 4 bytes (the low two address bits are ignored), SP by 4 int8
    elements (four per word, little-endian, the low two bits ignored), ACC by one int32
    element. SRAM writes take effect at once; DRAM goes through the channel's backdoor (no
    timing). The backdoor takes the banks' ports from the channel's scheduler, so while STATUS
    is RUNNING the DRAM window is closed: its reads return zero and its writes are ignored
    (MEM_ADDR still advances), and a running program's accesses are never disturbed. DRAM
    addresses at or above ``cfg.dram_bytes``, SP addresses at or above ``cfg.sp_bytes`` and ACC
    addresses at or above ``cfg.acc_elems`` read as zero and ignore writes too (none wraps).

    Parameters
    ----------
    cfg : AccelConfig
        ``row_width`` must be at least 4 (a word of SP elements stays within one row).

    Ports
    -----
    bus : In(wishbone_signature())
    o_start, o_clear : Out(1)
        One-cycle pulses from CTRL writes.
    o_base, o_watchdog : Out(32)
        PROG_BASE and WATCHDOG.
    i_status : In(2), i_error : In(ErrorCode), i_error_pc : In(32)
    i_counters : In(array of 64-bit counters)
    dram : Out(host_signature(cfg))
        The channel's host backdoor.
    sp_rd, sp_wr, acc_rd, acc_wr : SRAM host ports.
    """

    def __init__(self, cfg: AccelConfig):
        if cfg.row_width < 4:
            raise ValueError(f"row width must be at least 4 for the host memory window, not "
                             f"{cfg.row_width!r}")
        self.cfg = cfg
        super().__init__({
            "bus": In(wishbone_signature()),
            "o_start": Out(1),
            "o_clear": Out(1),
            "o_base": Out(32),
            "o_watchdog": Out(32),
            "i_status": In(2),
            "i_error": In(ErrorCode),
            "i_error_pc": In(32),
            "i_counters": In(data.ArrayLayout(unsigned(64), len(COUNTERS))),
            "dram": Out(host_signature(cfg)),
            "sp_rd": In(sp_read_signature(cfg)),
            "sp_wr": In(sp_write_signature(cfg)),
            "acc_rd": In(acc_read_signature(cfg)),
            "acc_wr": In(acc_write_signature(cfg)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        W = cfg.row_width
        lw = (W - 1).bit_length()
        bus = self.bus

        ack = Signal()
        go = Signal()
        # A MEM_DATA access is registered in the cycle it is seen (``m_act`` and the ``m_*``
        # fields) and performed from those registers in the next, then acknowledged: on the
        # FPGA the bus master's state, the decode and the memories' address multiplexers into
        # every DRAM bank's block RAM were one path across the device (docs/fpga.md).
        m_act = Signal()
        m.d.comb += [go.eq(bus.cyc & bus.stb & ~ack & ~m_act), bus.ack.eq(ack)]
        m.d.sync += ack.eq((go & ~(bus.adr == (Reg.MEM_DATA >> 2))) | m_act)
        wr = go & bus.we
        rd = go & ~bus.we

        def at(reg):
            return bus.adr == (reg >> 2)

        byte_mask = Cat(*[bus.sel[i].replicate(8) for i in range(4)])

        def update(reg_sig):
            return (reg_sig & ~byte_mask) | (bus.dat_w & byte_mask)

        base = Signal(32)
        watchdog = Signal(32)
        mem_sel = Signal(2)
        mem_addr = Signal(32)
        m.d.comb += [self.o_base.eq(base), self.o_watchdog.eq(watchdog)]
        # Registered: on the FPGA the bus master's state and this decode reached the
        # controller's flushes and queue resets in one cycle, across the device (docs/fpga.md).
        m.d.sync += [self.o_start.eq(wr & at(Reg.CTRL) & bus.sel[0] & bus.dat_w[0]),
                     self.o_clear.eq(wr & at(Reg.CTRL) & bus.sel[0] & bus.dat_w[1])]
        with m.If(wr & at(Reg.PROG_BASE)):
            m.d.sync += base.eq(update(base))
        with m.If(wr & at(Reg.WATCHDOG)):
            m.d.sync += watchdog.eq(update(watchdog))
        with m.If(wr & at(Reg.MEM_SEL)):
            m.d.sync += mem_sel.eq(update(mem_sel))

        # ---- memory window --------------------------------------------------------------
        mem_go = go & at(Reg.MEM_DATA)
        step = Mux(mem_sel == HostMem.ACC, 1, 4)
        with m.If(wr & at(Reg.MEM_ADDR)):
            m.d.sync += mem_addr.eq(update(mem_addr))
        with m.Elif(mem_go):
            m.d.sync += mem_addr.eq(mem_addr + step)
        # Compared in full rather than truncated to the column address: the top of DRAM need
        # not be a power of two (AccelConfig.bank_rows), and no address may wrap around.
        # Closed while a program runs: the backdoor would take the banks' ports from the
        # scheduler (a host read in a cycle with a column command would hand the command the
        # host's column, a host write would clobber the command's write).
        in_dram = (mem_addr < cfg.dram_bytes) & (self.i_status != Status.RUNNING)
        in_sp = mem_addr < cfg.sp_bytes
        in_acc = mem_addr < cfg.acc_elems
        # The access as seen, performed in the next cycle (``m_act``).
        m_we = Signal()
        m_addr = Signal(32)
        m_data = Signal(32)
        m_bsel = Signal(4)
        m_sel = Signal(2)
        m_dram = Signal()                    # in range, per memory
        m_sp = Signal()
        m_acc = Signal()
        m.d.sync += m_act.eq(mem_go)
        with m.If(mem_go):
            m.d.sync += [m_we.eq(bus.we), m_addr.eq(mem_addr), m_data.eq(bus.dat_w),
                         m_bsel.eq(bus.sel), m_sel.eq(mem_sel),
                         m_dram.eq((mem_sel == HostMem.DRAM) & in_dram),
                         m_sp.eq((mem_sel == HostMem.SP) & in_sp),
                         m_acc.eq((mem_sel == HostMem.ACC) & in_acc)]
        m_wr = m_act & m_we
        m_rd = m_act & ~m_we
        cb = cfg.col_bytes
        col_bits = (cfg.dram_bytes // cb - 1).bit_length()
        word_in_col = m_addr[2:5]
        lane = m_addr[:lw] if lw else 0
        row = m_addr[lw:]
        dh = self.dram
        m.d.comb += [
            dh.addr.eq(m_addr[5:5 + col_bits]),
            dh.re.eq(m_rd & m_dram),
            dh.we.eq(m_wr & m_dram),
            dh.wmask.eq(m_bsel << (word_in_col * 4)),
        ]
        for k in range(cb // 4):
            for i in range(4):
                m.d.comb += dh.wdata[4 * k + i].eq(m_data[8 * i:8 * i + 8])
        m.d.comb += [self.sp_rd.addr.eq(row), self.sp_rd.en.eq(m_rd & m_sp),
                     self.sp_wr.addr.eq(row)]
        for j in range(W):
            m.d.comb += self.sp_wr.data[j].eq(m_data.word_select(j % 4, 8))
            in_word = (m_addr[2:lw] == (j >> 2)) if W > 4 else 1
            m.d.comb += self.sp_wr.en[j].eq(m_wr & m_sp & in_word & m_bsel[j % 4])
        m.d.comb += [self.acc_rd.addr.eq(row), self.acc_rd.en.eq(m_rd & m_acc),
                     self.acc_wr.addr.eq(row)]
        for j in range(W):
            m.d.comb += [self.acc_wr.data[j].eq(m_data),
                         self.acc_wr.en[j].eq(m_wr & m_acc & (lane == j) & (m_bsel != 0))]

        # ---- read data ------------------------------------------------------------------
        cnt = self.i_counters
        shadow = Signal(32)
        shadow_idx = Signal(range(len(COUNTERS)))
        reg_val = Signal(32)
        cfg_word = config_word(cfg)
        with m.Switch(bus.adr):
            for reg, val in ((Reg.ID, ID_VALUE), (Reg.CONFIG, cfg_word)):
                with m.Case(reg >> 2):
                    m.d.comb += reg_val.eq(val)
            for reg, sig in ((Reg.STATUS, self.i_status), (Reg.ERROR, self.i_error),
                             (Reg.ERROR_PC, self.i_error_pc), (Reg.PROG_BASE, base),
                             (Reg.WATCHDOG, watchdog), (Reg.MEM_SEL, mem_sel),
                             (Reg.MEM_ADDR, mem_addr)):
                with m.Case(reg >> 2):
                    m.d.comb += reg_val.eq(sig)
            for k in range(len(COUNTERS)):
                with m.Case((Reg.COUNTER_BASE >> 2) + 2 * k):
                    m.d.comb += reg_val.eq(cnt[k][:32])
                    with m.If(rd):
                        m.d.sync += [shadow.eq(cnt[k][32:]), shadow_idx.eq(k)]
                with m.Case((Reg.COUNTER_BASE >> 2) + 2 * k + 1):
                    m.d.comb += reg_val.eq(Mux(shadow_idx == k, shadow, cnt[k][32:]))
        rdata = Signal(32)
        mem_rd = Signal()
        r_sel = Signal(2)
        r_addr = Signal(5)
        r_in_range = Signal()
        m.d.sync += [rdata.eq(reg_val), mem_rd.eq(m_rd), r_sel.eq(m_sel),
                     r_addr.eq(m_addr[:5]), r_in_range.eq(m_dram | m_sp | m_acc)]
        dram_word = Signal(32)
        m.d.comb += dram_word.eq(dh.rdata.as_value().word_select(r_addr[2:5], 32))
        sp_word = Signal(32)
        acc_word = Signal(32)
        r_lane = r_addr[:lw] if lw else 0
        if W > 4:
            m.d.comb += sp_word.eq(self.sp_rd.data.as_value().word_select(r_addr[2:lw], 32))
        else:
            m.d.comb += sp_word.eq(self.sp_rd.data.as_value())
        m.d.comb += acc_word.eq(self.acc_rd.data.as_value().word_select(r_lane, 32))
        with m.If(mem_rd & ~r_in_range):
            m.d.comb += bus.dat_r.eq(0)
        with m.Elif(mem_rd), m.Switch(r_sel):
            with m.Case(HostMem.DRAM):
                m.d.comb += bus.dat_r.eq(dram_word)
            with m.Case(HostMem.SP):
                m.d.comb += bus.dat_r.eq(sp_word)
            with m.Case(HostMem.ACC):
                m.d.comb += bus.dat_r.eq(acc_word)
        with m.Else():
            m.d.comb += bus.dat_r.eq(rdata)
        return m
