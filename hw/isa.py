"""The instruction set: the only place instruction fields exist.

Every instruction is one 256-bit word (one DRAM column), little-endian in memory. Bits 0–5 hold
the :class:`Opcode`, bits 6–10 the ``wait`` mask (:class:`Unit` flags); the rest is the format of
the opcode's unit (:class:`DmaInstr`, :class:`GemmInstr`, :class:`PimInstr`, :class:`VecInstr` or
:class:`CtrlInstr`). Bits an opcode does not use are *reserved* and must be zero
(:func:`reserved_mask`); a word with a reserved bit set is illegal.

The RTL decoder views instruction words through these structs; the assembler, disassembler,
golden model, compiler and ``docs/isa.md`` all go through :func:`encode`, :func:`decode` and
:data:`OPCODES`. Nothing else shifts or masks instruction bits.

Execution model
---------------
The controller fetches instructions in order and dispatches each to the queue of its unit
(LOAD, STORE, GEMM, PIM, VEC); ``NOP`` and ``HALT`` stay in the controller. Each unit executes
its own instructions in order. An instruction whose ``wait`` mask names unit *U* does not start
until every instruction dispatched to *U* before it has completed. The architectural result of a
program is that of executing its instructions one at a time in program order; a program is
*race-free* when its wait masks order every pair of instructions on different units that touch
the same memory with at least one write. The golden model checks race freedom
(``sim.golden.isa_sim``) so compiler bugs surface there rather than as RTL mismatches.
``HALT`` waits for every unit to drain and then stops the machine.

Memory spaces
-------------
* DRAM: byte addresses, mapped to bank/row/column by :meth:`AccelConfig.dram_map`.
* SP (scratchpad): int8 elements. ACC (accumulator): int32 elements, 4 bytes little-endian when
  moved to or from DRAM. SRAM addresses and strides are element addresses; an SRAM row holds
  ``W = config.row_width`` elements.
* PIM: a global buffer (int8, ``gbuf_bytes``) and, per bank, ``pim_slots`` int32 accumulators.
* LUT: ``lut_tables`` tables of 256 int16 entries in the vector unit.
"""



import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from amaranth import Shape, signed, unsigned
from amaranth.lib import data, enum

from .config import (
    COUNT_BITS,
    DRAM_ADDR_BITS,
    GBUF_ADDR_BITS,
    PIM_CHUNK_BITS,
    PIM_COL_BITS,
    PIM_ROW_BITS,
    PIM_SLOT_BITS,
    SRAM_ADDR_BITS,
)
from .errors import LlmaccelError

__all__ = [
    "INSTR_BITS",
    "INSTR_BYTES",
    "OPCODES",
    "CtrlInstr",
    "DecodeError",
    "DmaInstr",
    "EncodeError",
    "ErrorCode",
    "GemmInstr",
    "Header",
    "Instruction",
    "OpInfo",
    "Opcode",
    "PimInstr",
    "Space",
    "Src2Mode",
    "Unit",
    "VecInstr",
    "VecOperand",
    "VecSrc2",
    "decode",
    "encode",
    "format_of",
    "leaf_fields",
    "reserved_mask",
    "unit_of",
]

INSTR_BITS = 256
INSTR_BYTES = INSTR_BITS // 8


class Opcode(enum.Enum, shape=6):
    """Operation codes. Values are grouped by unit (see :data:`OPCODES`)."""

    NOP = 0x00
    HALT = 0x01
    DMA_LOAD = 0x08
    DMA_GATHER = 0x09
    DMA_STORE = 0x0A
    GEMM = 0x10
    PIM_WRGB = 0x18
    PIM_MAC = 0x19
    PIM_READ = 0x1A
    VADD = 0x20
    VSUB = 0x21
    VMUL = 0x22
    VMAX = 0x23
    VMIN = 0x24
    VLUT = 0x25
    VRECIP = 0x26
    VISQRT = 0x27
    VREDSUM = 0x28
    VREDMAX = 0x29
    VARGMAX = 0x2A
    VMASK = 0x2B
    VTRANS = 0x2C
    VLUTLD = 0x2D


