"""The accelerator top level: controller, units, SRAMs, DRAM channel and the host bus."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .config import AccelConfig
from .controller import UNITS, Controller
from .dma_load import DmaLoad
from .dma_store import DmaStore
from .dram_channel import DramChannel
from .gemm_core import GemmCore
from .isa import Space, Unit
from .pim_unit import PimUnit
from .regs import Status
from .sram import Sram
from .vector_unit import VectorUnit
from .wishbone import Wishbone, wishbone_signature

__all__ = ["FETCH_PORT", "GEMM_CLIENTS", "LOAD_PORT", "STORE_PORT", "Accelerator", "read_port",
           "top_sram"]

#: The channel's requester ports (lower numbers win ties in the channel's scheduler).
FETCH_PORT, LOAD_PORT, STORE_PORT = 0, 1, 2

SP_READ = ("gemm_a", "gemm_b", "vec1", "vec2", "store", "pim", "host")
SP_WRITE = ("load", "vec", "host")
ACC_READ = ("gemm", "vec1", "vec2", "store", "load", "ctrl", "host")
ACC_WRITE = ("gemm", "vec", "load", "pim", "host")
#: The read clients on the banks' second read port (the others use the first): the two operands
#: of GEMM and of the vector unit can then read one bank in the same cycle, and the PIM global
#: buffer's reads do not compete with the DMA store's (a decode step's K/V appends overlap its
#: GEMVs). The bank rule is per port (docs/architecture.md, "SRAM banks"), so the golden model
#: and the compiler take the assignment from here (:func:`read_port`).
SP_READ_PORT1 = ("gemm_b", "vec2", "pim", "host")
ACC_READ_PORT1 = ("vec2", "ctrl", "host")


#: The GEMM core's SRAM clients: a config without the core (``cfg.gemm_core``) has none of them.
GEMM_CLIENTS = ("gemm_a", "gemm_b", "gemm")


def top_sram(cfg: AccelConfig, space: Space) -> Sram:
    """The scratchpad (``Space.SP``) or accumulator of ``cfg``'s top level: the clients of
    ``SP_READ``/``SP_WRITE`` or ``ACC_READ``/``ACC_WRITE`` in that priority order (without
    the GEMM core's when it has none), ``SP_READ_PORT1`` / ``ACC_READ_PORT1`` on the banks'
    second read port."""
    rd, wr, port1 = ((SP_READ, SP_WRITE, SP_READ_PORT1) if space is Space.SP
                     else (ACC_READ, ACC_WRITE, ACC_READ_PORT1))
    if not cfg.gemm_core:
        rd, wr = ([n for n in names if n not in GEMM_CLIENTS] for names in (rd, wr))
    return Sram(cfg, space, rd, wr, second_read_port=[n for n in port1 if n in rd])


def read_port(space: Space, client: str) -> int:
    """The bank read port (0 or 1) that read client ``client`` of SRAM ``space`` uses."""
    names, port1 = (SP_READ, SP_READ_PORT1) if space is Space.SP else (ACC_READ, ACC_READ_PORT1)
    if client not in names:
        raise ValueError(f"{client!r} is not a {space.name} read client ({', '.join(names)})")
    return int(client in port1)


class Accelerator(wiring.Component):
    """The whole accelerator: the one Verilog top level.

    :class:`~.controller.Controller`, the five units (:class:`~.dma_load.DmaLoad`,
    :class:`~.dma_store.DmaStore`, :class:`~.gemm_core.GemmCore`, :class:`~.pim_unit.PimUnit`,
    :class:`~.vector_unit.VectorUnit`), the scratchpad and accumulator :class:`~.sram.Sram`,
    the :class:`~.dram_channel.DramChannel` (ports: fetch, DMA load, DMA store; the PIM port;
    the host backdoor) and the :class:`~.wishbone.Wishbone` register block. docs/host.md is the
    host's manual.

    Each SRAM is ``cfg.sp_banks`` / ``cfg.acc_banks`` banks of two read ports and one write
    port (block-RAM shaped). Every client has its own read or write port into a crossbar that
    routes it to the bank its address names, with fixed priority in the order of ``SP_READ``,
    ``SP_WRITE``, ``ACC_READ``, ``ACC_WRITE``; the read clients in ``SP_READ_PORT1`` /
    ``ACC_READ_PORT1`` use the banks' second read port, the others the first. The compiler's
    wait masks (sw/compiler/program.py) and the golden model's ``BankConflictError``
    (sim/golden/isa_sim.py) guarantee that no two units use one bank port in one cycle, so no
    unit ever waits for an SRAM and the golden cycle model stays exact; the SRAMs'
    ``o_conflict`` (a client lost a bank port) is counted in the ``sram_conflicts`` counter,
    which makes violations visible.

    Parameters
    ----------
    cfg : AccelConfig
    image : bytes, optional
        Initial DRAM contents in byte-address order (the program and data).

    Ports
    -----
    bus : In(wishbone_signature())
        Wishbone classic B4 slave, 32-bit data, word addresses (``adr`` = byte offset / 4).
        Verilog: ``bus__adr``, ``bus__dat_w``, ``bus__dat_r``, ``bus__sel``, ``bus__cyc``,
        ``bus__stb``, ``bus__we``, ``bus__ack``.
    o_done : Out(1)
        High while STATUS is DONE or ERROR (the last run has ended).
    o_irq : Out(1)
        High for one cycle when a run ends.

    Clock and reset are the default ``sync`` domain (``clk``, ``rst``).
    """

    def __init__(self, cfg: AccelConfig, image: bytes | None = None):
        self.cfg = cfg
        self.image = image
        super().__init__({
            "bus": wiring.In(wishbone_signature()),
            "o_done": Out(1),
            "o_irq": Out(1),
        })
        # The blocks, made here so that tests can reach their state (SRAM contents).
        self.ctrl = Controller(cfg)
        self.load = DmaLoad(cfg)
        self.store = DmaStore(cfg)
        #: None when the config has no GEMM core (``cfg.gemm_core``).
        self.gemm = GemmCore(cfg) if cfg.gemm_core else None
        self.pim = PimUnit(cfg)
        self.vec = VectorUnit(cfg)
        self.sp = top_sram(cfg, Space.SP)
        self.acc = top_sram(cfg, Space.ACC)
        self.dram = DramChannel(cfg, 3, image)
        self.host = Wishbone(cfg)

    def elaborate(self, platform):
        m = Module()
        ctrl, load, store, gemm = self.ctrl, self.load, self.store, self.gemm
        pim, vec, sp, acc, dram, host = (self.pim, self.vec, self.sp, self.acc, self.dram,
                                         self.host)
        for name in ("ctrl", "load", "store", "gemm", "pim", "vec", "sp", "acc", "dram",
                     "host"):
            if getattr(self, name) is not None:
                m.submodules[name] = getattr(self, name)

        wiring.connect(m, wiring.flipped(self.bus), host.bus)

        # Controller and units. Without a GEMM core its queue stays empty (the checker makes
        # GEMM illegal) and its done and busy are 0.
        units = {Unit.LOAD: load, Unit.STORE: store, Unit.GEMM: gemm, Unit.PIM: pim,
                 Unit.VEC: vec}
        for u, unit in units.items():
            if unit is not None:
                wiring.connect(m, ctrl.unit_port(u), unit.i_cmd)
        m.d.comb += [
            ctrl.i_done.eq(Cat(units[u].o_done if units[u] else Const(0) for u in UNITS)),
            ctrl.i_busy.eq(Cat(units[u].o_busy if units[u] else Const(0) for u in UNITS)),
            ctrl.i_gather_checked.eq(load.o_gather_checked),
            ctrl.i_gather_error.eq(load.o_error),
            ctrl.i_store_write.eq(store.dram.req.valid & store.dram.req.ready),
            ctrl.i_dram_cmd.eq(dram.o_cmd),
            ctrl.i_dram_mac.eq(dram.o_mac),
            ctrl.i_sram_conflict.eq(sp.o_conflict | acc.o_conflict),
        ]

        # DRAM channel.
        wiring.connect(m, ctrl.fetch, dram.ports[FETCH_PORT])
        wiring.connect(m, load.dram, dram.ports[LOAD_PORT])
        wiring.connect(m, store.dram, dram.ports[STORE_PORT])
        wiring.connect(m, pim.pim, dram.pim)
        wiring.connect(m, host.dram, dram.host)

        # SRAM ports.
        if gemm is not None:
            wiring.connect(m, sp.rd_gemm_a, gemm.rd_a)
            wiring.connect(m, sp.rd_gemm_b, gemm.rd_b)
            wiring.connect(m, acc.rd_gemm, gemm.rd_c)
            wiring.connect(m, acc.wr_gemm, gemm.wr_c)
        wiring.connect(m, sp.rd_vec1, vec.sp_rd1)
        wiring.connect(m, sp.rd_vec2, vec.sp_rd2)
        wiring.connect(m, sp.wr_vec, vec.sp_wr)
        wiring.connect(m, acc.rd_vec1, vec.acc_rd1)
        wiring.connect(m, acc.rd_vec2, vec.acc_rd2)
        wiring.connect(m, acc.wr_vec, vec.acc_wr)
        wiring.connect(m, sp.wr_load, load.sp_wr)
        wiring.connect(m, acc.wr_load, load.acc_wr)
        wiring.connect(m, acc.rd_load, load.acc_rd)
        wiring.connect(m, sp.rd_store, store.sp_rd)
        wiring.connect(m, acc.rd_store, store.acc_rd)
        wiring.connect(m, sp.rd_pim, pim.sp_rd)
        wiring.connect(m, acc.wr_pim, pim.acc_wr)
        wiring.connect(m, acc.rd_ctrl, ctrl.acc_rd)
        wiring.connect(m, sp.rd_host, host.sp_rd)
        wiring.connect(m, sp.wr_host, host.sp_wr)
        wiring.connect(m, acc.rd_host, host.acc_rd)
        wiring.connect(m, acc.wr_host, host.acc_wr)

        # Host registers.
        m.d.comb += [
            ctrl.i_start.eq(host.o_start),
            ctrl.i_clear.eq(host.o_clear),
            ctrl.i_base.eq(host.o_base),
            ctrl.i_watchdog.eq(host.o_watchdog),
            host.i_status.eq(ctrl.o_status),
            host.i_error.eq(ctrl.o_error),
            host.i_error_pc.eq(ctrl.o_error_pc),
            host.i_counters.eq(ctrl.o_counters),
        ]
        finished = (ctrl.o_status == Status.DONE) | (ctrl.o_status == Status.ERROR)
        was_running = Signal()
        m.d.sync += was_running.eq(ctrl.o_status == Status.RUNNING)
        m.d.comb += [self.o_done.eq(finished), self.o_irq.eq(finished & was_running)]
        return m
