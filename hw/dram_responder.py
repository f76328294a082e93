"""Behavioural DRAM for tests and benchmarks: fixed latency, optional pseudo-random stalls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth import Const, Module, Signal
from amaranth.hdl import MemoryData
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In

from .config import AccelConfig
from .ports import dram_port_signature

__all__ = ["DramResponder"]


class DramResponder(wiring.Component):
    """A DRAM with no banks and no timing parameters: every requester port accepts a column
    request at most every ``interval`` cycles and returns read data exactly ``latency`` cycles
    after accepting the request. It stands in for the DRAM channel (hw/dram_channel.py) while
    testing the DMA engines, and ``sim.golden.timing_dma.FixedLatencyDram`` models it exactly.

    All ports share one memory of ``cfg.dram_bytes`` bytes. A write (``write`` = 1) stores the
    bytes its ``wmask`` enables at the end of the cycle it is accepted and gets no response; a read
    reads the memory in the cycle it is accepted, so it sees every write accepted earlier (on any
    port) but not one accepted in the same cycle on another port.

    With ``req_stall`` / ``rsp_stall`` > 0 each port withholds ``req.ready`` in a random fraction
    of cycles and delays raising ``rsp.valid`` for a response by random cycles (once raised, valid
    stays high until the transfer). The randomness is a xorshift32 generator per port, seeded by
    ``seed`` and the port index, so runs are reproducible.

    Parameters
    ----------
    cfg : AccelConfig
    ports : sequence of str
        Requester port names (identifiers).
    latency : int
        Cycles from a read's request handshake to its response being valid (at least 2).
    interval : int
        Minimum cycles between two accepted requests of one port (``cfg.timing.tBURST`` models
        the channel's data bus rate).
    req_stall, rsp_stall : float
        Probabilities in [0, 1) of a stall cycle on ``req.ready`` and on ``rsp.valid``.
    seed : int
        Seed of the stall generators.
    init : bytes-like or array of uint8, optional
        Initial contents from address 0.
    storage : bool
        Without storage, writes are dropped and reads return zeros (timing unchanged): for
        benchmarks of large configurations, whose memory would dominate the simulation build.

    Ports
    -----
    <name> : ``In(dram_port_signature(cfg))``
        One per requester: ``req`` stream in (column address, write flag, data, byte mask), ``rsp``
        stream out (read data, in request order).
    """

    def __init__(self, cfg: AccelConfig, ports: Sequence[str] = ("dram",), *, latency: int = 2,
                 interval: int = 1, req_stall: float = 0.0, rsp_stall: float = 0.0,
                 seed: int = 1, init=None, storage: bool = True):
        ports = list(ports)
        if not ports or len(set(ports)) != len(ports) or \
                not all(isinstance(p, str) and p.isidentifier() for p in ports):
            raise ValueError(f"ports must be distinct identifiers, not {ports!r}")
        if not isinstance(latency, int) or latency < 2:
            raise ValueError(f"latency must be an integer of at least 2, not {latency!r}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a positive integer, not {interval!r}")
        for name, p in (("req_stall", req_stall), ("rsp_stall", rsp_stall)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {p!r}")
        self.cfg = cfg
        self.port_names = ports
        self.latency = latency
        self.interval = interval
        self.req_stall = req_stall
        self.rsp_stall = rsp_stall
        self.seed = seed
        self.storage = storage
        n_cols = cfg.dram_bytes // cfg.col_bytes
        rows = []
        if init is not None:
            flat = np.frombuffer(bytes(init), dtype=np.uint8) if not isinstance(init, np.ndarray) \
                else init.astype(np.uint8).ravel()
            if flat.size > cfg.dram_bytes:
                raise ValueError(f"init must have at most {cfg.dram_bytes} bytes, not {flat.size}")
            raw = np.pad(flat, (0, -flat.size % cfg.col_bytes)).tobytes()
            rows = [int.from_bytes(raw[i:i + cfg.col_bytes], "little")
                    for i in range(0, len(raw), cfg.col_bytes)]
        #: The storage: one column per row as an unsigned integer, byte ``x`` in bits
        #: ``[8x, 8x + 8)`` (``ctx.get/ctx.set(responder.data[col])`` in tests).
        self.data = MemoryData(shape=8 * cfg.col_bytes, depth=n_cols, init=rows)
        super().__init__({name: In(dram_port_signature(cfg)) for name in ports})

    def elaborate(self, platform):
        m = Module()
        mem = None
        if self.storage:
            m.submodules.mem = mem = memory.Memory(data=self.data)
        L = self.latency
        cap = L + 2              # responses in flight at most; never limits an unstalled port
        req_thr = round(self.req_stall * 256)
        rsp_thr = round(self.rsp_stall * 256)
        for i, name in enumerate(self.port_names):
            port = getattr(self, name)
            req, rsp = port.req, port.rsp

            rng = Signal(32, init=((self.seed * 0x9E3779B1 + i * 0x85EBCA6B) & 0xFFFFFFFF) or 1,
                         name=f"{name}_rng")
            x1 = Signal(32, name=f"{name}_x1")
            x2 = Signal(32, name=f"{name}_x2")
            m.d.comb += [x1.eq(rng ^ (rng << 13)), x2.eq(x1 ^ (x1 >> 17))]
            m.d.sync += rng.eq(x2 ^ (x2 << 5))
            # Without stalls the comparisons are left out (they would be constant).
            stall_req = (rng[0:8] < req_thr) if req_thr else Const(0)
            stall_rsp = (rng[8:16] < rsp_thr) if rsp_thr else Const(0)

            cooldown = Signal(range(self.interval + 1), name=f"{name}_cooldown")
            inflight = Signal(range(cap + 1), name=f"{name}_inflight")
            m.d.comb += req.ready.eq((cooldown == 0) & ~stall_req & (inflight < cap))
            accept = req.valid & req.ready
            with m.If(accept):
                m.d.sync += cooldown.eq(self.interval - 1)
            with m.Elif(cooldown != 0):
                m.d.sync += cooldown.eq(cooldown - 1)

            is_read = Signal(name=f"{name}_is_read")
            m.d.comb += is_read.eq(accept & ~req.payload.write)
            if mem is not None:
                wport = mem.write_port(granularity=8)
                m.d.comb += [
                    wport.addr.eq(req.payload.addr), wport.data.eq(req.payload.wdata),
                    wport.en.eq(req.payload.wmask &
                                (accept & req.payload.write).replicate(self.cfg.col_bytes)),
                ]
                rport = mem.read_port()
                m.d.comb += [rport.addr.eq(req.payload.addr), rport.en.eq(is_read)]
                value = rport.data
            else:
                value = Const(0, 8 * self.cfg.col_bytes)

            # The read data is on the port one cycle after the accept; L - 2 register stages
            # later it enters the output FIFO, which shows it the next cycle (accept + L).
            valid = Signal(name=f"{name}_v0")
            m.d.sync += valid.eq(is_read)
            for stage in range(L - 2):
                v = Signal(name=f"{name}_v{stage + 1}")
                d = Signal(len(value), name=f"{name}_d{stage + 1}")
                m.d.sync += [v.eq(valid), d.eq(value)]
                valid, value = v, d
            out = fifo.SyncFIFO(width=len(value), depth=cap)
            m.submodules[f"{name}_fifo"] = out
            m.d.comb += [out.w_en.eq(valid), out.w_data.eq(value)]

            shown = Signal(name=f"{name}_shown")   # valid was raised and must stay up
            m.d.comb += [rsp.valid.eq(out.r_rdy & (shown | ~stall_rsp)),
                         rsp.payload.eq(out.r_data), out.r_en.eq(rsp.valid & rsp.ready)]
            with m.If(rsp.valid & rsp.ready):
                m.d.sync += shown.eq(0)
            with m.Elif(rsp.valid):
                m.d.sync += shown.eq(1)
            m.d.sync += inflight.eq(inflight + is_read - (rsp.valid & rsp.ready))
        return m