class Unit(enum.Flag, shape=5):
    """Execution units; also the bits of every instruction's ``wait`` mask."""

    LOAD = 1
    STORE = 2
    GEMM = 4
    PIM = 8
    VEC = 16


class Space(enum.Enum, shape=1):
    """On-chip SRAM an operand lives in."""

    SP = 0   # scratchpad, int8 elements
    ACC = 1  # accumulator, int32 elements


class Src2Mode(enum.Enum, shape=2):
    """How a vector instruction's second operand is formed."""

    VEC = 0     # row r of src2 (row-aligned address and stride)
    SCALAR = 1  # element src2.addr + r·src2.stride, broadcast to every lane of row r
    IMM = 2     # the instruction's ``imm`` in every lane


class ErrorCode(enum.Enum, shape=4):
    """Error status the controller (and the golden model) reports with the failing PC."""

    NONE = 0
    ILLEGAL_OPCODE = 1    # opcode not in Opcode (or GEMM without a GEMM core)
    RESERVED_BITS = 2     # a bit the opcode does not use is set
    ILLEGAL_FIELD = 3     # a field value the opcode does not allow (see the opcode's checks)
    MISALIGNED = 4        # a row operand not on a row boundary
    DRAM_RANGE = 5        # a DRAM access outside DRAM
    SRAM_RANGE = 6        # an SP/ACC access outside the SRAM
    PIM_RANGE = 7         # a PIM row/column/slot/global-buffer access out of range
    WATCHDOG = 8          # the run exceeded its cycle or instruction limit
    PC_RANGE = 9          # the program counter left DRAM


class Header(data.Struct):
    """Bits 0–10 of every instruction."""

    opcode: Opcode
    wait: Unit


class CtrlInstr(data.Struct):
    """NOP, HALT: the header only."""

    hdr: Header


class DmaInstr(data.Struct):
    """DMA_LOAD, DMA_GATHER, DMA_STORE: 2-D strided transfer between DRAM and SP/ACC."""

    hdr: Header
    space: Space
    bcast: unsigned(1)
    dram_addr: unsigned(DRAM_ADDR_BITS)
    dram_stride: signed(DRAM_ADDR_BITS)
    sram_addr: unsigned(SRAM_ADDR_BITS)
    sram_stride: signed(SRAM_ADDR_BITS)
    rows: unsigned(COUNT_BITS)
    len: unsigned(COUNT_BITS)
    idx_addr: unsigned(SRAM_ADDR_BITS)
    idx_scale: unsigned(COUNT_BITS)


class GemmInstr(data.Struct):
    """GEMM on the systolic array: C (=|+=) A·B, A and B int8 in SP, C int32 in ACC."""

    hdr: Header
    accumulate: unsigned(1)
    m: unsigned(COUNT_BITS)
    n: unsigned(COUNT_BITS)
    k: unsigned(COUNT_BITS)
    a_addr: unsigned(SRAM_ADDR_BITS)
    a_stride: unsigned(SRAM_ADDR_BITS)
    b_addr: unsigned(SRAM_ADDR_BITS)
    b_stride: unsigned(SRAM_ADDR_BITS)
    c_addr: unsigned(SRAM_ADDR_BITS)
    c_stride: unsigned(SRAM_ADDR_BITS)


class PimInstr(data.Struct):
    """PIM_WRGB, PIM_MAC, PIM_READ: the all-bank GEMV units."""

    hdr: Header
    accumulate: unsigned(1)
    row: unsigned(PIM_ROW_BITS)
    col: unsigned(PIM_COL_BITS)
    ncols: unsigned(PIM_COL_BITS)
    kc: unsigned(PIM_COL_BITS)
    gb_chunk: unsigned(PIM_CHUNK_BITS)
    slot: unsigned(PIM_SLOT_BITS)
    nslots: unsigned(PIM_SLOT_BITS)
    sram_addr: unsigned(SRAM_ADDR_BITS)
    gb_addr: unsigned(GBUF_ADDR_BITS)
    len: unsigned(COUNT_BITS)


