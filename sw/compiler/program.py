"""Program builder: emits instructions and derives their wait masks from what they touch.

Every emitted instruction declares the SRAM rows and DRAM columns it reads and writes. The builder
keeps, per row/column, the last writer and the last reader of each unit, plus a vector clock per
instruction (the latest instruction of each unit known to have completed before it starts), and
sets exactly the wait bits needed to order every cross-unit read-after-write, write-after-read
and write-after-write. This is the constructive twin of the golden model's race checker, which
then proves the result race-free at element granularity.

It also accounts DRAM traffic: every DMA is tagged compulsory (weights and inputs read once,
outputs written once) or not (spills and reloads), COSMA's metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import INSTR_BYTES, Instruction, Opcode, Space, Unit
from llmaccel.sw.asm import instr, to_binary

__all__ = ["Access", "CompileError", "ProgramBuilder", "Traffic"]

UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)
_BANK_PORTS = (".read0", ".read1", ".write")
_UIDX = {u: i for i, u in enumerate(UNITS)}


class CompileError(LlmaccelError):
    """A model or request the compiler cannot lower onto the configured accelerator."""


class DramFitError(CompileError):
    """The model's DRAM image is larger than the configured DRAM."""


@dataclass(frozen=True)
class Access:
    """A half-open element range ``[lo, hi)`` of one memory: ``"SP"``, ``"ACC"`` (elements) or
    ``"DRAM"`` (bytes). ``port`` is the SRAM bank read port a read uses (hw/accelerator.py
    ``read_port``); ignored for writes and DRAM."""

    mem: str
    lo: int
    hi: int
    port: int = 0


@dataclass
class Traffic:
    """DRAM bytes moved by DMA, split by purpose."""

    compulsory_read: int = 0
    compulsory_write: int = 0
    spill_read: int = 0
    spill_write: int = 0

    @property
    def total(self) -> int:
        return self.compulsory_read + self.compulsory_write + self.spill_read + self.spill_write

    @property
    def compulsory(self) -> int:
        return self.compulsory_read + self.compulsory_write

    @property
    def non_compulsory(self) -> int:
        return self.spill_read + self.spill_write

    def add(self, other: Traffic) -> None:
        self.compulsory_read += other.compulsory_read
        self.compulsory_write += other.compulsory_write
        self.spill_read += other.spill_read
        self.spill_write += other.spill_write


