"""Golden ISA simulator: executes a binary program on NumPy state with exact integer semantics.

This is the executable specification of every instruction (docs/isa.md is generated from the same
:data:`llmaccel.hw.isa.OPCODES`). Each instruction is checked completely before it changes any
state, so an illegal instruction or an out-of-range access stops the machine with an
:class:`~llmaccel.hw.isa.ErrorCode` and the failing program counter, leaving every earlier
instruction's effects and nothing of the failing one.

With ``check_races=True`` the simulator also proves the program *race-free*: every pair of
instructions on different units that touch the same SRAM element or DRAM byte (at least one
writing) must be ordered by wait masks (directly or transitively). The RTL executes units in
parallel, so a racy program may legitimately give different results there; the checker turns such
compiler bugs into a clear error here instead (:class:`RaceError`). The same holds for the SRAM
banks' ports (``AccelConfig.sp_banks``/``acc_banks``, hw/sram.py): two instructions on different
units that use one bank port — both read one bank through the same read port (each operand's
port is hw/accelerator.py's ``read_port``), or both write one bank — must be ordered
(:class:`BankConflictError`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.accelerator import read_port
from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import (
    INSTR_BYTES,
    DecodeError,
    ErrorCode,
    Instruction,
    Opcode,
    Space,
    Src2Mode,
    Unit,
    decode,
)

from . import numerics as nx

__all__ = ["BankConflictError", "GoldenMachine", "MachineError", "RaceError", "RunResult",
           "Stats"]

UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)
_UNIT_INDEX = {u: i for i, u in enumerate(UNITS)}
_TYPE_BITS = {Space.SP: 8, Space.ACC: 32}


class MachineError(Exception):
    """An instruction the machine refuses: ``code`` (ErrorCode), ``pc`` and a message."""

    def __init__(self, code: ErrorCode, pc: int, message: str):
        super().__init__(f"{code.name} at pc {pc:#x}: {message}")
        self.code = code
        self.pc = pc
        self.message = message


class RaceError(AssertionError):
    """The program is not race-free (a missing wait between two units)."""


class BankConflictError(RaceError):
    """Two units may use one SRAM bank port at the same time (a missing wait between them)."""


@dataclass
class Stats:
    """Counters of one run; the RTL's performance counters count the same events."""

    instructions: int = 0
    per_unit: dict = field(default_factory=lambda: {u.name: 0 for u in UNITS} | {"CTRL": 0})
    gemm_macs: int = 0
    pim_macs: int = 0
    pim_cols: int = 0
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    vec_rows: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """Outcome of :meth:`GoldenMachine.run`."""

    status: str                 # "done" or "error"
    error: ErrorCode = ErrorCode.NONE
    error_pc: int = 0
    message: str = ""
    pc: int = 0
    stats: Stats = field(default_factory=Stats)
    trace: list = field(default_factory=list)  # (pc, Instruction) per instruction, when tracing
    gather_bases: dict = field(default_factory=dict)  # trace index → DMA_GATHER's DRAM base

    @property
    def ok(self) -> bool:
        return self.status == "done"


class _Access:
    """Element indices an instruction reads and writes, per space (for race checking), and the
    SRAM bank read port of each SRAM read (``ports``: index in ``reads`` → port; 0 if absent)."""

    __slots__ = ("ports", "reads", "writes")

    def __init__(self):
        self.reads: list[tuple[str, np.ndarray]] = []
        self.writes: list[tuple[str, np.ndarray]] = []
        self.ports: dict[int, int] = {}

    def read(self, space: str, idx, client: str) -> None:
        """Record an SRAM read by the accelerator's read client ``client`` (its bank port is
        hw/accelerator.py's ``read_port``)."""
        self.reads.append((space, idx))
        self.ports[len(self.reads) - 1] = read_port(Space[space], client)


