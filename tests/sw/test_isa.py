"""hw/isa.py: encode/decode round trips, range checks, reserved bits; asm/disasm round trips."""

import pytest
from amaranth import Shape
from amaranth.lib import data, enum
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaccel.hw import isa
from llmaccel.hw.isa import (
    INSTR_BITS,
    OPCODES,
    DecodeError,
    EncodeError,
    ErrorCode,
    Instruction,
    Opcode,
    Unit,
    decode,
    encode,
    reserved_mask,
)
from llmaccel.sw.asm import AsmError, assemble, disassemble, from_binary, to_binary

ALL_UNITS = Unit.LOAD | Unit.STORE | Unit.GEMM | Unit.PIM | Unit.VEC


def _leaf_value(shape, which: str):
    if isinstance(shape, type) and issubclass(shape, enum.Flag):
        return shape(0) if which == "min" else shape((1 << Shape.cast(shape).width) - 1)
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        members = list(shape)
        return members[0] if which == "min" else members[-1]
    s = Shape.cast(shape)
    if which == "zero":
        return 0
    if s.signed:
        return -(1 << (s.width - 1)) if which == "min" else (1 << (s.width - 1)) - 1
    return 0 if which == "min" else (1 << s.width) - 1


def _fields(op: Opcode, which: str) -> dict:
    layout = data.Layout.cast(OPCODES[op].fmt)
    out = {}
    for name in OPCODES[op].fields:
        shape = layout[name].shape
        if isinstance(shape, type) and issubclass(shape, data.Struct):
            out[name] = {sub: _leaf_value(f.shape, which)
                         for sub, f in data.Layout.cast(shape)}
        else:
            out[name] = _leaf_value(shape, which)
    return out


@pytest.mark.parametrize("op", list(Opcode), ids=lambda o: o.name)
@pytest.mark.parametrize("which", ["zero", "min", "max"])
def test_round_trip_every_opcode_at_extremes(op, which):
    wait = Unit(0) if which != "max" else ALL_UNITS
    fields = _fields(op, which)
    word = encode(op, wait=wait, **fields)
    assert 0 <= word < 1 << INSTR_BITS
    ins = decode(word)
    assert ins.opcode is op
    assert ins.wait == wait
    for name, value in fields.items():
        assert getattr(ins, name) == value, name
    assert decode(ins.to_bytes()) == ins


@pytest.mark.parametrize("op", list(Opcode), ids=lambda o: o.name)
def test_every_used_field_out_of_range_names_the_field(op):
    layout = data.Layout.cast(OPCODES[op].fmt)
    for name in OPCODES[op].fields:
        shape = layout[name].shape
        if isinstance(shape, type) and issubclass(shape, data.Struct):
            for sub, f in data.Layout.cast(shape):
                if isinstance(f.shape, type) and issubclass(f.shape, enum.Enum):
                    continue
                s = Shape.cast(f.shape)
                too_big = (1 << (s.width - 1)) if s.signed else (1 << s.width)
                with pytest.raises(EncodeError, match=rf"'{name}\.{sub}'"):
                    encode(op, **{name: {sub: too_big}})
            continue
        if isinstance(shape, type) and issubclass(shape, enum.Enum):
            with pytest.raises(EncodeError, match=rf"'{name}'"):
                encode(op, **{name: "no-such-member"})
            continue
        s = Shape.cast(shape)
        too_big = (1 << (s.width - 1)) if s.signed else (1 << s.width)
        too_small = -(1 << (s.width - 1)) - 1 if s.signed else -1
        for bad in (too_big, too_small):
            with pytest.raises(EncodeError, match=rf"'{name}' = {bad}"):
                encode(op, **{name: bad})


def test_unused_field_is_rejected():
    with pytest.raises(EncodeError, match="HALT has no field 'rows'"):
        encode(Opcode.HALT, rows=1)


def test_wait_out_of_range():
    with pytest.raises(EncodeError, match="'wait'"):
        encode(Opcode.NOP, wait=1 << 5)


