"""On-chip SRAM (scratchpad or accumulator) with one read and one write port per client."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth import Module
from amaranth.hdl import MemoryData
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from .config import AccelConfig
from .isa import Space
from .ports import (
    acc_read_signature,
    acc_row_layout,
    acc_write_signature,
    sp_read_signature,
    sp_row_layout,
    sp_write_signature,
)

__all__ = ["Sram"]


class Sram(wiring.Component):
    """The scratchpad (int8) or accumulator (int32) SRAM: rows of ``W = cfg.row_width`` elements,
    with a private read port and a private write port for every client unit.

    The integrator's decision is that no client ever stalls on an SRAM: instead of banks with
    arbitration, every unit gets its own ports, so each unit's timing is independent of the others
    and the golden cycle model can stay exact. Race-free programs (``GoldenMachine`` checks this)
    never write one element from two units in the same cycle; the behaviour when they do is
    still defined:

    * **Simultaneous writes** to one row from several write ports in one cycle: every lane that
      only one port enables gets that port's data, so writes of different lanes of one row from
      different ports all land (nothing is lost or torn). A lane enabled by several ports takes
      the data of the port listed **first** in ``write_ports`` (fixed priority); the others'
      writes to that lane are dropped. The priority is resolved here, before the memory, so the
      underlying memory never sees two writes to one bit and no simulator or synthesis tool's
      multi-port resolution rule matters.
    * **Read during write** (a read port reads a row that a write port writes in the same cycle):
      the read returns the row's *old* contents ("read-first"); the new contents are visible to a
      read issued in the next cycle. Read ports are not transparent, which is how block RAM reads
      behave and avoids a combinational path from write data to read data.

    Parameters
    ----------
    cfg : AccelConfig
        Row width and sizes (``cfg.sp_rows`` / ``cfg.acc_rows`` rows).
    space : Space
        ``Space.SP`` (int8 elements) or ``Space.ACC`` (int32 elements).
    read_ports, write_ports : list of str
        Client names; each must be a Python identifier, unique within its list. Write ports are
        listed in priority order (first wins on a lane written by several ports in one cycle).
    init : sequence of int, optional
        Initial contents, one value per *element* (row-major, element ``e`` is row ``e // W``,
        lane ``e % W``); missing elements are zero.

    Ports
    -----
    rd_<name> : ``Out(sp_read_signature(cfg))`` / ``Out(acc_read_signature(cfg))``
        Read port of client ``name`` (the client side is ``In(...)`` of the same signature):
        ``addr`` (row address) and ``en`` in, ``data`` (a row of W elements) out one cycle later;
        ``data`` holds its value while ``en`` is low.
    wr_<name> : ``Out(sp_write_signature(cfg))`` / ``Out(acc_write_signature(cfg))``
        Write port of client ``name``: ``addr`` (row address), ``data`` (a row) and ``en`` (one
        bit per lane) in; enabled lanes are written at the end of the cycle.
    """

    def __init__(self, cfg: AccelConfig, space: Space, read_ports: Sequence[str],
                 write_ports: Sequence[str], init: Sequence[int] | np.ndarray | None = None):
        if not isinstance(space, Space):
            raise ValueError(f"space must be a Space, not {space!r}")
        read_ports, write_ports = list(read_ports), list(write_ports)
        for kind, names in (("read", read_ports), ("write", write_ports)):
            for name in names:
                if not isinstance(name, str) or not name.isidentifier():
                    raise ValueError(f"{kind} port name must be an identifier, not {name!r}")
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} port names must be unique, not {names!r}")
        if not read_ports and not write_ports:
            raise ValueError("an SRAM needs at least one port, not none")
        self.cfg = cfg
        self.space = space
        self.read_names = read_ports
        self.write_names = write_ports
        if space is Space.SP:
            self.depth = cfg.sp_rows
            self.row_layout = sp_row_layout(cfg)
            rsig, wsig = sp_read_signature(cfg), sp_write_signature(cfg)
        else:
            self.depth = cfg.acc_rows
            self.row_layout = acc_row_layout(cfg)
            rsig, wsig = acc_read_signature(cfg), acc_write_signature(cfg)
        W = cfg.row_width
        self.elem_bits = 8 if space is Space.SP else 32
        rows = []
        if init is not None:
            flat = np.asarray(init, dtype=np.int64).ravel()
            if flat.size > self.depth * W:
                raise ValueError(f"init must have at most {self.depth * W} elements, "
                                 f"not {flat.size}")
            flat = np.pad(flat, (0, -flat.size % W))
            raw = flat.astype("<i1" if space is Space.SP else "<i4").tobytes()
            step = W * self.elem_bits // 8
            rows = [int.from_bytes(raw[i:i + step], "little") for i in range(0, len(raw), step)]
        #: The storage: one unsigned integer per row, lane ``j`` in bits ``[j·b, (j+1)·b)``
        #: (``b`` = 8 or 32, two's complement). Plain integers rather than the row layout keep
        #: initialisation and ``ctx.get/ctx.set(sram.data[i])`` in tests fast.
        self.data = MemoryData(shape=W * self.elem_bits, depth=self.depth, init=rows)
        members = {f"rd_{n}": Out(rsig) for n in read_ports}
        members |= {f"wr_{n}": Out(wsig) for n in write_ports}
        super().__init__(members)

    def read_port(self, name: str):
        """The ``rd_<name>`` port."""
        return getattr(self, f"rd_{name}")

    def write_port(self, name: str):
        """The ``wr_<name>`` port."""
        return getattr(self, f"wr_{name}")

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(data=self.data)
        wports = [self.write_port(n) for n in self.write_names]
        for i, port in enumerate(wports):
            mport = mem.write_port(granularity=self.elem_bits)
            # Lanes a higher-priority port writes into the same row this cycle are masked here.
            en = port.en
            for hi in wports[:i]:
                en = en & ~(hi.en & (hi.addr == port.addr).replicate(len(hi.en)))
            m.d.comb += [mport.addr.eq(port.addr), mport.data.eq(port.data), mport.en.eq(en)]
        for name in self.read_names:
            port = self.read_port(name)
            mport = mem.read_port()
            m.d.comb += [mport.addr.eq(port.addr), mport.en.eq(port.en), port.data.eq(mport.data)]
        return m

