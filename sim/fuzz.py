"""Random programs for differential testing of an RTL backend against the golden model.

:class:`ProgramFuzzer` makes

* **valid** programs: every opcode with random legal fields of bounded size, reading random data
  the host put in DRAM and whatever earlier programs left in the SRAMs. Each proposed instruction
  is executed on a private copy of the golden machine first; one the machine refuses is drawn
  again, so the program is legal by construction, and its element-exact reads and writes go to
  :class:`~llmaccel.sw.compiler.program.ProgramBuilder`, which derives the wait masks that make
  it race-free (the golden model's race checker then proves it). Random extra wait bits are
  added on top (over-synchronising is always legal).
* **illegal** programs: a valid prefix, then one bad word — an opcode that does not exist,
  reserved bits set, a field value the opcode forbids, a misaligned row operand, a DRAM, SRAM or
  PIM access out of range, a gather whose run-time index leaves DRAM, or a program counter that
  runs off the end of DRAM — then more instructions that must never execute. The expected error
  code and PC are whatever the golden model reports.

:class:`DiffRunner` runs such programs one after another on a backend and on the golden
backend, which hold the same state throughout, and compares status, error, error PC and every
memory the program wrote, then all of DRAM, SP and ACC at checkpoints.

Programs confine themselves to a :class:`FuzzLayout`: a DRAM data arena (random bytes loaded by
the host once), a program area above it that nothing writes, and windows of SP and ACC — small
enough that comparing after every program stays cheap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import (
    INSTR_BITS,
    INSTR_BYTES,
    DecodeError,
    Instruction,
    Opcode,
    Space,
    Src2Mode,
    Unit,
    VecInstr,
    decode,
    leaf_fields,
    reserved_mask,
)
from llmaccel.sim.backends import BackendRun
from llmaccel.sim.golden.isa_sim import GoldenMachine, MachineError, RaceError
from llmaccel.sim.golden.system_model import SystemModel
from llmaccel.sw.compiler.program import Access, ProgramBuilder

__all__ = [
    "ILLEGAL_KINDS",
    "DiffRunner",
    "FuzzLayout",
    "FuzzProgram",
    "Mismatch",
    "ProgramFuzzer",
]

UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)
ALL_UNITS = Unit.LOAD | Unit.STORE | Unit.GEMM | Unit.PIM | Unit.VEC
_ELEMENTWISE = (Opcode.VADD, Opcode.VSUB, Opcode.VMUL, Opcode.VMAX, Opcode.VMIN)
_VEC_ROW = (*_ELEMENTWISE, Opcode.VLUT, Opcode.VRECIP, Opcode.VISQRT, Opcode.VMASK)
_REDUCE = (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX)

#: Kinds of illegal programs :meth:`ProgramFuzzer.illegal` makes.
ILLEGAL_KINDS = ("opcode", "reserved", "field", "misaligned", "dram_range", "sram_range",
                 "pim_range", "gather_index", "pc_range")

# How often each opcode is proposed in valid programs (VEC ops are the most varied).
_WEIGHTS = {
    Opcode.NOP: 2, Opcode.DMA_LOAD: 8, Opcode.DMA_GATHER: 3, Opcode.DMA_STORE: 6,
    Opcode.GEMM: 6, Opcode.PIM_WRGB: 3, Opcode.PIM_MAC: 4, Opcode.PIM_READ: 3,
    Opcode.VADD: 3, Opcode.VSUB: 2, Opcode.VMUL: 3, Opcode.VMAX: 2, Opcode.VMIN: 2,
    Opcode.VLUT: 2, Opcode.VRECIP: 2, Opcode.VISQRT: 2, Opcode.VREDSUM: 2, Opcode.VREDMAX: 2,
    Opcode.VARGMAX: 2, Opcode.VMASK: 2, Opcode.VTRANS: 2, Opcode.VLUTLD: 1,
}


@dataclass(frozen=True)
class FuzzLayout:
    """Where fuzz programs may work.

    ``arena`` DRAM bytes hold random data (loaded by the host) and are the only DRAM that
    programs write; programs live in ``prog_area`` bytes above the arena (one after another,
    never written); ``sp_window`` / ``acc_window`` SP / ACC elements from ``sp_base`` /
    ``acc_base`` are the SRAM programs touch. The windows straddle the boundary between the first
    two SRAM banks (when there are two), so programs use both banks' ports at once and cross
    from one bank to the other. DRAM reads (DMA loads, PIM rows) may go anywhere.
    """

    arena: int
    prog_base: int
    prog_area: int
    sp_window: int
    acc_window: int
    sp_base: int = 0
    acc_base: int = 0

    @classmethod
    def for_config(cls, cfg: AccelConfig) -> FuzzLayout:
        arena = min(cfg.dram_bytes // 4, 256 * 1024)
        W = cfg.row_width
        sp_window = min(cfg.sp_bytes, 512 * W)
        acc_window = min(cfg.acc_elems, max(256, 256 * W))

        def base(bank_rows: int, window: int, size: int) -> int:
            b = bank_rows * W - window // 2 // W * W
            return min(max(b, 0), size - window)

        return cls(arena=arena, prog_base=arena, prog_area=64 * 1024, sp_window=sp_window,
                   acc_window=acc_window,
                   sp_base=base(cfg.sp_bank_rows, sp_window, cfg.sp_bytes),
                   acc_base=base(cfg.acc_bank_rows, acc_window, cfg.acc_elems))

    def window(self, space: Space) -> tuple[int, int]:
        """The SRAM window of ``space`` as ``(first element, end)``."""
        if space is Space.SP:
            return self.sp_base, self.sp_base + self.sp_window
        return self.acc_base, self.acc_base + self.acc_window


@dataclass
class FuzzProgram:
    """One generated program and what the fuzzer knows about it."""

    seed: int
    kind: str                     # "valid" or one of ILLEGAL_KINDS
    words: list[bytes]            # the instruction words, in order
    base: int                     # DRAM address it is loaded at and started from
    text: list[str] = field(default_factory=list)   # disassembly (hex for illegal words)
    writes: dict = field(default_factory=dict)      # "dram"/"SP"/"ACC" → [(lo, hi)] written
    bad_index: int | None = None  # index of the illegal word

    @property
    def binary(self) -> bytes:
        return b"".join(self.words)

    def listing(self) -> str:
        return "\n".join(f"{self.base + INSTR_BYTES * i:#08x}  {t}"
                         for i, t in enumerate(self.text))


def _runs(idx: np.ndarray, gran: int) -> list[tuple[int, int]]:
    """Half-open element ranges covering ``idx``, split where granules are not contiguous."""
    if idx.size == 0:
        return []
    g = np.unique(np.asarray(idx, dtype=np.int64).ravel() // gran)
    brk = np.flatnonzero(np.diff(g) != 1) + 1
    starts, ends = g[np.r_[0, brk]], g[np.r_[brk - 1, g.size - 1]] + 1
    return [(int(s) * gran, int(e) * gran) for s, e in zip(starts, ends, strict=True)]


def _fmt(ins: Instruction) -> str:
    from llmaccel.sw.asm import format_instruction  # noqa: PLC0415

    return format_instruction(ins)


class ProgramFuzzer:
    """Random valid and illegal programs for ``cfg`` (see the module docstring)."""

    def __init__(self, cfg: AccelConfig, layout: FuzzLayout | None = None, *,
                 max_instructions: int = 28):
        self.cfg = cfg
        self.layout = layout or FuzzLayout.for_config(cfg)
        self.max_instructions = max_instructions
        self._next_prog = 0
        lay = self.layout
        if lay.prog_base + lay.prog_area > cfg.dram_bytes or lay.prog_base < lay.arena:
            raise ValueError(f"the fuzz layout does not fit the {cfg.dram_bytes}-byte DRAM")

    # ---------------------------------------------------------------------------------------
    # Host-side setup
    def arena_data(self, seed: int) -> np.ndarray:
        """Random bytes for the DRAM arena."""
        return np.random.default_rng(seed).integers(0, 256, self.layout.arena, dtype=np.uint8)

    def fill_program(self) -> FuzzProgram:
        """DMA loads that fill the SP and ACC windows from the arena (random data on chip)."""
        cfg, lay, W = self.cfg, self.layout, self.cfg.row_width
        b = ProgramBuilder(cfg)
        for space, esize in ((Space.SP, 1), (Space.ACC, 4)):
            mem = "SP" if space is Space.SP else "ACC"
            lo, hi = lay.window(space)
            rows = (hi - lo) // W
            for r0 in range(0, rows, 1 << 12):
                n = min(1 << 12, rows - r0)
                dram = (r0 * W * esize * 3) % max(1, lay.arena - n * W * esize)
                sram = lo + r0 * W
                b.emit(Opcode.DMA_LOAD, reads=(Access("DRAM", dram, dram + n * W * esize),),
                       writes=(Access(mem, sram, sram + n * W),), space=space,
                       dram_addr=dram, dram_stride=W * esize, sram_addr=sram, sram_stride=W,
                       rows=n, len=W)
        b.emit(Opcode.HALT)
        return self._package(0, "valid", b.instructions, {})

    def _package(self, seed, kind, instructions, writes, bad=None, base=None) -> FuzzProgram:
        words, text = [], []
        for ins in instructions:
            if isinstance(ins, Instruction):
                words.append(ins.to_bytes())
                text.append(_fmt(ins))
            else:
                words.append(int(ins).to_bytes(INSTR_BYTES, "little"))
                text.append(f".word {int(ins):#066x}")
        if base is None:
            base = self._alloc(len(words))
        return FuzzProgram(seed, kind, words, base, text, writes, bad)

    def _alloc(self, n: int) -> int:
        lay = self.layout
        size = n * INSTR_BYTES
        if self._next_prog + size > lay.prog_area:
            self._next_prog = 0
        base = lay.prog_base + self._next_prog
        self._next_prog += size
        return base

    # ---------------------------------------------------------------------------------------
    # Valid programs
    def valid(self, seed: int, state: GoldenMachine, *, n: int | None = None) -> FuzzProgram:
        """A random race-free program that the golden machine in ``state`` runs to HALT."""
        g = _Gen(self, seed, state)
        count = n if n is not None else g.rng.randint(1, self.max_instructions)
        for _ in range(count):
            g.add_random()
        g.b.emit(Opcode.HALT)
        return self._package(seed, "valid", g.b.instructions, g.writes)

    # ---------------------------------------------------------------------------------------
    # Illegal programs
    def illegal(self, seed: int, state: GoldenMachine, kind: str | None = None) -> FuzzProgram:
        """A valid prefix, one illegal word of ``kind`` (random by default), then more words.

        The golden model decides the expected error and PC; ``bad_index`` is the word the fuzzer
        meant to fail (the golden model may stop earlier only if the prefix itself is illegal,
        which it never is)."""
        g = _Gen(self, seed, state)
        rng = g.rng
        kind = kind or rng.choice(ILLEGAL_KINDS)
        for _ in range(rng.randint(0, 8)):
            g.add_random()
        if kind == "pc_range":
            # Run off the end of DRAM: the last word of DRAM is a plain instruction.
            words = list(g.b.instructions)
            if not words or rng.random() < 0.5:
                words.append(Instruction(Opcode.NOP))
            base = self.cfg.dram_bytes - INSTR_BYTES * len(words)
            return self._package(seed, kind, words, g.writes, bad=len(words), base=base)
        for _ in range(200):
            word = g.illegal_word(kind)
            if word is not None:
                break
        else:
            raise RuntimeError(f"could not make an illegal {kind} word (seed {seed})")
        if isinstance(word, Instruction) and word.opcode is Opcode.DMA_GATHER:
            # Its index is data: it must wait for the index's writer like a legal gather, or
            # the RTL may legitimately read an older index (a race, not an RTL error).
            idx = word.idx_addr
            word = g.b.emit(Opcode.DMA_GATHER, reads=(Access("ACC", idx, idx + 1),),
                            **word.fields)
            g.b.instructions.pop()
        elif isinstance(word, Instruction) and rng.random() < 0.5:
            word = word.replace(wait=Unit(rng.randrange(32)))
        words = [*g.b.instructions, word]
        bad = len(words) - 1
        # Words after the illegal one must never execute: random valid-looking instructions.
        tail = _Gen(self, seed + 1, state)
        for _ in range(rng.randint(0, 3)):
            tail.add_random()
        words += tail.b.instructions
        words.append(Instruction(Opcode.HALT))
        return self._package(seed, kind, words, g.writes, bad=bad)


class _Gen:
    """Builds one program against a private copy of the golden machine."""

    def __init__(self, fz: ProgramFuzzer, seed: int, state: GoldenMachine):
        self.fz, self.cfg, self.lay = fz, fz.cfg, fz.layout
        self.rng = random.Random(seed)
        m = GoldenMachine(self.cfg, check_races=True)
        for name in ("dram", "sp", "acc", "gbuf", "pacc", "lut"):
            getattr(m, name)[...] = getattr(state, name)
        self.m = m
        self.b = ProgramBuilder(self.cfg)
        self.writes: dict[str, list] = {"dram": [], "SP": [], "ACC": []}
        self.W = self.cfg.row_width

    # Helpers ------------------------------------------------------------------------------
    def _base(self, lo: int, hi: int, off_min: int, off_max: int, align: int = 1) -> int | None:
        """A base b (multiple of ``align``) with lo ≤ b + off_min and b + off_max < hi."""
        first = lo - off_min
        last = hi - 1 - off_max
        first = -(-first // align) * align
        if first > last:
            return None
        return first + self.rng.randrange((last - first) // align + 1) * align

    def _stride(self, natural: int, align: int = 1, allow_neg: bool = True) -> int:
        rng = self.rng
        c = rng.random()
        if c < 0.5:
            s = natural
        elif c < 0.65:
            s = 0
        elif c < 0.85:
            s = natural + align * rng.randint(1, 4)
        else:
            s = align * rng.randint(1, 4)
        if allow_neg and rng.random() < 0.15:
            s = -s
        return -(-s // align) * align if s >= 0 else -((-s + align - 1) // align * align)

    def _span(self, base: int, rows: int, stride: int, width: int) -> tuple[int, int]:
        ends = (base, base + (rows - 1) * stride)
        return min(ends), max(ends) + width

    # Executing and recording -----------------------------------------------------------
    def try_emit(self, opcode: Opcode, **fields) -> bool:
        """Execute on the shadow machine; on success, record and emit with derived waits."""
        try:
            ins = Instruction(opcode, Unit(0), fields)
        except Exception:
            return False
        try:
            acc = self.m.execute(ins, 0)
        except (MachineError, RaceError):
            return False
        gran = {"SP": self.W, "ACC": self.W, "dram": self.cfg.col_bytes}
        reads, writes = [], []
        for lst, out, ports in ((acc.reads, reads, acc.ports), (acc.writes, writes, {})):
            for k, (space, idx) in enumerate(lst):
                mem = "DRAM" if space == "dram" else space
                out += [Access(mem, lo, hi, ports.get(k, 0))
                        for lo, hi in _runs(np.asarray(idx), gran[space])]
        for space, idx in acc.writes:
            idx = np.asarray(idx).ravel()
            if idx.size:
                self.writes[space].append((int(idx.min()), int(idx.max()) + 1))
        ins = self.b.emit(opcode, reads=tuple(reads), writes=tuple(writes), **ins.fields)
        if self.rng.random() < 0.2:
            extra = Unit(self.rng.randrange(32))
            self.b.instructions[-1] = ins.replace(wait=ins.wait | extra)
        return True

    def add_random(self) -> None:
        ops = list(_WEIGHTS)
        weights = [_WEIGHTS[o] for o in ops]
        for _ in range(50):
            op = self.rng.choices(ops, weights)[0]
            fields = self.propose(op)
            if fields is None:
                continue
            if op is Opcode.DMA_GATHER and not self._prepare_gather(fields, legal=True):
                continue
            if self.try_emit(op, **fields):
                return

    # Proposals ------------------------------------------------------------------------------
    def propose(self, op: Opcode) -> dict | None:
        """Random fields for ``op``, in range most of the time (the shadow machine decides)."""
        rng, cfg, lay, W = self.rng, self.cfg, self.lay, self.W
        if op in (Opcode.NOP, Opcode.HALT):
            return {}
        if op in (Opcode.DMA_LOAD, Opcode.DMA_STORE, Opcode.DMA_GATHER):
            space = rng.choice((Space.SP, Space.ACC))
            esize = 4 if space is Space.ACC else 1
            rows = 0 if rng.random() < 0.03 else rng.randint(1, 8)
            length = 0 if rng.random() < 0.03 else rng.choice(
                (rng.randint(1, W), W, rng.randint(1, 3 * W), 2 * W))
            bcast = int(op is Opcode.DMA_LOAD and rng.random() < 0.15)
            d_width = esize if bcast else max(1, length) * esize
            d_stride = self._stride(d_width + rng.choice((0, 0, 3, 32)))
            s_stride = self._stride(max(length, 1) + rng.choice((0, 0, W - 1, W)))
            r = max(rows, 1)
            dlo, dhi = self._span(0, r, d_stride, d_width)
            slo, shi = self._span(0, r, s_stride, max(length, 1))
            d_lim = lay.arena if op is Opcode.DMA_STORE else \
                (self.cfg.dram_bytes if rng.random() < 0.2 else lay.arena)
            dram = self._base(0, d_lim, dlo, dhi - 1)
            sram = self._base(*lay.window(space), slo, shi - 1)
            if dram is None or sram is None:
                return None
            f = {"space": space, "dram_addr": dram, "dram_stride": d_stride, "sram_addr": sram,
                 "sram_stride": s_stride, "rows": rows, "len": length}
            if op is Opcode.DMA_LOAD:
                f["bcast"] = bcast
            if op is Opcode.DMA_GATHER:
                f["idx_addr"] = rng.randrange(*lay.window(Space.ACC))
                f["idx_scale"] = rng.choice((0, 1, 4, W, 32, rng.randint(1, 300)))
            return f
        if op is Opcode.GEMM:
            if not cfg.gemm_core:       # no GEMM core: GEMM is illegal (kind "opcode")
                return None
            R, C = cfg.array_rows, cfg.array_cols
            m = 0 if rng.random() < 0.02 else rng.randint(1, 3 * R)
            n = 0 if rng.random() < 0.02 else rng.randint(1, 3 * C)
            k = rng.choice((0, rng.randint(1, 8), rng.randint(1, 40)))
            mb, nb = -(-max(m, 1) // R), -(-max(n, 1) // C)
            a_stride = W * rng.choice((k, k, k + rng.randint(1, 3), 0))
            b_stride = W * rng.choice((k, k, k + rng.randint(1, 3), 0))
            c_stride = W * (n + rng.choice((0, 0, 1, 3))) if mb > 1 else \
                W * rng.choice((n, 0, n + 2))
            sp, acc = lay.window(Space.SP), lay.window(Space.ACC)
            a = self._base(*sp, 0, (mb - 1) * a_stride + max(k, 1) * W - 1, W)
            b = self._base(*sp, 0, (nb - 1) * b_stride + max(k, 1) * W - 1, W)
            c = self._base(*acc, 0, (mb - 1) * c_stride + max(n, 1) * W - 1, W)
            if a is None or b is None or c is None:
                return None
            return {"accumulate": int(rng.random() < 0.4), "m": m, "n": n, "k": k,
                    "a_addr": a, "a_stride": a_stride, "b_addr": b, "b_stride": b_stride,
                    "c_addr": c, "c_stride": c_stride}
        if op is Opcode.PIM_WRGB:
            length = rng.choice((0, rng.randint(1, 64), rng.randint(1, cfg.gbuf_bytes)))
            gb = self._base(0, cfg.gbuf_bytes, 0, max(length, 1) - 1)
            sp = self._base(*lay.window(Space.SP), 0, max(length, 1) - 1)
            if gb is None or sp is None:
                return None
            return {"sram_addr": sp, "gb_addr": gb, "len": length}
        if op is Opcode.PIM_MAC:
            ncols = 0 if rng.random() < 0.03 else rng.randint(1, min(16, cfg.cols_per_row))
            kc = rng.randint(1, max(1, min(4, ncols)))
            nout = -(-max(ncols, 1) // kc)
            return {"accumulate": int(rng.random() < 0.5),
                    "row": rng.randrange(cfg.bank_rows),
                    "col": rng.randint(0, cfg.cols_per_row - max(ncols, 1)),
                    "ncols": ncols, "kc": kc,
                    "gb_chunk": rng.randint(0, cfg.gbuf_chunks - min(kc, max(ncols, 1))),
                    "slot": rng.randint(0, cfg.pim_slots - nout)}
        if op is Opcode.PIM_READ:
            nslots = rng.randint(1, 4)
            slot = rng.randint(0, cfg.pim_slots - nslots)
            addr = self._base(*lay.window(Space.ACC), 0, nslots * cfg.dram_banks - 1)
            if addr is None:
                return None
            return {"slot": slot, "nslots": nslots, "sram_addr": addr}
        if op is Opcode.VLUTLD:
            addr = self._base(*lay.window(Space.ACC), 0, 255, W)
            if addr is None:
                return None
            return {"src1": {"space": Space.ACC, "addr": addr, "stride": 0},
                    "imm": rng.randrange(cfg.lut_tables)}
        if op is Opcode.VTRANS:
            blocks = rng.randint(1, 3)
            span = W * W
            s_str = self._stride(span, W)
            d_str = self._stride(span, W)
            src = self._operand(blocks, s_str, span)
            dst = self._operand(blocks, d_str, span)
            if src is None or dst is None:
                return None
            return {"dst": dst, "src1": src, "rows": blocks}
        # Row-stream vector instructions.
        rows = 0 if rng.random() < 0.03 and op not in _REDUCE else rng.randint(1, 16)
        r = max(rows, 1)
        src1 = self._operand(r, self._stride(W, W), W)
        if op in _REDUCE:
            dst = self._operand(1, W * rng.randint(-2, 2), W)
        else:
            dst = src1 if src1 is not None and rng.random() < 0.2 else \
                self._operand(r, self._stride(W, W), W)
        if src1 is None or dst is None:
            return None
        f = {"dst": dst, "src1": src1, "rows": rows}
        if op in _REDUCE:
            f["horizontal"] = int(rng.random() < 0.5)
            return f
        if op is Opcode.VMASK:
            f.update(imm=rng.randint(-20, 20), mask_a=rng.randint(-3, 3),
                     mask_b=rng.randint(-3, 3))
            return f
        f["shift"] = rng.choice((0, 0, rng.randint(1, 8), rng.randint(0, 63)))
        if op is Opcode.VISQRT:
            return f
        if op is Opcode.VLUT:
            f["imm"] = rng.randrange(cfg.lut_tables)
            return f
        if op is Opcode.VRECIP:
            f["imm"] = rng.choice((rng.randint(0, 1 << 16), rng.randint(0, (1 << 31) - 1)))
            return f
        mode = rng.choice((Src2Mode.VEC, Src2Mode.VEC, Src2Mode.SCALAR, Src2Mode.IMM))
        f["imm"] = rng.choice((rng.randint(-128, 127), rng.randint(-(1 << 31), (1 << 31) - 1)))
        if mode is Src2Mode.IMM:
            f["src2"] = {"mode": mode}
        elif mode is Src2Mode.VEC:
            o = self._operand(r, self._stride(W, W), W)
            if o is None:
                return None
            f["src2"] = {"mode": mode, **o}
        else:
            space = rng.choice((Space.SP, Space.ACC))
            stride = rng.choice((0, 1, rng.randint(-5, 5)))
            lo, hi = self._span(0, r, stride, 1)
            addr = self._base(*lay.window(space), lo, hi - 1)
            if addr is None:
                return None
            f["src2"] = {"mode": mode, "space": space, "addr": addr, "stride": stride}
        return f

    def _operand(self, rows: int, stride: int, width: int) -> dict | None:
        space = self.rng.choice((Space.SP, Space.ACC))
        lo, hi = self._span(0, rows, stride, width)
        addr = self._base(*self.lay.window(space), lo, hi - 1, self.W)
        if addr is None:
            return None
        return {"space": space, "addr": addr, "stride": stride}

    def _set_index(self, addr: int, value: int) -> bool:
        """Two vector instructions that make ACC[addr] (and its row) equal ``value``."""
        row = addr - addr % self.W
        o = {"space": Space.ACC, "addr": row, "stride": 0}
        return (self.try_emit(Opcode.VMUL, dst=o, src1=o, rows=1, shift=0,
                              src2={"mode": Src2Mode.IMM}, imm=0)
                and self.try_emit(Opcode.VADD, dst=o, src1=o, rows=1, shift=0,
                                  src2={"mode": Src2Mode.IMM}, imm=value))

    def _prepare_gather(self, f: dict, *, legal: bool) -> bool:
        """Make the gather's index (ACC[idx_addr]) one that keeps it in range (``legal``) or
        not, setting it with vector instructions when the current value does not serve."""
        cfg, rng = self.cfg, self.rng
        size = 4 if f["space"] is Space.ACC else 1
        rows, length = max(f["rows"], 1), max(f["len"], 1)
        lo, hi = self._span(0, rows, f["dram_stride"], length * size)
        if not legal:
            value = rng.choice((-1, -rng.randint(1, 1 << 20), (1 << 31) - 1))
            f["idx_scale"] = max(1, f["idx_scale"])
            if value > 0:
                f["idx_scale"] = max(f["idx_scale"], 1 << 12)
            return self._set_index(f["idx_addr"], value)
        v = int(self.m.acc[f["idx_addr"]])
        base = f["dram_addr"] + v * f["idx_scale"]
        ok = v >= 0 and base + lo >= 0 and base + hi <= cfg.dram_bytes
        if ok:
            return True
        if rng.random() < 0.5 and v >= 0:
            f["idx_scale"] = 0
            return True
        value = rng.randint(0, 64)
        scale_max = (cfg.dram_bytes - hi - f["dram_addr"]) // max(value, 1)
        if scale_max < 0:
            return False
        f["idx_scale"] = min(f["idx_scale"], scale_max, (1 << 16) - 1)
        return self._set_index(f["idx_addr"], value)

    # Illegal words ---------------------------------------------------------------------
    def illegal_word(self, kind: str) -> int | Instruction | None:
        """One word of ``kind`` that the shadow machine refuses (decode or execute)."""
        rng, cfg = self.rng, self.cfg
        if kind == "opcode":
            valid = {o.value for o in Opcode}
            if not cfg.gemm_core and rng.random() < 0.5:
                # Without a GEMM core a well-formed GEMM is an illegal opcode (at execute).
                f = {"m": rng.randint(0, 8), "n": rng.randint(0, 8), "k": rng.randint(0, 8)}
                return Instruction(Opcode.GEMM, Unit(0), f)
            op = rng.choice([v for v in range(64) if v not in valid])
            body = rng.getrandbits(INSTR_BITS) if rng.random() < 0.5 else 0
            return (body & ~0x3F) | op
        if kind == "reserved":
            op = rng.choice([*_WEIGHTS, Opcode.HALT])
            f = self.propose(op)
            if f is None:
                return None
            try:
                word = Instruction(op, Unit(0), f).encode()
            except Exception:
                return None
            mask = reserved_mask(op)
            bits = [i for i in range(INSTR_BITS) if mask >> i & 1]
            return word | 1 << rng.choice(bits)
        ins = self._mutant(kind)
        if ins is None:
            return None
        word = ins if isinstance(ins, int) else ins.encode()
        try:
            dec = decode(word)
        except DecodeError:
            return word
        # Check on a copy: a mutant that is legal after all must not change the shadow.
        probe = GoldenMachine(self.cfg, check_races=True)
        for name in ("dram", "sp", "acc", "gbuf", "pacc", "lut"):
            getattr(probe, name)[...] = getattr(self.m, name)
        try:
            probe.execute(dec, 0)
        except MachineError:
            return word if isinstance(ins, int) else dec
        except RaceError:
            return None
        return None

    def _mutant(self, kind: str) -> Instruction | int | None:
        """A proposal pushed out of its legal range in the way ``kind`` names."""
        rng, cfg, W = self.rng, self.cfg, self.W
        if kind == "field":
            choice = rng.randrange(7)
            if choice == 0:      # src2 mode 3 does not exist
                op = rng.choice(_ELEMENTWISE)
                f = self.propose(op)
                if f is None:
                    return None
                f["src2"] = {"mode": Src2Mode.IMM}
                off = next(o for name, _, o, _ in leaf_fields(VecInstr) if name == "src2.mode")
                return Instruction(op, Unit(0), f).encode() | 3 << off
            if choice == 1:
                f = self.propose(Opcode.VLUT)
                if f is None:
                    return None
                f["imm"] = rng.choice((cfg.lut_tables, -1, rng.randint(cfg.lut_tables, 1000)))
                return Instruction(Opcode.VLUT, Unit(0), f)
            if choice == 2:
                f = self.propose(Opcode.VRECIP)
                if f is None:
                    return None
                f["imm"] = -rng.randint(1, 1 << 20)
                return Instruction(Opcode.VRECIP, Unit(0), f)
            if choice == 3:
                f = self.propose(Opcode.GEMM)
                if f is None:
                    return None
                f["m"] = max(f["m"], cfg.array_rows + 1)
                f["n"] = max(f["n"], 1)
                f["c_stride"] = W * rng.randint(0, f["n"] - 1) if f["n"] > 1 else 0
                return Instruction(Opcode.GEMM, Unit(0), f)
            if choice == 4:
                f = self.propose(Opcode.PIM_MAC)
                f["ncols"] = max(1, f["ncols"])
                f["kc"] = 0
                return Instruction(Opcode.PIM_MAC, Unit(0), f)
            if choice == 5:
                op = rng.choice(_REDUCE)
                f = self.propose(op)
                if f is None:
                    return None
                f["rows"] = 0
                return Instruction(op, Unit(0), f)
            f = self.propose(Opcode.VLUTLD)
            if f is None:
                return None
            f["src1"] = dict(f["src1"], space=Space.SP)
            return Instruction(Opcode.VLUTLD, Unit(0), f)
        if kind == "misaligned":
            op = rng.choice((*_VEC_ROW, *_REDUCE, Opcode.VTRANS, Opcode.GEMM, Opcode.VLUTLD))
            f = self.propose(op)
            if f is None:
                return None
            off = rng.randint(1, W - 1)
            if op is Opcode.GEMM:
                key = rng.choice(("a_addr", "a_stride", "b_addr", "b_stride", "c_addr",
                                  "c_stride"))
                f[key] += off
                f["m"], f["n"] = max(1, f["m"]), max(1, f["n"])
            else:
                key = rng.choice(("dst", "src1")) if "dst" in f else "src1"
                part = rng.choice(("addr", "stride"))
                f[key] = dict(f[key], **{part: f[key][part] + off})
                if "rows" in f:
                    f["rows"] = max(1, f["rows"])
            try:
                return Instruction(op, Unit(0), f)
            except Exception:
                return None
        if kind == "dram_range":
            op = rng.choice((Opcode.DMA_LOAD, Opcode.DMA_STORE))
            f = self.propose(op)
            if f is None:
                return None
            f["rows"], f["len"] = max(1, f["rows"]), max(1, f["len"])
            if rng.random() < 0.5:
                f["dram_addr"] = cfg.dram_bytes - rng.randint(0, 8)
            else:
                f["rows"] = max(2, f["rows"])
                f["dram_stride"] = -rng.randint(f["dram_addr"] + 1, f["dram_addr"] + 1 << 10) \
                    if rng.random() < 0.5 else cfg.dram_bytes // (f["rows"] - 1) + 1
                if not -(1 << 31) <= f["dram_stride"] < 1 << 31:
                    return None
            return Instruction(op, Unit(0), f)
        if kind == "sram_range":
            op = rng.choice((Opcode.DMA_LOAD, Opcode.DMA_STORE, Opcode.VADD, Opcode.GEMM,
                             Opcode.PIM_READ, Opcode.PIM_WRGB, Opcode.VREDSUM))
            f = self.propose(op)
            if f is None:
                return None
            size = {Space.SP: cfg.sp_bytes, Space.ACC: cfg.acc_elems}
            if op in (Opcode.DMA_LOAD, Opcode.DMA_STORE):
                f["rows"], f["len"] = max(1, f["rows"]), max(1, f["len"])
                f["sram_addr"] = size[f["space"]] - rng.randint(0, f["len"] - 1)
            elif op is Opcode.GEMM:
                f["m"], f["n"] = max(1, f["m"]), max(1, f["n"])
                f["c_addr"] = cfg.acc_elems - W * rng.randint(0, 1)
            elif op is Opcode.PIM_READ:
                f["sram_addr"] = cfg.acc_elems - rng.randint(1, cfg.dram_banks)
            elif op is Opcode.PIM_WRGB:
                f["len"] = max(1, f["len"])
                f["sram_addr"] = cfg.sp_bytes - rng.randint(0, f["len"] - 1)
            else:
                key = "src1" if rng.random() < 0.5 else "dst"
                space = f[key]["space"]
                f[key] = dict(f[key], addr=size[space] - W * rng.randint(0, 1), stride=W)
                f["rows"] = max(1, f["rows"])
            if any(isinstance(v, int) and v >= 1 << 20 for k, v in f.items()
                   if k.endswith("addr")):
                return None
            try:
                return Instruction(op, Unit(0), f)
            except Exception:
                return None
        if kind == "pim_range":
            op = rng.choice((Opcode.PIM_MAC, Opcode.PIM_READ, Opcode.PIM_WRGB))
            f = self.propose(op)
            if f is None:
                return None
            if op is Opcode.PIM_MAC:
                f["ncols"] = max(1, f["ncols"])
                key = rng.choice(("row", "col", "gb_chunk", "slot"))
                limit = {"row": cfg.bank_rows, "col": cfg.cols_per_row,
                         "gb_chunk": cfg.gbuf_chunks, "slot": cfg.pim_slots}[key]
                f[key] = min(limit + rng.randint(0, 3), (1 << 9) - 1 if key != "row" else
                             (1 << 16) - 1)
            elif op is Opcode.PIM_READ:
                f["slot"] = cfg.pim_slots - rng.randint(0, f["nslots"] - 1)
            else:
                f["len"] = max(1, f["len"])
                f["gb_addr"] = cfg.gbuf_bytes - rng.randint(0, f["len"] - 1)
            try:
                return Instruction(op, Unit(0), f)
            except Exception:
                return None
        if kind == "gather_index":
            f = self.propose(Opcode.DMA_GATHER)
            if f is None:
                return None
            f["rows"], f["len"] = max(1, f["rows"]), max(1, f["len"])
            if not self._prepare_gather(f, legal=False):
                return None
            return Instruction(Opcode.DMA_GATHER, Unit(0), f)
        raise ValueError(f"unknown illegal kind {kind!r}")


# -------------------------------------------------------------------------------------------
@dataclass
class Mismatch:
    """One difference between the backend and the golden model."""

    program: FuzzProgram
    what: str

    def __str__(self) -> str:
        return (f"{self.what}\n  program seed {self.program.seed} ({self.program.kind}) at "
                f"{self.program.base:#x}:\n{self.program.listing()}")


class DiffRunner:
    """Runs fuzz programs on ``backend`` and on a golden backend holding the same state.

    ``compare_cycles`` also times every complete run with the golden cycle model and records
    the programs whose RTL cycle count differs (``cycle_mismatches``) without failing them.
    """

    def __init__(self, backend, golden, fuzzer: ProgramFuzzer, *, seed: int,
                 max_cycles: int = 2_000_000, compare_cycles: bool = False):
        self.backend, self.golden, self.fz = backend, golden, fuzzer
        self.seed = seed
        self.compare_cycles = compare_cycles
        self.model = SystemModel(fuzzer.cfg)
        self.max_cycles = max_cycles
        self.mismatches: list[Mismatch] = []
        self.cycle_mismatches: list[tuple[int, int, int]] = []   # (seed, rtl, model)
        self.programs = 0
        self.errors: dict[str, int] = {}

    def setup(self) -> None:
        """Load the arena's random data and fill the SRAM windows (on both)."""
        data = self.fz.arena_data(self.seed)
        self.backend.load_dram(0, data)
        self.golden.load_dram(0, data)
        self.run_one(self.fz.fill_program())

    def run_one(self, prog: FuzzProgram) -> None:
        self.programs += 1
        for be in (self.backend, self.golden):
            be.load_dram(prog.base, prog.binary)
        # The RTL first: the golden cycle model needs the cycle its START was written in.
        got = self.backend.run(prog.base, max_cycles=self.max_cycles)
        want = self._golden_run(prog.base, got.start_cycle)
        if prog.kind == "valid" and not want.ok:
            raise AssertionError(f"the fuzzer made an invalid program: {want.message}\n"
                                 f"{prog.listing()}")
        self.errors[want.error.name] = self.errors.get(want.error.name, 0) + 1
        if (got.status, got.error, got.error_pc) != (want.status, want.error, want.error_pc):
            self.mismatches.append(Mismatch(prog, (
                f"status {got.status} {got.error.name} pc {got.error_pc:#x}, golden "
                f"{want.status} {want.error.name} pc {want.error_pc:#x} ({want.message})")))
            return
        conflicts = got.counters.get("raw", {}).get("sram_conflicts", 0)
        if conflicts:
            self.mismatches.append(Mismatch(prog, (
                f"{conflicts} cycles with two units on one SRAM bank port (sram_conflicts) in "
                f"a program the golden model accepts")))
            return
        if self.compare_cycles and got.cycles != want.cycles:
            self.cycle_mismatches.append((prog.seed, got.cycles, want.cycles))
        self._compare_writes(prog)

    def _golden_run(self, base: int, start_cycle: int | None) -> BackendRun:
        """The golden machine's run and, with ``compare_cycles``, the system model's cycles for
        it (one model for the whole session: open rows and the refresh phase carry over)."""
        program = self.golden.machine.dram.copy() if self.compare_cycles else None
        res = self.golden.machine.run(base, max_instructions=100_000, trace=True)
        cycles = 0
        if self.compare_cycles and start_cycle is not None:
            cycles = self.model.run(res, start_cycle=start_cycle, base=base,
                                    program=program).cycles
        return BackendRun(res.status, cycles, res.error, res.error_pc, res.message,
                          cycles_source="model")

    def _compare_writes(self, prog: FuzzProgram) -> None:
        g = self.golden.machine
        for lo, hi in _merge(prog.writes.get("dram", [])):
            got = np.frombuffer(self.backend.read_dram(lo, hi - lo), np.uint8)
            self._diff(prog, "DRAM", lo, got, g.dram[lo:hi])
        for lo, hi in _merge(prog.writes.get("SP", [])):
            self._diff(prog, "SP", lo, _read_sram(self.backend, "sp", lo, hi - lo), g.sp[lo:hi])
        for lo, hi in _merge(prog.writes.get("ACC", [])):
            self._diff(prog, "ACC", lo, _read_sram(self.backend, "acc", lo, hi - lo),
                       g.acc[lo:hi])

    def _diff(self, prog, mem, lo, got, want) -> None:
        bad = np.flatnonzero(np.asarray(got) != np.asarray(want))
        if bad.size:
            i = int(bad[0])
            self.mismatches.append(Mismatch(prog, (
                f"{mem}[{lo + i:#x}] = {int(got[i])}, golden {int(want[i])} "
                f"({bad.size} elements differ in {mem}[{lo:#x}:{lo + len(got):#x}])")))

    def compare_all(self, prog: FuzzProgram | None = None) -> None:
        """Every element of DRAM, SP and ACC."""
        st = self.backend.state()
        g = self.golden.machine
        last = prog or FuzzProgram(self.seed, "checkpoint", [], 0)
        for mem, want in (("dram", g.dram), ("sp", g.sp), ("acc", g.acc)):
            self._diff(last, mem.upper(), 0, st[mem], want)

    def compare_windows(self, prog: FuzzProgram | None = None) -> None:
        """The DRAM arena and program area and the SRAM windows: everything a program may
        write, at a tenth of the cost of :meth:`compare_all`."""
        lay, g = self.fz.layout, self.golden.machine
        last = prog or FuzzProgram(self.seed, "checkpoint", [], 0)
        hi = lay.prog_base + lay.prog_area
        got = np.frombuffer(self.backend.read_dram(0, hi), np.uint8)
        self._diff(last, "DRAM", 0, got, g.dram[:hi])
        for name, space, mem in (("SP", Space.SP, g.sp), ("ACC", Space.ACC, g.acc)):
            lo, hi = lay.window(space)
            self._diff(last, name, lo, _read_sram(self.backend, name.lower(), lo, hi - lo),
                       mem[lo:hi])

    def run(self, n: int, *, illegal_share: float = 0.0, checkpoint_every: int = 0,
            fail_fast: bool = True, final_compare: str = "all") -> None:
        """``n`` programs (a share of them illegal). Every ``checkpoint_every`` programs the
        windows are compared (:meth:`compare_windows`); at the end ``final_compare`` says what:
        ``"all"`` (:meth:`compare_all`), ``"windows"`` or ``"none"`` (each program's writes
        are always compared)."""
        rng = random.Random(self.seed)
        prog = None
        for i in range(n):
            s = rng.getrandbits(31)
            if rng.random() < illegal_share:
                prog = self.fz.illegal(s, self.golden.machine)
            else:
                prog = self.fz.valid(s, self.golden.machine)
            self.run_one(prog)
            if fail_fast and self.mismatches:
                return
            if checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < n:
                self.compare_windows(prog)
                if fail_fast and self.mismatches:
                    return
        if final_compare == "all":
            self.compare_all(prog)
        elif final_compare == "windows":
            self.compare_windows(prog)


def _read_sram(backend, mem: str, lo: int, n: int) -> np.ndarray:
    """SRAM elements through an RTL backend's bus reads, or a golden backend's machine."""
    if hasattr(backend, f"read_{mem}"):
        return getattr(backend, f"read_{mem}")(lo, n)
    return getattr(backend.machine, mem)[lo:lo + n]


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]