class VecOperand(data.Struct):
    """An SRAM row stream: element address of row 0 and the element stride between rows."""

    space: Space
    addr: unsigned(SRAM_ADDR_BITS)
    stride: signed(SRAM_ADDR_BITS)


class VecSrc2(data.Struct):
    """The second vector operand, with its :class:`Src2Mode`."""

    mode: Src2Mode
    space: Space
    addr: unsigned(SRAM_ADDR_BITS)
    stride: signed(SRAM_ADDR_BITS)


class VecInstr(data.Struct):
    """Vector unit instructions: element-wise ops, reductions, masks, transposes, LUT loads."""

    hdr: Header
    dst: VecOperand
    src1: VecOperand
    src2: VecSrc2
    rows: unsigned(COUNT_BITS)
    shift: unsigned(6)
    imm: signed(32)
    horizontal: unsigned(1)
    mask_a: signed(16)
    mask_b: signed(16)


@dataclass(frozen=True)
class OpInfo:
    """What the ISA says about one opcode: unit, format, the fields it uses and its semantics."""

    opcode: Opcode
    unit: "Unit | None"
    fmt: type
    fields: tuple[str, ...]
    summary: str
    semantics: str
    checks: str = ""


_VEC_ELEMENTWISE = ("dst", "src1", "rows", "shift")
_OUT = ("Then the requantisation stage: ``out = sat_T(rshift_round(t, shift))`` where T is "
        "int8 for an SP destination and int32 for ACC (see numerics.rshift_round).")
_VEC_CHECKS = ("Every row operand (dst, src1, and src2 in VEC mode) has a row-aligned address and "
               "stride (MISALIGNED otherwise); every element touched lies inside its SRAM "
               "(SRAM_RANGE).")

