"""Scratchpad/accumulator planning: placement, liveness, eviction with spills, DRAM traffic.

A program is a list of :class:`Op`; each op names the tensors it reads and writes and knows how
to emit its instructions once every tensor has an SRAM address. The planner walks the ops in
order and, for each one:

1. makes the op's inputs resident — loading weights/constants from their DRAM home (compulsory
   the first time, non-compulsory after an eviction) and spilled activations from the spill area;
2. allocates its outputs (first fit over rows);
3. when an allocation fails, evicts the resident tensor whose next use is farthest away
   (Belady), storing it to the spill area first if it is an activation still needed;
4. emits the op, frees tensors after their last use, and prefetches the next op's weights when
   they fit without evicting anything, so their DMA overlaps this op's compute.

The *peak footprint* is the high-water mark of the same placement with unbounded SRAM; with at
least that much SRAM the planner never evicts, so the only DRAM traffic is compulsory (weights
and inputs read once, outputs written once — COSMA's metric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from llmaccel.hw.accelerator import read_port
from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Opcode, Space, Src2Mode

from .program import Access, CompileError, ProgramBuilder

__all__ = ["Op", "PlanReport", "Planner", "Tensor"]


@dataclass(eq=False)
class Tensor:
    """A buffer in SP (int8 elements) or ACC (int32 elements), a multiple of W elements.

    ``home`` is the DRAM byte address of a weight/constant (loaded on demand); activations have
    no home until the planner spills them. ``persistent`` tensors stay resident after the
    program (constants reused by later programs) and are never evicted.
    """

    name: str
    space: Space
    elems: int
    home: int | None = None
    persistent: bool = False
    # planner state
    addr: int | None = None
    loaded_once: bool = False
    spill_addr: int | None = None
    valid_in_dram: bool = False

    @property
    def mem(self) -> str:
        return "SP" if self.space is Space.SP else "ACC"

    @property
    def esize(self) -> int:
        return 1 if self.space is Space.SP else 4


@dataclass
class Op:
    """One step of a program: reads ``inputs``, writes ``outputs`` (allocated for it), then
    ``emit(addr)`` appends its instructions; ``addr(tensor)`` gives an element address."""

    name: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    emit: Callable[[Callable[[Tensor], int]], None]


@dataclass
class PlanReport:
    peak_sp: int = 0          # high-water mark, elements
    peak_acc: int = 0
    evictions: int = 0
    moves: int = 0            # tensors slid down to close holes (vector copies)
    spills: int = 0
    reloads: int = 0
    limits: dict = field(default_factory=dict)
    #: ``(op name, first instruction, end instruction)`` per op, in program order: the
    #: instructions emitted while the op (its loads, spills and body) was planned. An
    #: instruction the builder defers past an op's end counts to the op emitting then.
    op_spans: list = field(default_factory=list)


class _Arena:
    """First-fit allocator over ``[base, limit)`` in units of rows.

    With ``bank_rows``, bottom allocations go to the SRAM banks (``bank_rows`` rows each) in
    turn — first fit inside the next bank, else first fit anywhere — so that tensors used at
    about the same time by different units tend to sit in different banks, which the bank rule
    (two units must not use one bank port at once; hw/sram.py) would otherwise
    serialise. Spreading fragments the arena, so the planner asks for it only where SRAM is
    plentiful (decode programs)."""

    def __init__(self, base: int, limit: int, bank_rows: int | None = None):
        self.base, self.limit = base, limit
        self.bank_rows = bank_rows
        self.next_bank = 0
        self.used: list[tuple[int, int]] = []   # sorted (start, end)
        self.top: set[int] = set()               # starts of blocks allocated from the top
        self.peak = 0                             # rows: bottom high-water + top usage

    def _note_peak(self) -> None:
        bottom = max((e for s, e in self.used if s not in self.top), default=self.base)
        top = min((s for s, e in self.used if s in self.top), default=self.limit)
        self.peak = max(self.peak, (bottom - self.base) + (self.limit - top))

    def alloc(self, n: int, from_top: bool = False) -> int | None:
        """First fit from the bottom, or (``from_top``) last fit from the top. Weights, which
        live for one step, come from the top and activations from the bottom, so the two
        kinds do not interleave and fragment the arena."""
        if from_top:
            end = self.limit
            for s, e in reversed(self.used):
                if end - e >= n:
                    break
                end = min(end, s)
            pos = end - n
            if pos < self.base:
                return None
        else:
            pos = self._fit(n)
            if pos is None:
                return None
        self.used.append((pos, pos + n))
        self.used.sort()
        if from_top:
            self.top.add(pos)
        self._note_peak()
        return pos

    def _first_fit(self, n: int, lo: int, hi: int) -> int | None:
        pos = lo
        for s, e in self.used:
            if e <= pos:
                continue
            if s - pos >= n:
                break
            pos = max(pos, e)
        return pos if pos + n <= hi else None

    def _fit(self, n: int) -> int | None:
        br = self.bank_rows
        if br:
            nb = -(-self.limit // br)
            for i in range(nb):
                b = (self.next_bank + i) % nb
                pos = self._first_fit(n, max(self.base, b * br), min(self.limit, (b + 1) * br))
                if pos is not None:
                    self.next_bank = (b + 1) % nb
                    return pos
        return self._first_fit(n, self.base, self.limit)

    def free(self, start: int) -> None:
        self.used = [u for u in self.used if u[0] != start]
        self.top.discard(start)


class Planner:
    """Runs a list of ops against SRAM limits (in elements) and a DRAM spill region."""

    def __init__(self, cfg: AccelConfig, builder: ProgramBuilder, *, sp_base: int = 0,
                 sp_limit: int | None = None, acc_base: int = 0, acc_limit: int | None = None,
                 spill_addr: int = 0, spill_bytes: int = 0, prefetch: bool = True,
                 spread_banks: bool = False):
        self.cfg = cfg
        self.b = builder
        w = cfg.row_width
        self.arenas = {
            Space.SP: _Arena(sp_base // w, (cfg.sp_bytes if sp_limit is None else sp_limit) // w,
                             cfg.sp_bank_rows if spread_banks else None),
            Space.ACC: _Arena(acc_base // w,
                              (cfg.acc_elems if acc_limit is None else acc_limit) // w,
                              cfg.acc_bank_rows if spread_banks else None),
        }
        self.spill_next, self.spill_end = spill_addr, spill_addr + spill_bytes
        self.prefetch = prefetch
        self.report = PlanReport(limits={"sp": self.arenas[Space.SP].limit * w,
                                         "acc": self.arenas[Space.ACC].limit * w})
        self.resident: list[Tensor] = []

    # ---------------------------------------------------------------------------------------
    def _dma(self, t: Tensor, dram: int, load: bool, compulsory: bool) -> None:
        w = self.cfg.row_width
        rows = t.elems // w
        sram = Access(t.mem, t.addr, t.addr + t.elems, 0 if load else read_port(t.space, "store"))
        dr = Access("DRAM", dram, dram + t.elems * t.esize)
        op = Opcode.DMA_LOAD if load else Opcode.DMA_STORE
        self.b.emit(op, reads=(dr,) if load else (sram,), writes=(sram,) if load else (dr,),
                    space=t.space, dram_addr=dram, dram_stride=w * t.esize, sram_addr=t.addr,
                    sram_stride=w, rows=rows, len=w)
        self.b.count_dma(t.elems * t.esize, write=not load, compulsory=compulsory)

    def _place(self, t: Tensor, uses: dict, now: int, pinned: set) -> None:
        w = self.cfg.row_width
        arena = self.arenas[t.space]
        rows = t.elems // w
        while True:
            start = arena.alloc(rows, from_top=t.home is not None)
            if start is not None:
                t.addr = start * w
                self.resident.append(t)
                return
            victims = [v for v in self.resident
                       if v.space is t.space and v not in pinned and not v.persistent]
            if not victims and self._compact(t.space):
                continue
            if not victims:
                raise CompileError(
                    f"{t.name} ({t.elems * t.esize} bytes in {t.mem}) does not fit: the "
                    f"{t.mem} holds {arena.limit * w * t.esize} bytes and the tensors this "
                    f"step needs at once already use it; use a config with a larger "
                    f"{'scratchpad (sp_bytes)' if t.space is Space.SP else 'accumulator'}")
            victims.sort(key=lambda v: self._next_use(v, uses, now), reverse=True)
            self._evict(victims[0], uses, now)

    def _compact(self, space: Space) -> bool:
        """Slide the bottom-allocated tensors of ``space`` down over the holes between them
        (vector-unit copies, in pieces that never overlap their own source). Returns whether
        anything moved."""
        w = self.cfg.row_width
        arena = self.arenas[space]
        moved = False
        nxt = arena.base
        for t in sorted((r for r in self.resident if r.space is space
                         and r.addr // w not in arena.top), key=lambda r: r.addr):
            row = t.addr // w
            rows = t.elems // w
            if row > nxt:
                gap = row - nxt
                for r0 in range(0, rows, gap):
                    n = min(gap, rows - r0)
                    src, dst = (row + r0) * w, (nxt + r0) * w
                    rd = Access(t.mem, src, src + n * w, read_port(space, "vec1"))
                    self.b.emit(Opcode.VADD, reads=(rd,),
                                writes=(Access(t.mem, dst, dst + n * w),),
                                dst={"space": space, "addr": dst, "stride": w},
                                src1={"space": space, "addr": src, "stride": w},
                                src2={"mode": Src2Mode.IMM}, imm=0, rows=n)
                arena.free(row)
                arena.used.append((nxt, nxt + rows))
                arena.used.sort()
                t.addr = nxt * w
                self.report.moves += 1
                moved = True
            nxt += rows
        return moved

    @staticmethod
    def _next_use(t: Tensor, uses: dict, now: int) -> float:
        later = [i for i in uses[t] if i > now]
        return later[0] if later else float("inf")

    def _evict(self, t: Tensor, uses: dict, now: int) -> None:
        self.report.evictions += 1
        needed_later = self._next_use(t, uses, now) != float("inf")
        if needed_later and t.home is None and not t.valid_in_dram:
            nbytes = t.elems * t.esize
            if t.spill_addr is None:
                if self.spill_next + nbytes > self.spill_end:
                    raise CompileError(f"the DRAM spill area is too small to evict {t.name}")
                t.spill_addr = self.spill_next
                self.spill_next += nbytes
            self._dma(t, t.spill_addr, load=False, compulsory=False)
            t.valid_in_dram = True
            self.report.spills += 1
        self.arenas[t.space].free(t.addr // self.cfg.row_width)
        self.resident.remove(t)
        t.addr = None

    def _load(self, t: Tensor) -> None:
        if t.home is not None:
            self._dma(t, t.home, load=True, compulsory=not t.loaded_once)
            if t.loaded_once:
                self.report.reloads += 1
            t.loaded_once = True
        elif t.valid_in_dram:
            self._dma(t, t.spill_addr, load=True, compulsory=False)
            self.report.reloads += 1
        else:
            raise CompileError(f"internal: {t.name} is read before it is written")

    def _free(self, t: Tensor) -> None:
        if t.addr is not None and not t.persistent:
            self.arenas[t.space].free(t.addr // self.cfg.row_width)
            self.resident.remove(t)
            t.addr = None

    # ---------------------------------------------------------------------------------------
    def run(self, ops: list[Op]) -> PlanReport:
        uses: dict[Tensor, list[int]] = {}
        for i, op in enumerate(ops):
            for t in (*op.inputs, *op.outputs):
                uses.setdefault(t, []).append(i)
        for i, op in enumerate(ops):
            first = len(self.b.instructions)
            pinned = set(op.inputs) | set(op.outputs)
            for t in op.inputs:
                if t.addr is None:
                    self._place(t, uses, i, pinned)
                    self._load(t)
            for t in op.outputs:
                if t.addr is None:
                    self._place(t, uses, i, pinned)
                t.valid_in_dram = False   # written now: any spilled copy is stale
            op.emit(_addr_of)
            self.report.op_spans.append((op.name, first, len(self.b.instructions)))
            for t in pinned:
                if uses[t][-1] == i:
                    self._free(t)
            if self.prefetch and i + 1 < len(ops):
                self._prefetch(ops[i + 1])
        w = self.cfg.row_width
        # Peak footprint: the smallest arena (above its base) the same placement fits in;
        # reported as the limit that reproduces it (base included).
        for space, attr in ((Space.SP, "peak_sp"), (Space.ACC, "peak_acc")):
            ar = self.arenas[space]
            setattr(self.report, attr, (ar.base + ar.peak) * w)
        return self.report

    def _prefetch(self, op: Op) -> None:
        for t in op.inputs:
            if t.addr is None and t.home is not None:
                start = self.arenas[t.space].alloc(t.elems // self.cfg.row_width,
                                                   from_top=True)
                if start is None:
                    return
                t.addr = start * self.cfg.row_width
                self.resident.append(t)
                self._load(t)


def _addr_of(t: Tensor) -> int:
    if t.addr is None:
        raise CompileError(f"internal: {t.name} has no address")
    return t.addr