@dataclass
class ProgramBuilder:
    """Collects instructions with automatically derived wait masks."""

    cfg: AccelConfig
    instructions: list[Instruction] = field(default_factory=list)
    traffic: Traffic = field(default_factory=Traffic)

    def __post_init__(self):
        cfg = self.cfg
        self._gran = {"SP": cfg.row_width, "ACC": cfg.row_width, "DRAM": cfg.col_bytes}
        sizes = {"SP": cfg.sp_rows, "ACC": cfg.acc_rows,
                 "DRAM": cfg.dram_bytes // cfg.col_bytes}
        # SRAM bank ports as resources every use of which is exclusive (a "write"): two units
        # must not use one bank port at the same time (hw/sram.py).
        self._bank_rows = {"SP": cfg.sp_bank_rows, "ACC": cfg.acc_bank_rows}
        for mem, banks in (("SP", cfg.sp_banks), ("ACC", cfg.acc_banks)):
            for port in _BANK_PORTS:
                self._gran[mem + port] = 1
                sizes[mem + port] = banks
        n = len(UNITS)
        self._last_w = {m: np.full(s, -1, np.int32) for m, s in sizes.items()}
        self._last_w_unit = {m: np.full(s, -1, np.int8) for m, s in sizes.items()}
        self._last_r = {m: np.full((n, s), -1, np.int32) for m, s in sizes.items()}
        self._last_of_unit = [-1] * n
        self._vc: list[np.ndarray] = []
        self._deferred: list[list] = []

    def defer(self, n: int, fn) -> None:
        """Call ``fn`` (which emits instructions) once ``n`` more instructions are emitted:
        places an instruction just after the consumer of an earlier result, so that the
        consumer's wait on the unit does not also cover it."""
        self._deferred.append([n, fn])

    def flush_deferred(self) -> None:
        due, self._deferred = self._deferred, []
        for _, fn in due:
            fn()

    # ---------------------------------------------------------------------------------------
    def _rows(self, a: Access) -> slice:
        g = self._gran[a.mem]
        return slice(a.lo // g, -(-a.hi // g))

    def _bank_uses(self, accesses, kind: str) -> tuple[Access, ...]:
        """The SRAM banks ``accesses`` use, as exclusive uses of the bank's write port
        (``kind`` ".write") or of the read port each read names (".read")."""
        out = []
        for a in accesses:
            if a.mem in self._bank_rows and a.hi > a.lo:
                rows = self._rows(a)
                n = self._bank_rows[a.mem]
                port = kind + (str(a.port) if kind == ".read" else "")
                out.append(Access(a.mem + port, rows.start // n, (rows.stop - 1) // n + 1))
        return tuple(out)

    def emit(self, opcode: Opcode, reads: tuple[Access, ...] = (), writes: tuple[Access, ...] = (),
             **fields) -> Instruction:
        """Append one instruction; its wait mask is computed from ``reads``/``writes``."""
        ins = instr(opcode, **fields)
        unit = ins.unit
        writes = tuple(writes) + self._bank_uses(reads, ".read") + \
            self._bank_uses(writes, ".write")
        n = len(UNITS)
        idx = len(self.instructions)
        vc = np.full(n, -1, np.int64)
        if unit is not None:
            p = self._last_of_unit[_UIDX[unit]]
            if p >= 0:
                vc = np.maximum(vc, self._vc[p])
                vc[_UIDX[unit]] = p
        need: set[int] = set()
        ui = _UIDX[unit] if unit is not None else -1
        for a in reads:
            if a.hi <= a.lo:
                continue
            sl = self._rows(a)
            w = self._last_w[a.mem][sl]
            wu = self._last_w_unit[a.mem][sl]
            for v in np.unique(wu[wu >= 0]):
                if v != ui and w[wu == v].max() > vc[v]:
                    need.add(int(v))
        for a in writes:
            if a.hi <= a.lo:
                continue
            sl = self._rows(a)
            w = self._last_w[a.mem][sl]
            wu = self._last_w_unit[a.mem][sl]
            for v in np.unique(wu[wu >= 0]):
                if v != ui and w[wu == v].max() > vc[v]:
                    need.add(int(v))
            for v in range(n):
                if v != ui and self._last_r[a.mem][v][sl].max(initial=-1) > vc[v]:
                    need.add(v)
        if opcode is Opcode.HALT:
            need = set(range(n))
        wait = Unit(0)
        for v in sorted(need):
            wait |= UNITS[v]
            j = self._last_of_unit[v]
            if j >= 0:
                vc = np.maximum(vc, self._vc[j])
                vc[v] = max(vc[v], j)
        if opcode is Opcode.HALT:
            wait = Unit(0)   # HALT drains every unit by definition
        ins = ins.replace(wait=wait) if wait else ins
        self.instructions.append(ins)
        self._vc.append(vc)
        if unit is not None:
            for a in reads:
                if a.hi > a.lo:
                    self._last_r[a.mem][ui][self._rows(a)] = idx
            for a in writes:
                if a.hi > a.lo:
                    sl = self._rows(a)
                    self._last_w[a.mem][sl] = idx
                    self._last_w_unit[a.mem][sl] = ui
            self._last_of_unit[ui] = idx
        if self._deferred:
            for d in self._deferred:
                d[0] -= 1
            due = [d for d in self._deferred if d[0] <= 0]
            self._deferred = [d for d in self._deferred if d[0] > 0]
            for _, fn in due:
                fn()
        return ins

    # ---------------------------------------------------------------------------------------
    def count_dma(self, nbytes: int, *, write: bool, compulsory: bool) -> None:
        t = self.traffic
        if write and compulsory:
            t.compulsory_write += nbytes
        elif write:
            t.spill_write += nbytes
        elif compulsory:
            t.compulsory_read += nbytes
        else:
            t.spill_read += nbytes

    def binary(self) -> bytes:
        return to_binary(self.instructions)

    @property
    def nbytes(self) -> int:
        return len(self.instructions) * INSTR_BYTES


def sram_mem(space: Space) -> str:
    return "SP" if space is Space.SP else "ACC"