OPCODES: dict[Opcode, OpInfo] = {info.opcode: info for info in (
    OpInfo(Opcode.NOP, None, CtrlInstr, (), "no operation (a fence when wait is set)",
           "Does nothing once its wait mask is satisfied; use it as a fence."),
    OpInfo(Opcode.HALT, None, CtrlInstr, (), "stop the machine",
           "Waits for every unit to finish all earlier instructions, then stops with status "
           "DONE. The cycle counter stops here."),
    OpInfo(Opcode.DMA_LOAD, Unit.LOAD, DmaInstr,
           ("space", "bcast", "dram_addr", "dram_stride", "sram_addr", "sram_stride", "rows",
            "len"),
           "DRAM → SP/ACC, 2-D strided",
           "For r < rows, e < len: SRAM[space][sram_addr + r·sram_stride + e] ← element at DRAM "
           "byte address dram_addr + r·dram_stride + e'·size, where size is 1 (SP, int8) or 4 "
           "(ACC, int32 little-endian) and e' = 0 if bcast else e (bcast replicates the first "
           "element of each DRAM row across the SRAM row).",
           "The whole transfer is range-checked before anything is written: DRAM_RANGE / "
           "SRAM_RANGE, and nothing is written."),
    OpInfo(Opcode.DMA_GATHER, Unit.LOAD, DmaInstr,
           ("space", "dram_addr", "dram_stride", "sram_addr", "sram_stride", "rows", "len",
            "idx_addr", "idx_scale"),
           "indexed DRAM → SP/ACC (embedding lookup)",
           "Reads index i = ACC[idx_addr] (int32) when the instruction starts, then performs "
           "DMA_LOAD with dram_addr + i·idx_scale as the DRAM base.",
           "A negative index, or a transfer that leaves DRAM, is DRAM_RANGE; nothing written."),
    OpInfo(Opcode.DMA_STORE, Unit.STORE, DmaInstr,
           ("space", "dram_addr", "dram_stride", "sram_addr", "sram_stride", "rows", "len"),
           "SP/ACC → DRAM, 2-D strided",
           "For r < rows, e < len: the element SRAM[space][sram_addr + r·sram_stride + e] is "
           "written at DRAM byte address dram_addr + r·dram_stride + e·size (size 1 for SP, 4 "
           "for ACC, little-endian). Later rows overwrite earlier ones where they overlap.",
           "Range-checked before anything is written (DRAM_RANGE / SRAM_RANGE)."),
    OpInfo(Opcode.GEMM, Unit.GEMM, GemmInstr,
           ("accumulate", "m", "n", "k", "a_addr", "a_stride", "b_addr", "b_stride", "c_addr",
            "c_stride"),
           "systolic GEMM, C (=|+=) A·B",
           "With R = array_rows, C = array_cols: A[i,k] = SP[a_addr + (i//R)·a_stride + k·W + "
           "i%R], B[k,j] = SP[b_addr + (j//C)·b_stride + k·W + j%C], and the result element "
           "(i,j) is ACC[c_addr + (i//R)·c_stride + j·W + i%R], for i < m, j < n. It becomes "
           "Σ_k A[i,k]·B[k,j] (accumulate=0) or that sum plus its old value (accumulate=1), in "
           "wrapping int32 arithmetic. A is stored transposed per block of R rows (one SP row "
           "per k), B per block of C columns (one SP row per k), C transposed per block of R "
           "rows (one ACC row per j) — the layout every activation uses, so a GEMM's output "
           "feeds the next GEMM's A operand after requantisation. Lanes i%R ≥ m of the last "
           "block are neither read meaningfully nor written.",
           "A config without the GEMM core (gemm_core=False, the fpga preset) has no GEMM: "
           "ILLEGAL_OPCODE, checked before everything else but the reserved bits. "
           "a_addr, a_stride, b_addr, b_stride, c_addr, c_stride are multiples of W "
           "(MISALIGNED); with more than one block of R rows (m > R) the result blocks must "
           "not overlap, c_stride ≥ n·W (ILLEGAL_FIELD); every row touched is inside its SRAM "
           "(SRAM_RANGE)."),
    OpInfo(Opcode.PIM_WRGB, Unit.PIM, PimInstr, ("sram_addr", "gb_addr", "len"),
           "SP → PIM global buffer",
           "GBUF[gb_addr + e] ← SP[sram_addr + e] for e < len. The bytes travel over the DRAM "
           "data bus (one column per tBURST).",
           "sram range (SRAM_RANGE); gb_addr + len ≤ gbuf_bytes (PIM_RANGE)."),
    OpInfo(Opcode.PIM_MAC, Unit.PIM, PimInstr,
           ("accumulate", "row", "col", "ncols", "kc", "gb_chunk", "slot"),
           "all-bank MAC over columns of one row",
           "Opens row `row` in every bank (a row hit costs nothing). For j < ncols, in every "
           "bank b: o = slot + j//kc, g = gb_chunk + j%kc, d = Σ_{x<32} "
           "int8(bank b, row, col + j, byte x) · GBUF[32·g + x]; PACC[b][o] ← d if accumulate=0 "
           "and j%kc = 0, else PACC[b][o] + d (wrapping int32). One column per bank per tCCD_L.",
           "kc ≥ 1 when ncols > 0 (ILLEGAL_FIELD); row < bank_rows, col + ncols ≤ cols_per_row, "
           "gb_chunk + min(kc, ncols) ≤ gbuf chunks, slot + ⌈ncols/kc⌉ ≤ pim_slots "
           "(PIM_RANGE)."),
    OpInfo(Opcode.PIM_READ, Unit.PIM, PimInstr, ("slot", "nslots", "sram_addr"),
           "per-bank PIM accumulators → ACC",
           "ACC[sram_addr + s·B + b] ← PACC[b][slot + s] for s < nslots, b < B (B = banks): "
           "output o of a GEMV laid out as bank o%B, slot o//B lands at element o.",
           "slot + nslots ≤ pim_slots (PIM_RANGE); the ACC range (SRAM_RANGE)."),
    OpInfo(Opcode.VADD, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "src2", "imm"),
           "element-wise add", "t = a + b (exact). " + _OUT, _VEC_CHECKS),
    OpInfo(Opcode.VSUB, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "src2", "imm"),
           "element-wise subtract", "t = a − b (exact). " + _OUT, _VEC_CHECKS),
    OpInfo(Opcode.VMUL, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "src2", "imm"),
           "element-wise multiply-requantise",
           "t = a·b (exact, up to 64 bits). " + _OUT, _VEC_CHECKS),
    OpInfo(Opcode.VMAX, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "src2", "imm"),
           "element-wise maximum", "t = max(a, b). " + _OUT, _VEC_CHECKS),
    OpInfo(Opcode.VMIN, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "src2", "imm"),
           "element-wise minimum", "t = min(a, b). " + _OUT, _VEC_CHECKS),
    OpInfo(Opcode.VLUT, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "imm"),
           "256-entry table lookup",
           "t = LUT[imm][sat8(a) + 128] (int16 entry, sign-extended). " + _OUT,
           _VEC_CHECKS + " 0 ≤ imm < lut_tables (ILLEGAL_FIELD)."),
    OpInfo(Opcode.VRECIP, Unit.VEC, VecInstr, (*_VEC_ELEMENTWISE, "imm"),
           "reciprocal step (integer division)",
           "t = ⌊imm / a⌋ for a > 0, and INT32_MAX for a ≤ 0. " + _OUT,
           _VEC_CHECKS + " imm ≥ 0 (ILLEGAL_FIELD)."),
    OpInfo(Opcode.VISQRT, Unit.VEC, VecInstr, _VEC_ELEMENTWISE,
           "integer square-root step (the rsqrt building block)",
           "t = ⌊√max(a, 0)⌋. With VRECIP this forms 1/√x for layer norm. " + _OUT,
           _VEC_CHECKS),
    OpInfo(Opcode.VREDSUM, Unit.VEC, VecInstr, ("dst", "src1", "rows", "horizontal"),
           "sum reduction",
           "Lane-wise: out[l] = Σ_{r<rows} a[r][l]. With horizontal=1 the lane results are "
           "summed too and the total written to every lane. The sum is exact and then "
           "saturated to the destination type. One row is written.", _VEC_CHECKS),
    OpInfo(Opcode.VREDMAX, Unit.VEC, VecInstr, ("dst", "src1", "rows", "horizontal"),
           "max reduction",
           "Lane-wise: out[l] = max_{r<rows} a[r][l]; horizontal=1 takes the maximum over "
           "lanes too and writes it to every lane. Saturated to the destination type.",
           _VEC_CHECKS),
    OpInfo(Opcode.VARGMAX, Unit.VEC, VecInstr, ("dst", "src1", "rows", "horizontal"),
           "argmax reduction (greedy sampling)",
           "Lane-wise: out[l] = the smallest r with a[r][l] maximal. horizontal=1: the smallest "
           "flat index r·W + l of a maximal element, written to every lane. Saturated to the "
           "destination type.", _VEC_CHECKS),
    OpInfo(Opcode.VMASK, Unit.VEC, VecInstr, ("dst", "src1", "rows", "imm", "mask_a", "mask_b"),
           "affine mask (causal attention)",
           "out[r][l] = MIN_T if r·mask_a + l·mask_b + imm > 0 else sat_T(a[r][l]), where MIN_T "
           "is −128 for an SP destination and INT32_MIN for ACC.", _VEC_CHECKS),
    OpInfo(Opcode.VTRANS, Unit.VEC, VecInstr, ("dst", "src1", "rows"),
           "W×W block transpose",
           "For each block k < rows: the W rows at src1.addr + k·src1.stride + r·W (r < W) are "
           "transposed into the W rows at dst.addr + k·dst.stride + r·W: out[c][r] = "
           "sat_T(a[r][c]).", _VEC_CHECKS),
    OpInfo(Opcode.VLUTLD, Unit.VEC, VecInstr, ("src1", "imm"),
           "load a lookup table",
           "LUT[imm][e] ← sat16(ACC[src1.addr + e]) for e < 256.",
           "src1 is ACC, row-aligned (MISALIGNED) and in range (SRAM_RANGE); 0 ≤ imm < "
           "lut_tables (ILLEGAL_FIELD)."),
)}


