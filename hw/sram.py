"""On-chip SRAM (scratchpad or accumulator): banks of two read ports and one write port, shared
by the client units through a crossbar with fixed-priority arbitration."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import reduce

import numpy as np
from amaranth import Cat, Module, Mux, Signal, Value
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

#: Read ports of every bank.
BANK_READ_PORTS = 2


def _first(choices: Sequence[tuple[Value, Value]]) -> Value:
    """The value of the first ``(condition, value)`` pair whose condition holds (fixed
    priority); the last pair's value if none does."""
    result = choices[-1][1]
    for cond, value in reversed(choices[:-1]):
        result = Mux(cond, value, result)
    return result


def _lost(requests: Sequence[Value]) -> Value:
    """High if two or more of ``requests`` are high: all but the first of them lose."""
    return Cat(req & Cat(requests[:k]).any() for k, req in enumerate(requests)).any()


class Sram(wiring.Component):
    """The scratchpad (int8) or accumulator (int32) SRAM: rows of ``W = cfg.row_width`` elements
    in ``nb`` banks (``cfg.sp_banks`` / ``cfg.acc_banks``), shared by the client units through a
    crossbar.

    **Organisation.** Bank ``b`` holds the contiguous rows ``[b·R, (b+1)·R)``,
    ``R = cfg.sp_bank_rows`` / ``cfg.acc_bank_rows`` (a global row address is ``b·R + local``).
    Each bank is one :class:`~amaranth.lib.memory.Memory` with two read ports (0 and 1) and one
    write port whose granularity is one element: the shape of an FPGA block RAM. Every client
    keeps a private read port ``rd_<name>`` or write port ``wr_<name>`` (the hw/ports.py
    signatures); the crossbar connects it to the port of the bank its address names. A read
    client uses bank read port 1 if it is named in ``second_read_port``, port 0 otherwise, so
    two clients of one unit that read in the same cycle (GEMM's A and B operands, the vector
    unit's two sources) can read one bank together.

    **Arbitration.** Among the clients that request one bank port in a cycle (a read with ``en``
    high, or a write with any lane of ``en`` high, addressing that bank), the one listed first in
    ``read_ports`` / ``write_ports`` drives it (fixed priority):

    * A losing reader's ``data`` is the winner's row (a read of the wrong row).
    * A lower-priority writer to the **same row** as the winner is merged into the write: lanes
      only it enables get its data; a lane several writers enable takes the data of the one
      listed first. Writes of different lanes of one row from different clients all land.
    * A lower-priority writer to a **different row** of the bank loses: nothing of it is written.

    ``o_conflict`` is high in every cycle in which a client loses (same-row merges are not
    conflicts). No unit ever waits for a bank port: the compiler's wait masks
    (sw/compiler/program.py) order any two instructions of different units that use one bank
    port (hw/accelerator.py ``read_port`` says which read port each reads through), and the
    golden model rejects programs that do not (``BankConflictError``,
    sim/golden/isa_sim.py), so in legal programs no two units use one bank port in one cycle,
    ``o_conflict`` stays low (the controller counts it in ``sram_conflicts``) and the golden
    cycle model stays exact.

    **Reads** take one cycle: ``data`` is the row addressed in the cycle of ``en``, from the bank
    port that read used (a registered bank select per client, updated only when its ``en`` is
    high). ``data`` holds while ``en`` is low as long as no other client reads through that bank
    port. A read of a row written in the same cycle returns the *old* contents ("read-first");
    the new contents are visible to a read issued in the next cycle. Read ports are not
    transparent, which is how block RAM reads behave and avoids a combinational path from write
    data to read data.

    Parameters
    ----------
    cfg : AccelConfig
        Row width, sizes (``cfg.sp_rows`` / ``cfg.acc_rows`` rows) and bank counts.
    space : Space
        ``Space.SP`` (int8 elements) or ``Space.ACC`` (int32 elements).
    read_ports, write_ports : list of str
        Client names; each must be a Python identifier, unique within its list. Each list is in
        priority order (the first client wins a contested bank port).
    init : sequence of int, optional
        Initial contents, one value per *element* (row-major over the global rows, element ``e``
        is row ``e // W``, lane ``e % W``); missing elements are zero.
    second_read_port : list of str, optional
        The read clients that use bank read port 1; the others use port 0.

    Ports
    -----
    rd_<name> : ``Out(sp_read_signature(cfg))`` / ``Out(acc_read_signature(cfg))``
        Read port of client ``name`` (the client side is ``In(...)`` of the same signature):
        ``addr`` (global row address) and ``en`` in, ``data`` (a row of W elements) out one cycle
        later. ``en`` resets to 1 (the read signature's default): a client must drive it, or it
        reads all the time and occupies its bank port.
    wr_<name> : ``Out(sp_write_signature(cfg))`` / ``Out(acc_write_signature(cfg))``
        Write port of client ``name``: ``addr`` (global row address), ``data`` (a row) and ``en``
        (one bit per lane) in; enabled lanes are written at the end of the cycle.
    o_conflict : Out(1)
        High in a cycle in which two or more clients request one bank port and one of them
        loses: two readers of one bank through the same port index, or two writers of different
        rows of one bank.
    """

    def __init__(self, cfg: AccelConfig, space: Space, read_ports: Sequence[str],
                 write_ports: Sequence[str], init: Sequence[int] | np.ndarray | None = None, *,
                 second_read_port: Sequence[str] = ()):
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
        second_read_port = list(second_read_port)
        unknown = [n for n in second_read_port if n not in read_ports]
        if unknown:
            raise ValueError(f"second_read_port names {unknown!r}, which are not read ports "
                             f"({read_ports!r})")
        self.cfg = cfg
        self.space = space
        self.read_names = read_ports
        self.write_names = write_ports
        #: Bank read port (0 or 1) of every read client.
        self.read_port_index = {n: int(n in second_read_port) for n in read_ports}
        if space is Space.SP:
            self.depth, self.n_banks = cfg.sp_rows, cfg.sp_banks
            self.row_layout = sp_row_layout(cfg)
            rsig, wsig = sp_read_signature(cfg), sp_write_signature(cfg)
        else:
            self.depth, self.n_banks = cfg.acc_rows, cfg.acc_banks
            self.row_layout = acc_row_layout(cfg)
            rsig, wsig = acc_read_signature(cfg), acc_write_signature(cfg)
        #: Rows per bank.
        self.bank_rows = self.depth // self.n_banks
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
        R = self.bank_rows
        #: The storage, one :class:`MemoryData` per bank: one unsigned integer per row, lane
        #: ``j`` in bits ``[j·b, (j+1)·b)`` (``b`` = 8 or 32, two's complement). Plain integers
        #: rather than the row layout keep initialisation and ``ctx.get/ctx.set`` in tests fast;
        #: :meth:`row_data` finds a global row.
        self.banks = [MemoryData(shape=W * self.elem_bits, depth=R, init=rows[b * R:(b + 1) * R])
                      for b in range(self.n_banks)]
        members = {f"rd_{n}": Out(rsig) for n in read_ports}
        members |= {f"wr_{n}": Out(wsig) for n in write_ports}
        members["o_conflict"] = Out(1)
        super().__init__(members)

    def row_data(self, row: int):
        """The backdoor to global row ``row`` (``ctx.get/ctx.set(sram.row_data(row))``)."""
        if not 0 <= row < self.depth:
            raise IndexError(f"row {row} is outside the SRAM's {self.depth} rows")
        return self.banks[row // self.bank_rows][row % self.bank_rows]

    def read_port(self, name: str):
        """The ``rd_<name>`` port."""
        return getattr(self, f"rd_{name}")

    def write_port(self, name: str):
        """The ``wr_<name>`` port."""
        return getattr(self, f"wr_{name}")

    def _split(self, m: Module, name: str, addr: Value) -> tuple[Signal, Signal]:
        """Signals holding the bank and the row within the bank that global row ``addr``
        names."""
        nb, R = self.n_banks, self.bank_rows
        bank = Signal(range(nb), name=f"{name}_bank")
        local = Signal(range(R), name=f"{name}_row")
        if R & (R - 1) == 0:
            lr = (R - 1).bit_length()
            m.d.comb += [bank.eq(addr[lr:]), local.eq(addr[:lr])]
        else:
            m.d.comb += [bank.eq(sum(addr >= b * R for b in range(1, nb))),
                         local.eq(addr - bank * R)]
        return bank, local

    def elaborate(self, platform):
        m = Module()
        mems = []
        for b, bank_data in enumerate(self.banks):
            m.submodules[f"bank{b}"] = mem = memory.Memory(data=bank_data)
            mems.append(mem)
        conflicts = self._read_crossbar(m, mems) + self._write_crossbar(m, mems)
        m.d.comb += self.o_conflict.eq(Cat(conflicts).any())
        return m

    def _read_crossbar(self, m: Module, mems: list[memory.Memory]) -> list[Value]:
        """Connect the read clients to the banks' read ports; return one bit per bank read port
        that is high when a client loses it."""
        rports = [[mem.read_port() for _ in range(BANK_READ_PORTS)] for mem in mems]
        row_bits = self.cfg.row_width * self.elem_bits
        clients = []    # (port, bank, row within the bank, bank read port index)
        for n in self.read_names:
            port = self.read_port(n)
            bank, local = self._split(m, f"rd_{n}", port.addr)
            p = self.read_port_index[n]
            clients.append((port, bank, local, p))
            # The bank of the client's last enabled read: its data comes from that bank's port.
            sel = Signal.like(bank, name=f"rd_{n}_sel")
            with m.If(port.en):
                m.d.sync += sel.eq(bank)
            m.d.comb += port.data.eq(Cat(bp[p].data for bp in rports).word_select(sel, row_bits))
        conflicts = []
        for b, bports in enumerate(rports):
            for p, bport in enumerate(bports):
                users = [(port.en & (bank == b), local)
                         for port, bank, local, index in clients if index == p]
                if users:
                    reqs = [req for req, _ in users]
                    m.d.comb += [bport.en.eq(Cat(reqs).any()), bport.addr.eq(_first(users))]
                    conflicts.append(_lost(reqs))
        return conflicts

    def _write_crossbar(self, m: Module, mems: list[memory.Memory]) -> list[Value]:
        """Connect the write clients to the banks' write ports, merging same-row writes; return
        one bit per bank that is high when a client loses its write port."""
        wports = [mem.write_port(granularity=self.elem_bits) for mem in mems]
        writers = []    # (port, bank, row within the bank)
        for n in self.write_names:
            port = self.write_port(n)
            writers.append((port, *self._split(m, f"wr_{n}", port.addr)))
        if not writers:
            return []
        W = self.cfg.row_width
        conflicts = []
        for b, bport in enumerate(wports):
            reqs = [(port.en.any() & (bank == b), port, local) for port, bank, local in writers]
            # The winner's row; every requester writing that row joins the write with the lanes
            # it enables (``joins``: per writer, the lanes it contributes, and its port).
            row = _first([(req, port.addr) for req, port, _ in reqs])
            joins = [(port.en & (req & (port.addr == row)).replicate(W), port)
                     for req, port, _ in reqs]
            m.d.comb += [
                bport.addr.eq(_first([(req, local) for req, _, local in reqs])),
                bport.en.eq(reduce(operator.or_, (lanes for lanes, _ in joins))),
                bport.data.eq(Cat(
                    _first([(lanes[j], port.data.as_value().word_select(j, self.elem_bits))
                            for lanes, port in joins])
                    for j in range(W))),
            ]
            conflicts.append(Cat(req & (port.addr != row) for req, port, _ in reqs).any())
        return conflicts