class GoldenMachine:
    """NumPy machine state plus the instruction semantics.

    State: ``dram`` (uint8, flat byte addresses), ``sp`` (int8), ``acc`` (int32), ``gbuf`` (int8),
    ``pacc`` (int32, banks × slots), ``lut`` (int16, tables × 256). The state persists across
    :meth:`run` calls, as it does in the hardware between host-started programs.
    """

    def __init__(self, cfg: AccelConfig, *, check_races: bool = True):
        self.cfg = cfg
        self.check_races = check_races
        self.dram = np.zeros(cfg.dram_bytes, dtype=np.uint8)
        self.sp = np.zeros(cfg.sp_bytes, dtype=np.int8)
        self.acc = np.zeros(cfg.acc_elems, dtype=np.int32)
        self.gbuf = np.zeros(cfg.gbuf_bytes, dtype=np.int8)
        self.pacc = np.zeros((cfg.dram_banks, cfg.pim_slots), dtype=np.int32)
        self.lut = np.zeros((cfg.lut_tables, 256), dtype=np.int16)
        self._races: _RaceChecker | None = None
        self.last_gather_base = 0

    # ---------------------------------------------------------------------------------------
    # Host access
    def load_dram(self, addr: int, data: bytes | np.ndarray) -> None:
        data = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) \
            else data.astype(np.uint8, copy=False).ravel()
        if addr < 0 or addr + data.size > self.dram.size:
            raise ValueError(f"image of {data.size} bytes at {addr:#x} does not fit the "
                             f"{self.dram.size:#x}-byte DRAM")
        self.dram[addr:addr + data.size] = data

    def read_dram(self, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > self.dram.size:
            raise ValueError(f"read of {n} bytes at {addr:#x} is outside DRAM")
        return self.dram[addr:addr + n].tobytes()

    def state(self) -> dict[str, np.ndarray]:
        """Copies of every architectural memory, for comparison with an RTL backend."""
        return {"dram": self.dram.copy(), "sp": self.sp.copy(), "acc": self.acc.copy(),
                "gbuf": self.gbuf.copy(), "pacc": self.pacc.copy(), "lut": self.lut.copy()}

    # ---------------------------------------------------------------------------------------
    def run(self, base: int = 0, *, max_instructions: int = 1_000_000,
            trace: bool = False) -> RunResult:
        """Execute from byte address ``base`` until HALT, an error, or the watchdog."""
        res = RunResult(status="error", pc=base)
        stats = res.stats
        pc = base
        races = None
        if self.check_races:
            if self._races is None:
                self._races = _RaceChecker(self.cfg)
            races = self._races
            races.reset()
        while True:
            if stats.instructions >= max_instructions:
                res.error, res.error_pc = ErrorCode.WATCHDOG, pc
                res.message = f"no HALT within {max_instructions} instructions"
                break
            if pc < 0 or pc + INSTR_BYTES > self.dram.size or pc % INSTR_BYTES:
                res.error, res.error_pc = ErrorCode.PC_RANGE, pc
                res.message = f"program counter {pc:#x} is not an instruction address in DRAM"
                break
            try:
                ins = decode(self.dram[pc:pc + INSTR_BYTES].tobytes())
            except DecodeError as e:
                res.error, res.error_pc, res.message = e.code, pc, str(e)
                break
            if trace:
                res.trace.append((pc, ins))
            try:
                acc = self.execute(ins, pc)
            except MachineError as e:
                res.error, res.error_pc, res.message = e.code, e.pc, e.message
                break
            if trace and ins.opcode is Opcode.DMA_GATHER:
                res.gather_bases[len(res.trace) - 1] = self.last_gather_base
            if races is not None:
                races.record(ins, pc, acc)
            stats.instructions += 1
            unit = ins.unit
            stats.per_unit[unit.name if unit is not None else "CTRL"] += 1
            self._count(ins, stats)
            pc += INSTR_BYTES
            if ins.opcode is Opcode.HALT:
                res.status = "done"
                break
        res.pc = pc
        return res

    # ---------------------------------------------------------------------------------------
    def _count(self, ins: Instruction, st: Stats) -> None:
        op = ins.opcode
        cfg = self.cfg
        if op is Opcode.GEMM:
            st.gemm_macs += ins.m * ins.n * ins.k
        elif op is Opcode.PIM_MAC:
            st.pim_macs += ins.ncols * cfg.dram_banks * cfg.col_bytes
            st.pim_cols += ins.ncols
        elif op in (Opcode.DMA_LOAD, Opcode.DMA_GATHER):
            size = 4 if ins.space is Space.ACC else 1
            per_row = size if ins.bcast else size * ins.len
            st.dram_read_bytes += ins.rows * per_row if ins.len else 0
        elif op is Opcode.DMA_STORE:
            size = 4 if ins.space is Space.ACC else 1
            st.dram_write_bytes += ins.rows * ins.len * size
        elif ins.unit is Unit.VEC:
            st.vec_rows += ins.rows

    # ---------------------------------------------------------------------------------------
    # Semantics
    def execute(self, ins: Instruction, pc: int = 0) -> _Access:
        """Check and execute one instruction; raise MachineError before changing any state."""
        op = ins.opcode
        acc = _Access()
        if op in (Opcode.NOP, Opcode.HALT):
            return acc
        handler = getattr(self, f"_exec_{op.name.lower()}", None)
        if handler is None:
            handler = self._exec_vec
        handler(ins, pc, acc)
        return acc

    def _mem(self, space: Space) -> np.ndarray:
        return self.sp if space is Space.SP else self.acc

    def _sram_check(self, space: Space, idx_min: int, idx_max: int, pc: int, what: str):
        size = self._mem(space).size
        if idx_min < 0 or idx_max >= size:
            raise MachineError(ErrorCode.SRAM_RANGE, pc,
                               f"{what} touches {space.name} elements {idx_min}..{idx_max}, "
                               f"outside 0..{size - 1}")

    def _align_check(self, pc: int, **vals: int):
        w = self.cfg.row_width
        for name, v in vals.items():
            if v % w:
                raise MachineError(ErrorCode.MISALIGNED, pc,
                                   f"{name} = {v} is not a multiple of the row width {w}")

    # DMA -----------------------------------------------------------------------------------
    def _dma_pattern(self, ins: Instruction, dram_base: int, pc: int, load: bool):
        cfg = self.cfg
        size = 4 if ins.space is Space.ACC else 1
        rows, n = ins.rows, ins.len
        if rows == 0 or n == 0:
            return None
        r = np.arange(rows, dtype=np.int64)[:, None]
        e = np.arange(n, dtype=np.int64)[None, :]
        # Range check from the corners before building anything large.
        ends = [dram_base, dram_base + (rows - 1) * ins.dram_stride]
        elem_span = 0 if (load and ins.bcast) else (n - 1) * size
        lo_d = min(ends)
        hi_d = max(ends) + elem_span + size - 1
        if lo_d < 0 or hi_d >= cfg.dram_bytes:
            raise MachineError(ErrorCode.DRAM_RANGE, pc,
                               f"{ins.opcode.name} touches DRAM bytes {lo_d:#x}..{hi_d:#x}, "
                               f"outside 0..{cfg.dram_bytes - 1:#x}")
        s_ends = [ins.sram_addr, ins.sram_addr + (rows - 1) * ins.sram_stride]
        self._sram_check(ins.space, min(s_ends), max(s_ends) + n - 1, pc, ins.opcode.name)
        e_d = np.zeros_like(e) if (load and ins.bcast) else e
        dram_idx = dram_base + r * ins.dram_stride + e_d * size          # (rows, n)
        sram_idx = ins.sram_addr + r * ins.sram_stride + e                 # (rows, n)
        return dram_idx.ravel(), sram_idx.ravel(), size

    def _dram_read_elems(self, idx: np.ndarray, size: int) -> np.ndarray:
        if size == 1:
            return self.dram[idx].view(np.int8).astype(np.int64)
        b = self.dram[idx[:, None] + np.arange(4)]
        return b.copy().view("<i4").ravel().astype(np.int64)

    def _dram_bytes_of(self, idx: np.ndarray, size: int) -> np.ndarray:
        return (idx[:, None] + np.arange(size)).ravel() if size > 1 else idx

    def _exec_dma_load(self, ins, pc, acc, base=None):
        pat = self._dma_pattern(ins, ins.dram_addr if base is None else base, pc, load=True)
        if pat is None:
            return
        didx, sidx, size = pat
        vals = self._dram_read_elems(didx, size)
        mem = self._mem(ins.space)
        _scatter_last(mem, sidx, vals.astype(mem.dtype))
        acc.reads.append(("dram", self._dram_bytes_of(didx, size)))
        acc.writes.append((ins.space.name, sidx))

    def _exec_dma_gather(self, ins, pc, acc):
        self._sram_check(Space.ACC, ins.idx_addr, ins.idx_addr, pc, "DMA_GATHER index")
        index = int(self.acc[ins.idx_addr])
        acc.read("ACC", np.array([ins.idx_addr]), "load")
        if index < 0:
            raise MachineError(ErrorCode.DRAM_RANGE, pc, f"DMA_GATHER index {index} is negative")
        self.last_gather_base = ins.dram_addr + index * ins.idx_scale
        self._exec_dma_load(ins, pc, acc, base=self.last_gather_base)

    def _exec_dma_store(self, ins, pc, acc):
        pat = self._dma_pattern(ins, ins.dram_addr, pc, load=False)
        if pat is None:
            return
        didx, sidx, size = pat
        vals = self._mem(ins.space)[sidx]
        if size == 1:
            data = vals.view(np.uint8)
            _scatter_last(self.dram, didx, data)
            bidx = didx
        else:
            data = vals.astype("<i4").view(np.uint8)           # 4 bytes per element
            bidx = (didx[:, None] + np.arange(4)).ravel()
            _scatter_last(self.dram, bidx, data)
        acc.read(ins.space.name, sidx, "store")
        acc.writes.append(("dram", bidx))

    # GEMM ----------------------------------------------------------------------------------
    def _exec_gemm(self, ins, pc, acc):
        cfg = self.cfg
        if not cfg.gemm_core:
            raise MachineError(ErrorCode.ILLEGAL_OPCODE, pc,
                               f"GEMM: config {cfg.name!r} has no GEMM core (gemm_core=False)")
        R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
        self._align_check(pc, a_addr=ins.a_addr, a_stride=ins.a_stride, b_addr=ins.b_addr,
                          b_stride=ins.b_stride, c_addr=ins.c_addr, c_stride=ins.c_stride)
        m, n, k = ins.m, ins.n, ins.k
        if m == 0 or n == 0:
            return
        mb, nb = -(-m // R), -(-n // C)
        if mb > 1 and ins.c_stride < n * W:
            # The array writes fold by fold; overlapping result blocks would make the result
            # depend on that order, so the ISA forbids them.
            raise MachineError(ErrorCode.ILLEGAL_FIELD, pc,
                               f"GEMM result blocks overlap: c_stride {ins.c_stride} < n·W "
                               f"{n * W} with {mb} row blocks")
        if k:
            self._sram_check(Space.SP, ins.a_addr,
                             ins.a_addr + (mb - 1) * ins.a_stride + k * W - 1, pc, "GEMM A")
            self._sram_check(Space.SP, ins.b_addr,
                             ins.b_addr + (nb - 1) * ins.b_stride + k * W - 1, pc, "GEMM B")
        self._sram_check(Space.ACC, ins.c_addr,
                         ins.c_addr + (mb - 1) * ins.c_stride + n * W - 1, pc, "GEMM C")
        i = np.arange(m, dtype=np.int64)
        j = np.arange(n, dtype=np.int64)
        kk = np.arange(k, dtype=np.int64)
        a_idx = ins.a_addr + (i // R)[:, None] * ins.a_stride + kk[None, :] * W + (i % R)[:, None]
        b_idx = ins.b_addr + (j // C)[None, :] * ins.b_stride + kk[:, None] * W + (j % C)[None, :]
        c_idx = ins.c_addr + (i // R)[:, None] * ins.c_stride + j[None, :] * W + (i % R)[:, None]
        a = self.sp[a_idx].astype(np.int64)
        b = self.sp[b_idx].astype(np.int64)
        prod = a @ b
        if ins.accumulate:
            prod = prod + self.acc[c_idx].astype(np.int64)
        self.acc[c_idx] = _wrap32(prod)
        acc.read("SP", a_idx.ravel(), "gemm_a")
        acc.read("SP", b_idx.ravel(), "gemm_b")
        if ins.accumulate:
            acc.read("ACC", c_idx.ravel(), "gemm")
        acc.writes.append(("ACC", c_idx.ravel()))

    # PIM -----------------------------------------------------------------------------------
    def _exec_pim_wrgb(self, ins, pc, acc):
        if ins.len == 0:
            return
        self._sram_check(Space.SP, ins.sram_addr, ins.sram_addr + ins.len - 1, pc, "PIM_WRGB")
        if ins.gb_addr + ins.len > self.cfg.gbuf_bytes:
            raise MachineError(ErrorCode.PIM_RANGE, pc,
                               f"PIM_WRGB writes global-buffer bytes {ins.gb_addr}.."
                               f"{ins.gb_addr + ins.len - 1}, beyond {self.cfg.gbuf_bytes}")
        self.gbuf[ins.gb_addr:ins.gb_addr + ins.len] = \
            self.sp[ins.sram_addr:ins.sram_addr + ins.len]
        acc.read("SP", np.arange(ins.sram_addr, ins.sram_addr + ins.len), "pim")

    def _exec_pim_mac(self, ins, pc, acc):
        cfg = self.cfg
        ncols, kc = ins.ncols, ins.kc
        if ncols == 0:
            return
        if kc == 0:
            raise MachineError(ErrorCode.ILLEGAL_FIELD, pc, "PIM_MAC kc must be at least 1")
        nout = -(-ncols // kc)
        problems = []
        if ins.row >= cfg.bank_rows:
            problems.append(f"row {ins.row} ≥ bank_rows {cfg.bank_rows}")
        if ins.col + ncols > cfg.cols_per_row:
            problems.append(f"columns {ins.col}..{ins.col + ncols - 1} beyond "
                            f"{cfg.cols_per_row} per row")
        if ins.gb_chunk + min(kc, ncols) > cfg.gbuf_chunks:
            problems.append(f"global-buffer chunks {ins.gb_chunk}..{ins.gb_chunk + kc - 1} "
                            f"beyond {cfg.gbuf_chunks}")
        if ins.slot + nout > cfg.pim_slots:
            problems.append(f"slots {ins.slot}..{ins.slot + nout - 1} beyond {cfg.pim_slots}")
        if problems:
            raise MachineError(ErrorCode.PIM_RANGE, pc, "PIM_MAC " + "; ".join(problems))
        view = self.dram.reshape(cfg.bank_rows, cfg.dram_banks, cfg.cols_per_row, cfg.col_bytes)
        w = view[ins.row, :, ins.col:ins.col + ncols, :].view(np.int8).astype(np.int64)
        j = np.arange(ncols)
        chunks = self.gbuf.reshape(cfg.gbuf_chunks, cfg.col_bytes).astype(np.int64)
        g = chunks[ins.gb_chunk + j % kc]                           # (ncols, 32)
        d = np.einsum("bjx,jx->bj", w, g)                           # (banks, ncols)
        # Sum the columns of each output; pad the last group to kc columns.
        pad = nout * kc - ncols
        d = np.pad(d, ((0, 0), (0, pad))).reshape(cfg.dram_banks, nout, kc).sum(axis=2)
        sl = slice(ins.slot, ins.slot + nout)
        if ins.accumulate:
            d = d + self.pacc[:, sl].astype(np.int64)
        self.pacc[:, sl] = _wrap32(d)
        rows = (ins.row * cfg.dram_banks + np.arange(cfg.dram_banks)) * cfg.cols_per_row
        cols = (rows[:, None] + ins.col + j[None, :]) * cfg.col_bytes
        acc.reads.append(("dram", (cols.ravel()[:, None] + np.arange(cfg.col_bytes)).ravel()))

    def _exec_pim_read(self, ins, pc, acc):
        cfg = self.cfg
        if ins.nslots == 0:
            return
        if ins.slot + ins.nslots > cfg.pim_slots:
            raise MachineError(ErrorCode.PIM_RANGE, pc,
                               f"PIM_READ slots {ins.slot}..{ins.slot + ins.nslots - 1} beyond "
                               f"{cfg.pim_slots}")
        n = ins.nslots * cfg.dram_banks
        self._sram_check(Space.ACC, ins.sram_addr, ins.sram_addr + n - 1, pc, "PIM_READ")
        self.acc[ins.sram_addr:ins.sram_addr + n] = \
            self.pacc[:, ins.slot:ins.slot + ins.nslots].T.ravel()
        acc.writes.append(("ACC", np.arange(ins.sram_addr, ins.sram_addr + n)))

    # Vector --------------------------------------------------------------------------------
    def _rows_idx(self, opnd: dict, rows: int, pc: int, what: str) -> np.ndarray:
        """Element indices (rows, W) of a row-stream operand, checked."""
        W = self.cfg.row_width
        self._align_check(pc, **{f"{what}.addr": opnd["addr"], f"{what}.stride": opnd["stride"]})
        ends = [opnd["addr"], opnd["addr"] + (rows - 1) * opnd["stride"]]
        self._sram_check(opnd["space"], min(ends), max(ends) + W - 1, pc, what)
        r = np.arange(rows, dtype=np.int64)[:, None]
        return opnd["addr"] + r * opnd["stride"] + np.arange(W)[None, :]

    def _exec_vec(self, ins, pc, acc):
        cfg = self.cfg
        W = cfg.row_width
        op = ins.opcode
        rows = ins.rows
        if op is Opcode.VLUTLD:
            return self._exec_vlutld(ins, pc, acc)
        if rows == 0:
            if op in (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX):
                raise MachineError(ErrorCode.ILLEGAL_FIELD, pc, f"{op.name} needs rows ≥ 1")
            return
        dst, src1 = ins.dst, ins.src1
        bits = _TYPE_BITS[dst["space"]]
        dmem = self._mem(dst["space"])
        if op is Opcode.VTRANS:
            s_idx = self._block_idx(src1, rows, pc, "src1")
            d_idx = self._block_idx(dst, rows, pc, "dst")
            a = self._mem(src1["space"])[s_idx].astype(np.int64).reshape(rows, W, W)
            out = nx.sat(a.transpose(0, 2, 1), bits).reshape(rows * W, W)
            self._vec_write(dmem, d_idx, out, dst, [(src1["space"].name, s_idx)], acc)
            return
        s1 = self._rows_idx(src1, rows, pc, "src1")
        a = self._mem(src1["space"])[s1].astype(np.int64)
        reads = [(src1["space"].name, s1)]
        if op in (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX):
            d_idx = self._rows_idx(dst, 1, pc, "dst")
            if op is Opcode.VREDSUM:
                v = nx.reduce_sum(a, None) if ins.horizontal else nx.reduce_sum(a, 0)
            elif op is Opcode.VREDMAX:
                v = nx.reduce_max(a, None) if ins.horizontal else nx.reduce_max(a, 0)
            else:
                v = nx.reduce_argmax(a.ravel(), 0) if ins.horizontal else nx.reduce_argmax(a, 0)
            out = nx.sat(np.broadcast_to(v, (1, W)), bits)
            self._vec_write(dmem, d_idx, out, dst, reads, acc)
            return
        d_idx = self._rows_idx(dst, rows, pc, "dst")
        if op is Opcode.VMASK:
            r = np.arange(rows)[:, None]
            lanes = np.arange(W)[None, :]
            out = nx.mask_affine(a, r, lanes, ins.mask_a, ins.mask_b, ins.imm, bits)
        elif op is Opcode.VLUT:
            if not 0 <= ins.imm < cfg.lut_tables:
                raise MachineError(ErrorCode.ILLEGAL_FIELD, pc,
                                   f"VLUT table {ins.imm} is not in 0..{cfg.lut_tables - 1}")
            t = nx.lut_lookup(self.lut[ins.imm], a)
            out = nx.sat(nx.rshift_round(t, ins.shift), bits)
        elif op is Opcode.VRECIP:
            if ins.imm < 0:
                raise MachineError(ErrorCode.ILLEGAL_FIELD, pc,
                                   f"VRECIP numerator {ins.imm} is negative")
            out = nx.sat(nx.rshift_round(nx.recip(a, ins.imm), ins.shift), bits)
        elif op is Opcode.VISQRT:
            out = nx.sat(nx.rshift_round(nx.isqrt(a), ins.shift), bits)
        else:
            b, b_reads = self._src2(ins, rows, pc)
            reads += b_reads
            out = nx.valu(op.name[1:].lower(), a, b, ins.shift, bits)
        self._vec_write(dmem, d_idx, out, dst, reads, acc)

    def _block_idx(self, opnd: dict, blocks: int, pc: int, what: str) -> np.ndarray:
        """Element indices (blocks·W, W) of ``blocks`` W×W blocks: block q's rows start at
        ``addr + q·stride`` and are consecutive."""
        W = self.cfg.row_width
        self._align_check(pc, **{f"{what}.addr": opnd["addr"], f"{what}.stride": opnd["stride"]})
        ends = [opnd["addr"], opnd["addr"] + (blocks - 1) * opnd["stride"]]
        self._sram_check(opnd["space"], min(ends), max(ends) + W * W - 1, pc, what)
        q = np.arange(blocks, dtype=np.int64)[:, None, None]
        r = np.arange(W, dtype=np.int64)[None, :, None]
        c = np.arange(W, dtype=np.int64)[None, None, :]
        return (opnd["addr"] + q * opnd["stride"] + r * W + c).reshape(blocks * W, W)

    def _src2(self, ins, rows, pc):
        src2 = ins.src2
        mode = src2["mode"]
        if mode is Src2Mode.IMM:
            return np.int64(ins.imm), []
        if mode is Src2Mode.VEC:
            idx = self._rows_idx(src2, rows, pc, "src2")
            return self._mem(src2["space"])[idx].astype(np.int64), [(src2["space"].name, idx)]
        if mode is Src2Mode.SCALAR:
            ends = [src2["addr"], src2["addr"] + (rows - 1) * src2["stride"]]
            self._sram_check(src2["space"], min(ends), max(ends), pc, "src2")
            idx = src2["addr"] + np.arange(rows, dtype=np.int64) * src2["stride"]
            vals = self._mem(src2["space"])[idx].astype(np.int64)[:, None]
            # (rows, 1): one element read per row, so the same-instruction overlap check sees
            # which row reads it.
            return vals, [(src2["space"].name, idx[:, None])]
        raise MachineError(ErrorCode.ILLEGAL_FIELD, pc, f"src2 mode {mode!r} is reserved")

    def _vec_write(self, dmem, d_idx, out, dst, reads, acc):
        """Write the result rows; record accesses. ``reads`` lists (space, (rows, W) indices)."""
        flat_d = d_idx.ravel()
        if self.check_races:
            _check_intra_overlap(d_idx, dst["space"].name, reads)
        _scatter_last(dmem, flat_d, out.ravel().astype(dmem.dtype))
        for k, (s, i) in enumerate(reads):     # src1, then src2's
            acc.read(s, np.asarray(i).ravel(), "vec2" if k else "vec1")
        acc.writes.append((dst["space"].name, flat_d))

    def _exec_vlutld(self, ins, pc, acc):
        src1 = ins.src1
        if src1["space"] is not Space.ACC:
            raise MachineError(ErrorCode.ILLEGAL_FIELD, pc, "VLUTLD reads the accumulator")
        if not 0 <= ins.imm < self.cfg.lut_tables:
            raise MachineError(ErrorCode.ILLEGAL_FIELD, pc,
                               f"VLUTLD table {ins.imm} is not in 0..{self.cfg.lut_tables - 1}")
        self._align_check(pc, **{"src1.addr": src1["addr"]})
        self._sram_check(Space.ACC, src1["addr"], src1["addr"] + 255, pc, "VLUTLD")
        self.lut[ins.imm] = nx.sat(self.acc[src1["addr"]:src1["addr"] + 256], 16)
        acc.read("ACC", np.arange(src1["addr"], src1["addr"] + 256), "vec1")


def _wrap32(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _scatter_last(mem: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> None:
    """``mem[idx] = vals`` where, for repeated indices, the last write wins (program order)."""
    idx = np.asarray(idx).ravel()
    vals = np.asarray(vals).ravel()
    if idx.size > 1 and np.unique(idx).size != idx.size:
        rev = idx[::-1]
        _, first = np.unique(rev, return_index=True)
        keep = idx.size - 1 - first
        idx, vals = idx[keep], vals[keep]
    mem[idx] = vals


def _check_intra_overlap(d_idx: np.ndarray, dspace: str, reads) -> None:
    """Rows execute in order; a row must not read what an earlier row of the same instruction
    wrote (the pipelined RTL would read the old value). Flag it as a race."""
    d_flat = d_idx.ravel()
    d_rows = np.repeat(np.arange(d_idx.shape[0]), d_idx.shape[1])
    order = np.argsort(d_flat, kind="stable")
    ds, dr = d_flat[order], d_rows[order]
    uniq, starts = np.unique(ds, return_index=True)
    first_row = dr[starts]
    for space, idx in reads:
        idx = np.asarray(idx)
        if space != dspace or idx.ndim != 2 or idx.shape[0] < 2:
            continue
        r_rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        flat = idx.ravel()
        pos = np.clip(np.searchsorted(uniq, flat), 0, uniq.size - 1)
        hit = uniq[pos] == flat
        bad = hit & (first_row[pos] < r_rows)
        if bad.any():
            k = int(np.argmax(bad))
            raise RaceError(f"row {int(r_rows[k])} reads {space} element {int(flat[k])} that "
                            f"row {int(first_row[pos[k]])} of the same instruction writes")


class _RaceChecker:
    """Vector-clock race detection over SP, ACC and DRAM.

    For each instruction I on unit u, ``vc[v]`` is the program index of the latest instruction of
    unit v known to have completed before I starts (through wait masks, transitively, and the
    in-order execution of u). An earlier conflicting access by v at index j is ordered iff
    ``j <= vc[v]``.
    """

    def __init__(self, cfg: AccelConfig):
        n = len(UNITS)
        self.sizes = {"SP": cfg.sp_bytes, "ACC": cfg.acc_elems, "dram": cfg.dram_bytes}
        self.last_w = {s: np.empty(sz, np.int32) for s, sz in self.sizes.items()}
        self.last_w_unit = {s: np.empty(sz, np.int8) for s, sz in self.sizes.items()}
        self.last_r = {s: np.empty((n, sz), np.int32) for s, sz in self.sizes.items()}
        # Elements per SRAM bank, and per (space, port): the last instruction of each unit that
        # used each bank's read or write port.
        self.bank_elems = {"SP": cfg.sp_bank_rows * cfg.row_width,
                           "ACC": cfg.acc_bank_rows * cfg.row_width}
        banks = {"SP": cfg.sp_banks, "ACC": cfg.acc_banks}
        self.last_bank = {(s, p): np.empty((n, banks[s]), np.int32)
                          for s in banks for p in ("read port 0", "read port 1", "write port")}
        self.reset()

    def reset(self) -> None:
        """Forget all accesses: programs started by the host run one after another."""
        for d in (self.last_w, self.last_w_unit, self.last_r, self.last_bank):
            for a in d.values():
                a.fill(-1)
        self.last_of_unit = [-1] * len(UNITS)  # program index of the last instr per unit
        self.vc_of: dict[int, np.ndarray] = {}  # program index -> its vector clock
        self.index = 0

    def record(self, ins: Instruction, pc: int, acc: _Access) -> None:
        n = len(UNITS)
        idx = self.index
        self.index += 1
        unit = ins.unit
        vc = np.full(n, -1, np.int64)
        waits = list(UNITS) if ins.opcode is Opcode.HALT else \
            [u for u in UNITS if u in ins.wait]
        if unit is not None:
            waits.append(unit)  # in-order within the unit
        for u in waits:
            j = self.last_of_unit[_UNIT_INDEX[u]]
            if j >= 0:
                vc = np.maximum(vc, self.vc_of[j])
                vc[_UNIT_INDEX[u]] = max(vc[_UNIT_INDEX[u]], j)
        self.vc_of[idx] = vc
        if unit is None:
            return
        ui = _UNIT_INDEX[unit]
        for space, a in acc.reads:
            a = np.asarray(a).ravel()
            w = self.last_w[space][a]
            wu = self.last_w_unit[space][a]
            bad = (w >= 0) & (wu != ui) & (w > vc[np.maximum(wu, 0)])
            if bad.any():
                k = int(np.argmax(bad))
                raise RaceError(f"{ins.opcode.name} at pc {pc:#x} reads {space}[{int(a[k])}] "
                                f"written by a {UNITS[wu[k]].name} instruction (#{int(w[k])}) "
                                f"it does not wait for")
        for space, a in acc.writes:
            a = np.asarray(a).ravel()
            w = self.last_w[space][a]
            wu = self.last_w_unit[space][a]
            bad = (w >= 0) & (wu != ui) & (w > vc[np.maximum(wu, 0)])
            if bad.any():
                k = int(np.argmax(bad))
                raise RaceError(f"{ins.opcode.name} at pc {pc:#x} overwrites {space}[{int(a[k])}]"
                                f" written by a {UNITS[wu[k]].name} instruction (#{int(w[k])}) "
                                f"it does not wait for")
            for v in range(n):
                if v == ui:
                    continue
                r = self.last_r[space][v][a]
                if (r > vc[v]).any():
                    k = int(np.argmax(r > vc[v]))
                    raise RaceError(f"{ins.opcode.name} at pc {pc:#x} overwrites {space}"
                                    f"[{int(a[k])}] read by a {UNITS[v].name} instruction "
                                    f"(#{int(r[k])}) it does not wait for")
        self._check_banks(ins, pc, ui, vc, idx, acc)
        for space, a in acc.reads:
            self.last_r[space][ui][np.asarray(a).ravel()] = idx
        for space, a in acc.writes:
            a = np.asarray(a).ravel()
            self.last_w[space][a] = idx
            self.last_w_unit[space][a] = ui
        self.last_of_unit[ui] = idx

    def _check_banks(self, ins, pc, ui, vc, idx, acc) -> None:
        """Two units must not use one bank port (read port 0 or 1, write port) at once."""
        named = [(f"read port {acc.ports.get(k, 0)}", s, a) for k, (s, a) in enumerate(acc.reads)]
        named += [("write port", s, a) for s, a in acc.writes]
        uses = []
        for port, space, a in named:
            a = np.asarray(a).ravel()
            if space in self.bank_elems and a.size:
                uses.append((space, port, np.unique(a // self.bank_elems[space])))
        for space, port, banks in uses:
            last = self.last_bank[(space, port)]
            for v in range(len(UNITS)):
                if v == ui:
                    continue
                bad = last[v][banks] > vc[v]
                if bad.any():
                    k = int(np.argmax(bad))
                    raise BankConflictError(
                        f"{ins.opcode.name} at pc {pc:#x} uses the {port} of {space} bank "
                        f"{int(banks[k])} that a {UNITS[v].name} instruction (#"
                        f"{int(last[v][banks[k]])}) also uses, and does not wait for it")
        for space, port, banks in uses:
            self.last_bank[(space, port)][ui][banks] = idx