class EncodeError(LlmaccelError):
    """A field that does not fit its instruction format; the message names the field."""


def format_of(opcode: Opcode) -> type:
    """The struct class of an opcode's format."""
    return OPCODES[opcode].fmt


def _leaves(layout: data.Layout, prefix: str = "", offset: int = 0):
    """Yield ``(dotted_name, shape, offset)`` for every leaf field of a layout."""
    for name, fld in layout:
        shape = fld.shape
        if isinstance(shape, type) and issubclass(shape, data.Struct):
            yield from _leaves(data.Layout.cast(shape), f"{prefix}{name}.", offset + fld.offset)
        else:
            yield f"{prefix}{name}", shape, offset + fld.offset


def leaf_fields(fmt: type) -> list[tuple[str, object, int, int]]:
    """``(name, shape, offset, width)`` of every leaf field of a format, in bit order."""
    out = []
    for name, shape, off in _leaves(data.Layout.cast(fmt)):
        out.append((name, shape, off, Shape.cast(shape).width))
    return out


def _used_leaf_names(info: OpInfo) -> set[str]:
    names = {"hdr.opcode", "hdr.wait"}
    for fname, *_ in leaf_fields(info.fmt):
        top = fname.split(".")[0]
        if top in info.fields:
            names.add(fname)
    return names