@pytest.mark.parametrize("op", list(Opcode), ids=lambda o: o.name)
def test_reserved_bits_are_illegal(op):
    mask = reserved_mask(op)
    assert mask, "every format leaves reserved bits"
    top = mask.bit_length() - 1
    with pytest.raises(DecodeError) as e:
        decode(encode(op) | (1 << top))
    assert e.value.code is ErrorCode.RESERVED_BITS


def test_reserved_mask_covers_exactly_the_unused_fields():
    # VLUTLD uses src1 and imm only: dst/src2/rows/shift bits must be reserved.
    m = reserved_mask(Opcode.VLUTLD)
    for name, _shape, off, width in isa.leaf_fields(isa.VecInstr):
        field_bits = ((1 << width) - 1) << off
        used = name.split(".")[0] in ("src1", "imm", "hdr")
        assert (m & field_bits == 0) == used, name


def test_illegal_opcode():
    used = {op.value for op in Opcode}
    bad = next(v for v in range(64) if v not in used)
    with pytest.raises(DecodeError) as e:
        decode(bad)
    assert e.value.code is ErrorCode.ILLEGAL_OPCODE


def test_every_opcode_has_a_unit_or_is_control():
    for op, info in OPCODES.items():
        assert info.unit in (None, *Unit), op
        assert info.semantics, op
    assert {op for op, i in OPCODES.items() if i.unit is None} == {Opcode.NOP, Opcode.HALT}


def _leaf_strategy(shape):
    if isinstance(shape, type) and issubclass(shape, enum.Flag):
        return st.integers(0, (1 << Shape.cast(shape).width) - 1).map(shape)
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return st.sampled_from(list(shape))
    s = Shape.cast(shape)
    if s.signed:
        return st.integers(-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1)
    return st.integers(0, (1 << s.width) - 1)


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(list(Opcode)))
    layout = data.Layout.cast(OPCODES[op].fmt)
    fields = {}
    for name in OPCODES[op].fields:
        shape = layout[name].shape
        if isinstance(shape, type) and issubclass(shape, data.Struct):
            fields[name] = {sub: draw(_leaf_strategy(f.shape))
                            for sub, f in data.Layout.cast(shape)}
        else:
            fields[name] = draw(_leaf_strategy(shape))
    wait = draw(_leaf_strategy(Unit))
    return Instruction(op, wait, fields)


@settings(max_examples=300, deadline=None)
@given(st.lists(instructions(), min_size=1, max_size=8))
def test_random_programs_round_trip_binary_and_text(program):
    blob = to_binary(program)
    assert from_binary(blob) == program
    assert assemble(disassemble(program)) == program
    assert to_binary(assemble(disassemble(blob))) == blob


def test_assembler_errors_name_the_line():
    with pytest.raises(AsmError, match="line 2: unknown mnemonic 'frob'"):
        assemble("nop\nfrob x=1\n")
    with pytest.raises(AsmError, match="line 1: GEMM field 'm' = 70000"):
        assemble("gemm m=70000")
    with pytest.raises(AsmError, match="unknown unit 'dma'"):
        assemble("nop wait=dma")
    with pytest.raises(AsmError, match="dst must be space:addr:stride"):
        assemble("vadd dst=acc:1")


def test_enum_field_without_a_member_is_an_illegal_field():
    # Src2Mode has three members in a 2-bit field: value 3 is not an instruction.
    word = encode(Opcode.VADD)
    _name, _shape, off, _w = next(f for f in isa.leaf_fields(isa.VecInstr)
                                  if f[0] == "src2.mode")
    with pytest.raises(DecodeError) as e:
        decode(word | (3 << off))
    assert e.value.code is ErrorCode.ILLEGAL_FIELD


@settings(max_examples=300, deadline=None)
@given(instructions())
def test_encoding_equals_the_amaranth_struct_constant(ins):
    # encode() packs bits from cached field offsets; the amaranth.lib.data layout is the
    # definition, so its constant must be the same word.
    info = OPCODES[ins.opcode]
    init = {"hdr": {"opcode": ins.opcode, "wait": ins.wait}}
    init |= {name: getattr(ins, name) for name in info.fields}
    assert ins.encode() == int(data.Layout.cast(info.fmt).const(init).as_bits())
