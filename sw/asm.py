"""Assembler and disassembler: text ↔ binary, built on :mod:`llmaccel.hw.isa` only.

Text syntax, one instruction per line (``#`` starts a comment)::

    gemm m=64 n=64 k=64 a_addr=0 a_stride=512 b_addr=4096 b_stride=512 c_addr=0 c_stride=512
    vmul dst=sp:8192:8 src1=acc:0:8 src2=scalar:acc:65024:1 rows=64 shift=20 wait=gemm
    dma_load space=acc dram_addr=0x1000 dram_stride=32 sram_addr=0 sram_stride=8 rows=4 len=8
    halt

* The mnemonic is the :class:`~llmaccel.hw.isa.Opcode` name, case-insensitive.
* ``wait=`` takes unit names joined by ``|`` (``wait=load|vec``), or ``all``.
* Vector operands are ``space:addr:stride`` (``dst``, ``src1``) and ``mode:space:addr:stride``
  (``src2``; ``src2=imm`` alone is enough for the immediate mode).
* Integers are decimal or ``0x`` hex and may be negative; enum fields take member names.
* Fields left out are zero. The disassembler prints every non-zero field, so
  ``assemble(disassemble(p)) == p`` for every program.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import (
    INSTR_BYTES,
    OPCODES,
    EncodeError,
    Instruction,
    Opcode,
    Space,
    Src2Mode,
    Unit,
    decode,
)

__all__ = [
    "AsmError",
    "assemble",
    "disassemble",
    "format_instruction",
    "from_binary",
    "instr",
    "parse_instruction",
    "read_program",
    "to_binary",
]

_OPERANDS = {"dst", "src1"}


class AsmError(LlmaccelError):
    """A line the assembler cannot turn into an instruction; names the line and the problem."""


def _int(text: str) -> int:
    return int(text, 0)


def _parse_wait(text: str) -> Unit:
    if text.lower() == "all":
        return Unit.LOAD | Unit.STORE | Unit.GEMM | Unit.PIM | Unit.VEC
    w = Unit(0)
    for part in text.split("|"):
        part = part.strip()
        if not part:
            continue
        try:
            w |= Unit[part.upper()]
        except KeyError:
            raise AsmError(f"unknown unit {part!r} in wait (use load, store, gemm, pim, vec)") \
                from None
    return w


def _parse_value(name: str, text: str):
    if name in _OPERANDS:
        parts = text.split(":")
        if len(parts) != 3:
            raise AsmError(f"{name} must be space:addr:stride, not {text!r}")
        return {"space": Space[parts[0].upper()], "addr": _int(parts[1]),
                "stride": _int(parts[2])}
    if name == "src2":
        parts = text.split(":")
        mode = Src2Mode[parts[0].upper()]
        if len(parts) == 1:
            return {"mode": mode}
        if len(parts) != 4:
            raise AsmError(f"src2 must be mode:space:addr:stride, not {text!r}")
        return {"mode": mode, "space": Space[parts[1].upper()], "addr": _int(parts[2]),
                "stride": _int(parts[3])}
    try:
        return _int(text)
    except ValueError:
        return text  # an enum member name; encode() checks it


def parse_instruction(line: str) -> Instruction | None:
    """Parse one line; ``None`` for blank/comment lines."""
    line = line.split("#", 1)[0].strip()
    if not line:
        return None
    tokens = shlex.split(line)
    mnemonic, args = tokens[0], tokens[1:]
    try:
        opcode = Opcode[mnemonic.upper()]
    except KeyError:
        raise AsmError(f"unknown mnemonic {mnemonic!r}") from None
    wait = Unit(0)
    fields = {}
    for arg in args:
        if "=" not in arg:
            raise AsmError(f"expected key=value, not {arg!r}")
        key, value = arg.split("=", 1)
        key = key.lower()
        try:
            if key == "wait":
                wait = _parse_wait(value)
            else:
                fields[key] = _parse_value(key, value)
        except (KeyError, ValueError) as e:
            if isinstance(e, AsmError):
                raise
            raise AsmError(f"bad value {value!r} for {key}: {e}") from None
    try:
        ins = Instruction(opcode, wait, fields)  # range-checks, so errors point at this line
    except EncodeError as e:
        raise AsmError(str(e)) from None
    return ins


def assemble(text: str) -> list[Instruction]:
    """Assemble a whole program; errors name the line number."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            ins = parse_instruction(line)
        except AsmError as e:
            raise AsmError(f"line {n}: {e}") from None
        if ins is not None:
            out.append(ins)
    return out


def _fmt_value(name: str, v) -> str | None:
    if isinstance(v, dict):
        if name == "src2":
            mode = v["mode"]
            if not v["addr"] and not v["stride"] and v["space"] is Space.SP:
                if mode is Src2Mode.VEC:
                    return None
                if mode is Src2Mode.IMM:
                    return "imm"
            return f"{mode.name.lower()}:{v['space'].name.lower()}:{v['addr']}:{v['stride']}"
        if not v["addr"] and not v["stride"] and v["space"] is Space.SP:
            return None
        return f"{v['space'].name.lower()}:{v['addr']}:{v['stride']}"
    if isinstance(v, (Space, Src2Mode)):
        return None if v.value == 0 else v.name.lower()
    if v == 0:
        return None
    return hex(v) if name.startswith("dram_addr") else str(v)


def format_instruction(ins: Instruction) -> str:
    """One line of assembly text (non-zero fields only)."""
    parts = [ins.opcode.name.lower()]
    for name in OPCODES[ins.opcode].fields:
        s = _fmt_value(name, getattr(ins, name))
        if s is not None:
            parts.append(f"{name}={s}")
    if ins.wait:
        parts.append("wait=" + "|".join(u.name.lower() for u in Unit if u in ins.wait))
    return " ".join(parts)


def disassemble(program: Iterable[Instruction] | bytes, *, base: int | None = None) -> str:
    """Text for a program (instructions or binary); with ``base``, each line gets its address."""
    if isinstance(program, (bytes, bytearray)):
        program = from_binary(program)
    lines = []
    for i, ins in enumerate(program):
        text = format_instruction(ins)
        if base is not None:
            text = f"{base + i * INSTR_BYTES:#08x}: {text}"
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "")


def to_binary(program: Sequence[Instruction]) -> bytes:
    """Little-endian 32-byte words, in program order."""
    return b"".join(ins.to_bytes() for ins in program)


def from_binary(blob: bytes) -> list[Instruction]:
    if len(blob) % INSTR_BYTES:
        raise AsmError(f"a program is a multiple of {INSTR_BYTES} bytes, not {len(blob)}")
    return [decode(blob[i:i + INSTR_BYTES]) for i in range(0, len(blob), INSTR_BYTES)]


def read_program(path: str | Path) -> list[Instruction]:
    """Read a ``.s`` text or a binary program file."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix in (".s", ".asm", ".txt"):
        return assemble(data.decode())
    return from_binary(data)


def instr(opcode: Opcode, wait: Unit | int = 0, **fields) -> Instruction:
    """Build an instruction (range-checked now); the compiler's one way to make instructions."""
    return Instruction(opcode, wait, fields)