@functools.cache
def reserved_mask(opcode: Opcode) -> int:
    """Bits of the 256-bit word that ``opcode`` does not use: they must be zero."""
    info = OPCODES[opcode]
    used = _used_leaf_names(info)
    mask = (1 << INSTR_BITS) - 1
    for name, _shape, off, width in leaf_fields(info.fmt):
        if name in used:
            mask &= ~(((1 << width) - 1) << off)
    return mask


def _check_leaf(op: Opcode, name: str, shape, value):
    if isinstance(shape, type) and issubclass(shape, enum.Flag):
        if isinstance(value, shape):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            w = Shape.cast(shape).width
            if 0 <= value < 1 << w:
                return shape(value)
        raise EncodeError(f"{op.name} field '{name}' must be a {shape.__name__} flag set, "
                          f"not {value!r}")
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        if isinstance(value, shape):
            return value
        if isinstance(value, str):
            try:
                return shape[value.upper()]
            except KeyError:
                pass
        raise EncodeError(f"{op.name} field '{name}' must be one of "
                          f"{', '.join(m.name for m in shape)}, not {value!r}")
    s = Shape.cast(shape)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise EncodeError(f"{op.name} field '{name}' must be an integer, not {value!r}")
    lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else \
        (0, (1 << s.width) - 1)
    if not lo <= value <= hi:
        kind = "signed" if s.signed else "unsigned"
        raise EncodeError(f"{op.name} field '{name}' = {value} does not fit {kind}({s.width}) "
                          f"({lo}..{hi})")
    return value


@dataclass(frozen=True, eq=False)
class Instruction:
    """A decoded instruction: opcode, wait mask and the values of the fields the opcode uses.

    ``fields`` maps top-level field names to ints, enum members, or (for vector operands) dicts
    of their sub-fields. Fields not given are zero.
    """

    opcode: Opcode
    wait: Unit = Unit(0)  # noqa: RUF009 (an immutable flag value)
    fields: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self):
        # Canonical form: every used field present, enums as members, operands complete. The
        # encode/decode round trip also range-checks every field (EncodeError).
        canon = decode(encode(self.opcode, wait=self.wait, **self.fields))
        object.__setattr__(self, "wait", canon.wait)
        object.__setattr__(self, "fields", canon.fields)

    @classmethod
    def _decoded(cls, opcode: Opcode, wait: Unit, fields: dict) -> "Instruction":
        # decode() already produces the canonical form.
        self = object.__new__(cls)
        object.__setattr__(self, "opcode", opcode)
        object.__setattr__(self, "wait", wait)
        object.__setattr__(self, "fields", fields)
        return self

    def __getattr__(self, name: str):
        # Convenience: instr.rows instead of instr.fields["rows"]; unset fields read as zero.
        if name.startswith("_") or name in ("opcode", "wait", "fields"):
            raise AttributeError(name)
        info = OPCODES[self.opcode]
        if name not in data.Layout.cast(info.fmt).members:
            raise AttributeError(f"{self.opcode.name} has no field {name!r}")
        # A format field the opcode does not use is reserved, hence zero.
        v = self.fields.get(name) if name in info.fields else None
        if v is None:
            return _zero_value(info.fmt, name)
        return v

    @property
    def unit(self) -> Unit | None:
        return OPCODES[self.opcode].unit

    def encode(self) -> int:
        return encode(self.opcode, wait=self.wait, **self.fields)

    def __eq__(self, other) -> bool:
        # Two instructions are equal when they encode to the same word (unset fields are zero).
        return isinstance(other, Instruction) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def to_bytes(self) -> bytes:
        return self.encode().to_bytes(INSTR_BYTES, "little")

    def replace(self, **changes) -> "Instruction":
        f = dict(self.fields)
        wait = changes.pop("wait", self.wait)
        f.update(changes)
        return dataclasses.replace(self, wait=wait, fields=f)


def _zero_value(fmt: type, name: str):
    layout = data.Layout.cast(fmt)
    shape = layout[name].shape
    if isinstance(shape, type) and issubclass(shape, data.Struct):
        return {sub: _zero_value(shape, sub) for sub, _ in data.Layout.cast(shape)}
    if isinstance(shape, type) and issubclass(shape, enum.Flag):
        return shape(0)
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return shape(0)
    return 0


def encode(opcode: Opcode, wait: Unit | int = 0, **fields) -> int:
    """Encode one instruction to its 256-bit integer.

    Every field is range-checked against its shape and the error names it; fields the opcode
    does not use are rejected rather than silently dropped.
    """
    if not isinstance(opcode, Opcode):
        raise EncodeError(f"opcode must be an Opcode, not {opcode!r}")
    info = OPCODES[opcode]
    for name in fields:
        if name not in info.fields:
            raise EncodeError(f"{opcode.name} has no field {name!r} "
                              f"(its fields: {', '.join(info.fields) or 'none'})")
    table = _table(info.fmt)
    word = opcode.value | (_check_leaf(opcode, "wait", Unit, wait).value << _WAIT_OFFSET)
    for name, value in fields.items():
        kind, spec = table[name]
        if kind == "struct":
            if not isinstance(value, Mapping):
                raise EncodeError(f"{opcode.name} field '{name}' must be a mapping of "
                                  f"{', '.join(spec)}")
            for sname, svalue in value.items():
                if sname not in spec:
                    raise EncodeError(f"{opcode.name} field '{name}' has no part "
                                      f"{sname!r}") from None
                shape, off, width = spec[sname]
                v = _check_leaf(opcode, f"{name}.{sname}", shape, svalue)
                word |= (_raw(v) & ((1 << width) - 1)) << off
        else:
            shape, off, width = spec
            v = _check_leaf(opcode, name, shape, value)
            word |= (_raw(v) & ((1 << width) - 1)) << off
    return word


def _raw(v) -> int:
    return v.value if isinstance(v, (enum.Enum, enum.Flag)) else int(v)


_WAIT_OFFSET = data.Layout.cast(Header)["wait"].offset
_TABLES: dict[type, dict] = {}


def _table(fmt: type) -> dict:
    """Per top-level field of a format: ("leaf", (shape, offset, width)) or ("struct",
    {part: (shape, offset, width)}), read once from the amaranth.lib.data layout (the layout
    stays the single definition; this only caches its offsets)."""
    t = _TABLES.get(fmt)
    if t is None:
        t = {}
        for name, fld in data.Layout.cast(fmt):
            shape = fld.shape
            if isinstance(shape, type) and issubclass(shape, data.Struct):
                t[name] = ("struct", {s: (f.shape, fld.offset + f.offset,
                                          Shape.cast(f.shape).width)
                                      for s, f in data.Layout.cast(shape)})
            else:
                t[name] = ("leaf", (shape, fld.offset, Shape.cast(shape).width))
        _TABLES[fmt] = t
    return t


def _extract(word: int, shape, off: int, width: int):
    v = (word >> off) & ((1 << width) - 1)
    if isinstance(shape, type) and issubclass(shape, (enum.Enum, enum.Flag)):
        return shape(v)       # ValueError for an Enum value with no member
    if Shape.cast(shape).signed and v >> (width - 1):
        v -= 1 << width
    return v


class DecodeError(LlmaccelError):
    """An instruction word that is not a legal instruction; ``code`` is the ErrorCode."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


def decode(word: int | bytes) -> "Instruction":
    """Decode a 256-bit word (int or 32 little-endian bytes) into an :class:`Instruction`.

    Raises :class:`DecodeError` with ``ErrorCode.ILLEGAL_OPCODE`` or ``RESERVED_BITS``.
    """
    if isinstance(word, (bytes, bytearray, memoryview)):
        if len(word) != INSTR_BYTES:
            raise DecodeError(ErrorCode.ILLEGAL_OPCODE,
                              f"an instruction is {INSTR_BYTES} bytes, not {len(word)}")
        word = int.from_bytes(bytes(word), "little")
    if not 0 <= word < 1 << INSTR_BITS:
        raise DecodeError(ErrorCode.ILLEGAL_OPCODE, "instruction word out of range")
    op_bits = word & ((1 << Shape.cast(Opcode).width) - 1)
    try:
        opcode = Opcode(op_bits)
    except ValueError:
        raise DecodeError(ErrorCode.ILLEGAL_OPCODE, f"illegal opcode {op_bits:#04x}") from None
    if word & reserved_mask(opcode):
        raise DecodeError(ErrorCode.RESERVED_BITS,
                          f"{opcode.name} has reserved bits set "
                          f"({word & reserved_mask(opcode):#x})")
    info = OPCODES[opcode]
    table = _table(info.fmt)
    fields = {}
    for name in info.fields:
        kind, spec = table[name]
        try:
            if kind == "struct":
                fields[name] = {s: _extract(word, *sp) for s, sp in spec.items()}
            else:
                fields[name] = _extract(word, *spec)
        except ValueError as e:  # an enum field holding a value with no member
            raise DecodeError(ErrorCode.ILLEGAL_FIELD,
                              f"{opcode.name} field '{name}': {e}") from None
    wait = Unit((word >> _WAIT_OFFSET) & ((1 << Shape.cast(Unit).width) - 1))
    return Instruction._decoded(opcode, wait, fields)


def unit_of(opcode: Opcode) -> Unit | None:
    return OPCODES[opcode].unit
