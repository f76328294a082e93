"""Bench pieces for the vector unit, shared by the Amaranth-simulator tests (tests/hw) and the
cocotb testbench on the generated Verilog (tests/cocotb).

* :class:`VectorUnitHarness` — the DUT with scratchpad and accumulator memories, host ports to
  load and read them, and copies of the unit's write ports for the write monitors.
* :class:`VecModel` — the reference: :class:`~llmaccel.sim.golden.isa_sim.GoldenMachine`
  executing the same instructions, plus :func:`~llmaccel.sim.golden.timing_vec.vec_cycles`.
* :class:`VecScoreboard` — applies the writes the monitor saw to shadow copies of the memories
  and, at every ``o_done``, compares them (whole memories, so every destination is checked with
  all of its surroundings as guard bands) and the instruction's cycles with the model.
* Stimulus: :class:`VecStimulus` (random legal instructions over a small, overlapping region so
  that instructions depend on each other), :func:`edge_cases`, and the composite sequences
  :func:`layernorm_case` and :func:`softmax_case` (the instruction sequences the compiler emits,
  with the numerics function they must reproduce).
* cocotb driver and monitor: :class:`CocotbCmdDriver`, :class:`CocotbWriteMonitor`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module, Mux
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode, Space, Src2Mode, VecInstr
from llmaccel.hw.ports import (
    acc_read_signature,
    acc_row_layout,
    acc_write_signature,
    sp_read_signature,
    sp_row_layout,
    sp_write_signature,
)
from llmaccel.hw.vector_unit import VectorUnit
from llmaccel.sim.golden import numerics as nx
from llmaccel.sim.golden.isa_sim import GoldenMachine, MachineError, RaceError
from llmaccel.sim.golden.timing_vec import vec_cycles
from llmaccel.sw.asm import instr

__all__ = [
    "AmaranthRun",
    "Case",
    "CocotbCmdDriver",
    "CocotbWriteMonitor",
    "VecModel",
    "VecScoreboard",
    "VecStimulus",
    "VectorUnitHarness",
    "bench_config",
    "check_composite",
    "cocotb_load",
    "edge_cases",
    "layernorm_case",
    "pack_rows",
    "payload_bits",
    "payload_const",
    "run_amaranth",
    "softmax_case",
    "unpack_row",
]


def bench_config(lanes: int | None = None, *, small: bool = True) -> AccelConfig:
    """The ``tiny`` preset (W = 4), with ``lanes`` vector lanes and, when ``small``, 256-row
    memories so that a cocotb bench can load them quickly (VLUTLD needs 64 ACC rows)."""
    from llmaccel.hw.config import preset  # noqa: PLC0415

    cfg = preset("tiny")
    changes: dict = {}
    if lanes is not None:
        changes["vector_lanes"] = lanes
    if small:
        changes.update(sp_bytes=256 * cfg.row_width, acc_elems=256 * cfg.row_width)
    if changes:
        changes["name"] = f"tiny_l{changes.get('vector_lanes', cfg.vector_lanes)}" + \
            ("_small" if small else "")
        cfg = cfg.replace(**changes)
    return cfg


# ---------------------------------------------------------------------------------------------
# The harness

class VectorUnitHarness(wiring.Component):
    """The :class:`~llmaccel.hw.vector_unit.VectorUnit` with its scratchpad and accumulator.

    Each memory is one :class:`~amaranth.lib.memory.Memory` with a read port per unit client
    (``rd1``, ``rd2``) plus one for the host, and one write port shared by the unit and the
    host (the host writes only while the unit is idle; a non-zero host enable wins).

    Parameters
    ----------
    cfg : AccelConfig
    sp_init, acc_init : array-like or None
        Initial contents (``sp_bytes`` int8 / ``acc_elems`` int32 elements), so that
        Amaranth-simulator tests need not load the memories cycle by cycle.

    Ports
    -----
    i_cmd, o_done, o_busy : the unit's.
    host_sp_wr, host_acc_wr : Out(write port signatures)
        Host writes (row address, data, per-element enable).
    host_sp_rd, host_acc_rd : Out(read port signatures)
        Host reads (data one cycle after the address).
    mon_sp_wr, mon_acc_wr : In(write port signatures)
        Copies of the unit's own write ports, for write monitors (outputs of the harness).
    """

    def __init__(self, cfg: AccelConfig, *, sp_init=None, acc_init=None):
        self.cfg = cfg
        W = cfg.row_width
        sp_rows = [] if sp_init is None else \
            np.asarray(sp_init, dtype=np.int8).reshape(-1, W).tolist()
        acc_rows = [] if acc_init is None else \
            np.asarray(acc_init, dtype=np.int32).reshape(-1, W).tolist()
        self.sp_mem = memory.Memory(shape=sp_row_layout(cfg), depth=cfg.sp_rows, init=sp_rows)
        self.acc_mem = memory.Memory(shape=acc_row_layout(cfg), depth=cfg.acc_rows,
                                     init=acc_rows)
        super().__init__({
            "i_cmd": In(stream.Signature(VecInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "host_sp_wr": Out(sp_write_signature(cfg)),
            "host_acc_wr": Out(acc_write_signature(cfg)),
            "host_sp_rd": Out(sp_read_signature(cfg)),
            "host_acc_rd": Out(acc_read_signature(cfg)),
            "mon_sp_wr": In(sp_write_signature(cfg)),
            "mon_acc_wr": In(acc_write_signature(cfg)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.vu = vu = VectorUnit(self.cfg)
        m.submodules.sp_mem = self.sp_mem
        m.submodules.acc_mem = self.acc_mem
        wiring.connect(m, wiring.flipped(self.i_cmd), vu.i_cmd)
        m.d.comb += [self.o_done.eq(vu.o_done), self.o_busy.eq(vu.o_busy)]
        for mem, unit_rd1, unit_rd2, unit_wr, host_wr, host_rd, mon in (
                (self.sp_mem, vu.sp_rd1, vu.sp_rd2, vu.sp_wr, self.host_sp_wr, self.host_sp_rd,
                 self.mon_sp_wr),
                (self.acc_mem, vu.acc_rd1, vu.acc_rd2, vu.acc_wr, self.host_acc_wr,
                 self.host_acc_rd, self.mon_acc_wr)):
            wiring.connect(m, mem.read_port(), unit_rd1)
            wiring.connect(m, mem.read_port(), unit_rd2)
            wiring.connect(m, mem.read_port(), wiring.flipped(host_rd))
            wp = mem.write_port(granularity=1)
            host = host_wr.en != 0
            m.d.comb += [
                wp.addr.eq(Mux(host, host_wr.addr, unit_wr.addr)),
                wp.data.eq(Mux(host, host_wr.data.as_value(), unit_wr.data.as_value())),
                wp.en.eq(Mux(host, host_wr.en, unit_wr.en)),
                mon.addr.eq(unit_wr.addr), mon.data.eq(unit_wr.data), mon.en.eq(unit_wr.en),
            ]
        return m


# ---------------------------------------------------------------------------------------------
# Encoding helpers

def payload_bits(ins: Instruction) -> int:
    """The ``i_cmd`` payload of an instruction: its 256-bit word is the :class:`VecInstr` struct
    in the low bits (every bit above the struct is reserved, hence zero)."""
    return ins.encode()


def payload_const(ins: Instruction) -> data.Const:
    """The payload as an Amaranth constant of the :class:`VecInstr` layout (for ``ctx.set``)."""
    return data.Layout.cast(VecInstr).from_bits(payload_bits(ins))


def unpack_row(raw: int, space: Space, width: int) -> np.ndarray:
    """A row read from a port (an integer of ``width`` packed elements) as int8/int32."""
    size = 4 if space is Space.ACC else 1
    dtype = "<i4" if space is Space.ACC else "<i1"
    return np.frombuffer(int(raw).to_bytes(width * size, "little"), dtype=dtype)


def pack_rows(mem: np.ndarray, space: Space, width: int) -> list[int]:
    """Rows of a memory image as port integers (the inverse of :func:`unpack_row`)."""
    dtype = "<i4" if space is Space.ACC else "<i1"
    b = np.ascontiguousarray(mem, dtype=dtype).tobytes()
    n = width * (4 if space is Space.ACC else 1)
    return [int.from_bytes(b[i:i + n], "little") for i in range(0, len(b), n)]


def lane_mask(en: int, width: int) -> np.ndarray:
    return np.array([(en >> i) & 1 for i in range(width)], dtype=bool)


# ---------------------------------------------------------------------------------------------
# Model and scoreboard

@dataclass
class Expected:
    """The model's result of one instruction: memories after it and its cycles."""

    ins: Instruction
    sp: np.ndarray
    acc: np.ndarray
    cycles: int
    lut: np.ndarray


class VecModel:
    """The reference model: the golden machine on the same memories, and the timing function.

    :meth:`execute` raises ``MachineError`` / ``RaceError`` (and changes nothing) for an
    instruction the machine refuses; :meth:`hazard` names what the golden race checker does
    not catch but the RTL relies on (see there).
    """

    def __init__(self, cfg: AccelConfig, sp: np.ndarray, acc: np.ndarray,
                 lut: np.ndarray | None = None):
        self.cfg = cfg
        self.gm = GoldenMachine(cfg, check_races=True)
        self.gm.sp[:] = sp
        self.gm.acc[:] = acc
        if lut is not None:          # a bench whose unit keeps its tables between runs
            self.gm.lut[:] = lut

    def execute(self, ins: Instruction) -> Expected:
        self.gm.execute(ins)
        return Expected(ins, self.gm.sp.copy(), self.gm.acc.copy(), vec_cycles(self.cfg, ins),
                        self.gm.lut.copy())

    def hazard(self, ins: Instruction) -> str | None:
        """A ``SCALAR`` src2 element written by an earlier row of the same instruction.

        The architecture forbids a row reading what an earlier row of its instruction wrote,
        and the golden checker enforces it for row operands, but it skips the one-element
        reads of ``SCALAR`` mode (their index array is 1-D). Such stimulus is not generated.
        """
        if ins.unit is None or ins.opcode not in _BINARY or ins.rows < 2:
            return None
        s2 = ins.src2
        if s2["mode"] is not Src2Mode.SCALAR or s2["space"] is not ins.dst["space"]:
            return None
        W = self.cfg.row_width
        d = ins.dst
        for r in range(1, ins.rows):
            e = s2["addr"] + r * s2["stride"]
            for q in range(r):
                row0 = d["addr"] + q * d["stride"]
                if row0 <= e < row0 + W:
                    return f"row {r} reads scalar {e} written by row {q}"
        return None


class VecScoreboard:
    """Shadow memories updated by the write monitor, compared with the model at each ``o_done``.

    ``expected`` is the model's result per instruction in program order. Comparing the whole
    shadow memories checks every destination together with everything around it (guard bands),
    and that nothing else was written.
    """

    def __init__(self, cfg: AccelConfig, sp: np.ndarray, acc: np.ndarray,
                 expected: list[Expected]):
        self.cfg = cfg
        self.sp = np.array(sp, dtype=np.int8)
        self.acc = np.array(acc, dtype=np.int32)
        self.expected = expected
        self.done = 0
        self.cycles: list[tuple[str, int, int]] = []   # (opcode, measured, model)

    def write(self, space: Space, row: int, raw: int, en: int) -> None:
        W = self.cfg.row_width
        mem = self.acc if space is Space.ACC else self.sp
        assert 0 <= row < mem.size // W, f"write to {space.name} row {row} out of range"
        sel = lane_mask(en, W)
        mem[row * W:(row + 1) * W][sel] = unpack_row(raw, space, W)[sel]

    def complete(self, cycles: int) -> None:
        from llmaccel.sw.asm import format_instruction  # noqa: PLC0415

        assert self.done < len(self.expected), "o_done without an outstanding instruction"
        exp = self.expected[self.done]
        what = f"instruction {self.done} ({format_instruction(exp.ins)})"
        for name, got, want in (("SP", self.sp, exp.sp), ("ACC", self.acc, exp.acc)):
            bad = np.flatnonzero(got != want)
            assert bad.size == 0, (
                f"{what}: {name} differs from the golden model at elements "
                f"{bad[:8].tolist()}: got {got[bad[:8]].tolist()}, want {want[bad[:8]].tolist()}")
        self.cycles.append((exp.ins.opcode.name, cycles, exp.cycles))
        assert cycles == exp.cycles, \
            f"{what}: took {cycles} cycles, vec_cycles says {exp.cycles}"
        self.done += 1

    def finished(self) -> bool:
        return self.done == len(self.expected)


# ---------------------------------------------------------------------------------------------
# Stimulus

_BINARY = (Opcode.VADD, Opcode.VSUB, Opcode.VMUL, Opcode.VMAX, Opcode.VMIN)
_REDUCE = (Opcode.VREDSUM, Opcode.VREDMAX, Opcode.VARGMAX)
_VEC_OPS = [*_BINARY, Opcode.VLUT, Opcode.VRECIP, Opcode.VISQRT, *_REDUCE, Opcode.VMASK,
            Opcode.VTRANS, Opcode.VLUTLD]
I32_EDGES = (nx.INT32_MIN, nx.INT32_MIN + 1, -65536, -32769, -129, -128, -1, 0, 1, 127, 128,
             32767, 65535, nx.INT32_MAX - 1, nx.INT32_MAX)


@dataclass
class Case:
    """Initial memories, a program, and (optionally) results the numerics functions predict:
    ``checks`` maps a name to ``(space, element address, expected (rows, W) array)``."""

    name: str
    sp: np.ndarray
    acc: np.ndarray
    program: list[Instruction]
    checks: dict = field(default_factory=dict)

    def expected(self, cfg: AccelConfig, lut: np.ndarray | None = None) -> list[Expected]:
        model = VecModel(cfg, self.sp, self.acc, lut)
        return [model.execute(ins) for ins in self.program]


class VecStimulus:
    """Random legal vector instructions over the first ``sp_rows`` / ``acc_rows`` rows.

    Keeping every operand in a small region makes most instructions read what recent ones
    wrote. Candidates the golden machine refuses (range, alignment, intra-instruction races)
    and those :meth:`VecModel.hazard` flags are drawn again.
    """

    def __init__(self, cfg: AccelConfig, rng: random.Random, *, sp_rows: int = 48,
                 acc_rows: int = 96):
        self.cfg = cfg
        self.rng = rng
        self.region = {Space.SP: min(sp_rows, cfg.sp_rows),
                       Space.ACC: min(acc_rows, cfg.acc_rows)}

    # Values ---------------------------------------------------------------------------------
    def i32(self) -> int:
        r = self.rng.random()
        if r < 0.2:
            return self.rng.choice(I32_EDGES)
        if r < 0.6:
            return self.rng.randint(-300, 300)
        if r < 0.8:
            return self.rng.randint(-40000, 40000)
        return self.rng.randint(nx.INT32_MIN, nx.INT32_MAX)

    def memories(self) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        sp = np.array([self.rng.randint(-128, 127) for _ in range(cfg.sp_bytes)], np.int8)
        acc = np.array([self.i32() for _ in range(cfg.acc_elems)], np.int32)
        return sp, acc

    def shift(self) -> int:
        r = self.rng.random()
        if r < 0.35:
            return 0
        if r < 0.8:
            return self.rng.randint(1, 12)
        return self.rng.choice([15, 16, 24, 30, 31, 32, 33, 47, 62, 63])

    # Operands -------------------------------------------------------------------------------
    def _rows_operand(self, space: Space, rows: int, *, span: int = 1, max_k: int = 3) -> dict:
        """A row stream of ``rows`` items, each ``span`` rows long, inside the region."""
        W = self.cfg.row_width
        n = self.region[space]
        for _ in range(20):
            k = self.rng.randint(-max_k, max_k) * (span if self.rng.random() < 0.7 else 1)
            lo = min(0, (rows - 1) * k)
            hi = max(0, (rows - 1) * k) + span
            if hi - lo <= n:
                start = self.rng.randint(-lo, n - hi)
                return {"space": space, "addr": start * W, "stride": k * W}
        return {"space": space, "addr": 0, "stride": span * W}

    def _space(self) -> Space:
        return self.rng.choice((Space.SP, Space.ACC))

    def candidate(self, op: Opcode | None = None) -> Instruction:
        """A random instruction (of opcode ``op`` if given); not yet checked."""
        cfg, rng = self.cfg, self.rng
        W = cfg.row_width
        if op is None:
            op = rng.choices(_VEC_OPS, weights=[8, 5, 8, 4, 4, 6, 3, 3, 4, 3, 3, 5, 4, 3])[0]
        if op is Opcode.VLUTLD:
            src = self._rows_operand(Space.ACC, 1, span=256 // W)
            return instr(op, src1=src, imm=rng.randrange(cfg.lut_tables))
        rows = rng.choice([0, 1, 1, 2, 3, 4, 5, 7, 8, 12])
        if op is Opcode.VTRANS:
            rows = min(rows, 3)
            return instr(op, rows=rows,
                         src1=self._rows_operand(self._space(), rows, span=W),
                         dst=self._rows_operand(self._space(), rows, span=W))
        if op in _REDUCE:
            rows = max(rows, 1)
            return instr(op, rows=rows, horizontal=rng.randint(0, 1),
                         src1=self._rows_operand(self._space(), rows),
                         dst=self._rows_operand(self._space(), 1))
        fields: dict = {"rows": rows, "src1": self._rows_operand(self._space(), rows),
                        "dst": self._rows_operand(self._space(), rows)}
        if op is Opcode.VMASK:
            coef = (-32768, -3, -2, -1, 0, 1, 2, 3, 32767)
            fields.update(mask_a=rng.choice(coef), mask_b=rng.choice(coef),
                          imm=rng.choice([self.i32(), rng.randint(-8, 8)]))
            return instr(op, **fields)
        fields["shift"] = self.shift()
        if op is Opcode.VLUT:
            fields["imm"] = rng.randrange(cfg.lut_tables)
        elif op is Opcode.VRECIP:
            fields["imm"] = rng.choice([0, 1, 7, 1000, 1 << 24, nx.INT32_MAX,
                                        rng.randint(0, nx.INT32_MAX)])
        elif op in _BINARY:
            mode = rng.choice(list(Src2Mode)[:3])
            if mode is Src2Mode.VEC:
                fields["src2"] = {"mode": mode, **self._rows_operand(self._space(), rows)}
            elif mode is Src2Mode.SCALAR:
                space = self._space()
                n = self.region[space] * W
                stride = rng.randint(-5, 5)
                lo, hi = min(0, (rows - 1) * stride), max(0, (rows - 1) * stride)
                addr = rng.randint(-lo, n - 1 - hi) if hi - lo < n else 0
                fields["src2"] = {"mode": mode, "space": space, "addr": addr, "stride": stride}
            else:
                fields["src2"] = {"mode": mode}
                fields["imm"] = self.i32()
        return instr(op, **fields)

    def program(self, model: VecModel, n: int) -> tuple[list[Instruction], list[Expected]]:
        """``n`` instructions the model accepts, and their expected results. The first ones
        cover every opcode once (in random order), the rest are drawn by weight."""
        program, expected = [], []
        first = self.rng.sample(_VEC_OPS, len(_VEC_OPS))
        while len(program) < n:
            ins = self.candidate(first[len(program)] if len(program) < len(first) else None)
            if model.hazard(ins):
                continue
            try:
                exp = model.execute(ins)
            except (MachineError, RaceError):
                continue
            program.append(ins)
            expected.append(exp)
        return program, expected


# ---------------------------------------------------------------------------------------------
# Directed cases

def _blank(cfg: AccelConfig, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Memories filled with random values, so that a stray write anywhere is visible."""
    sp = np.array([rng.randint(-128, 127) for _ in range(cfg.sp_bytes)], np.int8)
    acc = np.array([rng.randint(-1000, 1000) for _ in range(cfg.acc_elems)], np.int32)
    return sp, acc


def _put(mem: np.ndarray, row: int, values, width: int) -> int:
    """Store ``values`` (flattened, row-major) from row ``row``; return the element address."""
    v = np.asarray(values).ravel()
    mem[row * width:row * width + v.size] = v
    return row * width


def _op(space: Space, addr: int, stride: int = 0) -> dict:
    return {"space": space, "addr": addr, "stride": stride}


def edge_cases(cfg: AccelConfig, seed: int = 0) -> list[Case]:
    """Directed programs for the corners of every opcode (see each case's name)."""
    rng = random.Random(seed)
    W = cfg.row_width
    SP, ACC = Space.SP, Space.ACC
    MIN, MAX = nx.INT32_MIN, nx.INT32_MAX
    cases = []

    # Saturation both ways, every shift corner, INT32_MIN × INT32_MIN, every src2 mode.
    sp, acc = _blank(cfg, rng)
    a = _put(acc, 0, np.resize([MAX, MIN, -1, 1, MIN, MAX, 0, 12345], 2 * W), W)
    b = _put(acc, 2, np.resize([MAX, MAX, MIN, 1, MIN, -1, 0, -54321], 2 * W), W)
    mins = _put(acc, 4, [MIN] * W, W)
    s8 = _put(sp, 0, np.resize([127, -128, -1, 1, 100, -100, 0, 64], 2 * W), W)
    prog = [
        instr(Opcode.VADD, dst=_op(ACC, 8 * W, W), src1=_op(ACC, a, W), rows=2,
              src2={"mode": Src2Mode.VEC, **_op(ACC, b, W)}),
        instr(Opcode.VADD, dst=_op(SP, 8 * W, W), src1=_op(ACC, a, W), rows=2,
              src2={"mode": Src2Mode.VEC, **_op(ACC, b, W)}),
        instr(Opcode.VSUB, dst=_op(ACC, 10 * W, W), src1=_op(ACC, a, W), rows=2,
              src2={"mode": Src2Mode.VEC, **_op(ACC, b, W)}),
        instr(Opcode.VSUB, dst=_op(SP, 10 * W, W), src1=_op(SP, s8, W), rows=2,
              src2={"mode": Src2Mode.IMM}, imm=MIN),
    ]
    for k, shift in enumerate((0, 1, 31, 32, 61, 62, 63)):
        for dst in (ACC, SP):
            prog.append(instr(Opcode.VMUL, dst=_op(dst, (12 + k) * W), src1=_op(ACC, mins),
                              rows=1, shift=shift,
                              src2={"mode": Src2Mode.SCALAR, **_op(ACC, mins + W - 1)}))
        prog.append(instr(Opcode.VMUL, dst=_op(ACC, (20 + k) * W, W), src1=_op(ACC, a, W),
                          rows=2, shift=shift, src2={"mode": Src2Mode.IMM}, imm=MIN))
        prog.append(instr(Opcode.VMAX, dst=_op(SP, (20 + k) * W, W), src1=_op(ACC, a, W),
                          rows=2, shift=shift, src2={"mode": Src2Mode.IMM}, imm=-3))
        prog.append(instr(Opcode.VMIN, dst=_op(ACC, (28 + k) * W), src1=_op(SP, s8),
                          rows=1, shift=shift,
                          src2={"mode": Src2Mode.SCALAR, **_op(SP, s8 + 1)}))
    # SCALAR addresses anywhere in a row, negative and zero strides, every space pairing.
    for k, (s1, s2, dst) in enumerate([(SP, SP, SP), (SP, ACC, ACC), (ACC, SP, SP),
                                       (ACC, ACC, ACC)]):
        src1 = _op(s1, a if s1 is ACC else s8, W)
        prog.append(instr(Opcode.VADD, dst=_op(dst, (40 + 2 * k) * W, W), src1=src1, rows=2,
                          src2={"mode": Src2Mode.SCALAR, **_op(s2, 3 + k, -1 - k)}))
        prog.append(instr(Opcode.VMUL, dst=_op(dst, (49 + 2 * k) * W, -W), src1=src1,
                          rows=2, shift=3,
                          src2={"mode": Src2Mode.VEC, **_op(s2, 2 * W, 0)}))
    cases.append(Case("saturation_shifts_src2", sp, acc, prog))

    # Reciprocal of ≤ 0 and of extremes; square root of 0, negatives and INT32_MAX.
    sp, acc = _blank(cfg, rng)
    vals = [0, -1, MIN, 1, 2, 3, MAX, 7, 46340 ** 2, 46340 ** 2 - 1, 46340 ** 2 + 1, 15, 16,
            17, MAX - 1, 65536]
    v = _put(acc, 0, np.resize(vals, 4 * W), W)
    sv = _put(sp, 0, np.resize([0, -1, -128, 127, 1, 2, 3, 100], 2 * W), W)
    prog = []
    for k, (num, shift, dst) in enumerate([(0, 0, ACC), (1, 0, ACC), (MAX, 0, ACC),
                                           (1000, 2, SP), (MAX, 31, ACC)]):
        prog.append(instr(Opcode.VRECIP, dst=_op(dst, (8 + 4 * k) * W, W), src1=_op(ACC, v, W),
                          rows=4, imm=num, shift=shift))
    prog.append(instr(Opcode.VRECIP, dst=_op(ACC, 30 * W, W), src1=_op(SP, sv, W), rows=2,
                      imm=255))
    for k, (shift, dst) in enumerate([(0, ACC), (0, SP), (3, SP), (63, ACC)]):
        prog.append(instr(Opcode.VISQRT, dst=_op(dst, (32 + 4 * k) * W, W),
                          src1=_op(ACC, v, W), rows=4, shift=shift))
    prog.append(instr(Opcode.VISQRT, dst=_op(SP, 50 * W, W), src1=_op(SP, sv, W), rows=2))
    cases.append(Case("recip_isqrt", sp, acc, prog))

    # Reductions: all-equal rows (a softmax row of equal scores), ties across lanes, sums
    # that saturate both ways, argmax indices beyond int8.
    sp, acc = _blank(cfg, rng)
    eq_a = _put(acc, 0, [777] * (5 * W), W)
    tie = np.full((3, W), -5)
    tie[0, W - 1] = 9      # lane W-1 reaches the maximum in row 0 ...
    tie[2, 0] = 9          # ... lane 0 only in row 2: the first in row-major order is lane W-1
    tie_a = _put(acc, 8, tie, W)
    tie_s = _put(sp, 8, tie, W)
    big = _put(acc, 12, [MAX] * (3 * W), W)
    small = _put(acc, 16, [MIN] * (3 * W), W)
    long_rows = 40
    ramp = _put(acc, 20, np.arange(long_rows * W), W)    # argmax beyond int8
    prog = []
    for h in (0, 1):
        for k, (op, src, rows) in enumerate([
                (Opcode.VARGMAX, _op(ACC, eq_a, W), 5), (Opcode.VREDMAX, _op(ACC, eq_a, W), 5),
                (Opcode.VARGMAX, _op(ACC, tie_a, W), 3), (Opcode.VARGMAX, _op(SP, tie_s, W), 3),
                (Opcode.VREDMAX, _op(SP, tie_s, W), 3), (Opcode.VREDSUM, _op(ACC, big, W), 3),
                (Opcode.VREDSUM, _op(ACC, small, W), 3), (Opcode.VREDSUM, _op(SP, tie_s, W), 3),
                (Opcode.VARGMAX, _op(ACC, ramp, W), long_rows)]):
            for dst in (ACC, SP):
                row = 100 + 20 * h + 2 * k + (dst is SP)
                prog.append(instr(op, dst=_op(dst, row * W), src1=src, rows=rows,
                                  horizontal=h))
    cases.append(Case("reductions_ties_saturation", sp, acc, prog))

    # Masks with negative, zero and extreme coefficients; saturation of unmasked values.
    sp, acc = _blank(cfg, rng)
    m_a = _put(acc, 0, np.resize([MAX, MIN, 300, -300, 5, 0], 6 * W), W)
    m_s = _put(sp, 0, np.resize([127, -128, 3, -3], 6 * W), W)
    prog = []
    for k, (ma, mb, imm) in enumerate([(1, -1, 0), (-1, 1, 2), (-1, -1, 3), (2, -3, -1),
                                       (-32768, 32767, 0), (0, 0, 1), (0, 0, 0),
                                       (3, 2, MIN), (-2, -2, MAX)]):
        for dst in (ACC, SP):
            src = _op(ACC, m_a, W) if k % 2 else _op(SP, m_s, W)
            prog.append(instr(Opcode.VMASK, dst=_op(dst, (10 + 7 * k) * W, W), src1=src,
                              rows=6, mask_a=ma, mask_b=mb, imm=imm))
    cases.append(Case("masks", sp, acc, prog))

    # Lookup tables: entries beyond int16 saturate on load; indices beyond int8 saturate.
    sp, acc = _blank(cfg, rng)
    lut_rows = 256 // W
    t0 = _put(acc, 0, [rng.randint(-40000, 40000) for _ in range(256)], W)
    t1 = _put(acc, lut_rows, np.arange(256) * 300 - 38400, W)
    idx_a = _put(acc, 2 * lut_rows, np.resize([MIN, -1000, -129, -128, -127, -1, 0, 1, 126,
                                               127, 128, 1000, MAX], 4 * W), W)
    idx_s = _put(sp, 0, np.resize([-128, -127, -1, 0, 1, 126, 127, 64], 2 * W), W)
    last = cfg.lut_tables - 1
    prog = [instr(Opcode.VLUTLD, src1=_op(ACC, t0), imm=0),
            instr(Opcode.VLUTLD, src1=_op(ACC, t1), imm=last)]
    for k, (table, src, rows, shift, dst) in enumerate([
            (0, _op(ACC, idx_a, W), 4, 0, ACC), (0, _op(ACC, idx_a, W), 4, 0, SP),
            (last, _op(ACC, idx_a, W), 4, 5, ACC), (last, _op(SP, idx_s, W), 2, 0, SP),
            (0, _op(SP, idx_s, W), 2, 1, ACC)]):
        prog.append(instr(Opcode.VLUT, dst=_op(dst, (2 * lut_rows + 8 + 4 * k) * W, W),
                          src1=src, rows=rows, imm=table, shift=shift))
    cases.append(Case("lut_load_lookup", sp, acc, prog))

    # Block transposes: several blocks, negative strides, ACC → SP saturation, in place.
    sp, acc = _blank(cfg, rng)
    blk = W * W
    ta = _put(acc, 0, [rng.choice([MIN, MAX, rng.randint(-300, 300)]) for _ in range(3 * blk)],
              W)
    ts = _put(sp, 0, [rng.randint(-128, 127) for _ in range(3 * blk)], W)
    prog = [
        instr(Opcode.VTRANS, dst=_op(SP, 4 * blk, blk), src1=_op(ACC, ta, blk), rows=3),
        instr(Opcode.VTRANS, dst=_op(ACC, 4 * blk, -blk), src1=_op(SP, ts + 2 * blk, -blk),
              rows=3),
        instr(Opcode.VTRANS, dst=_op(ACC, 8 * blk, 2 * blk), src1=_op(ACC, ta, 0), rows=2),
        instr(Opcode.VTRANS, dst=_op(SP, ts, 0), src1=_op(SP, ts, 0), rows=1),
        instr(Opcode.VTRANS, dst=_op(SP, 8 * blk, 0), src1=_op(SP, 4 * blk, blk), rows=3),
    ]
    cases.append(Case("transposes", sp, acc, prog))

    # A SCALAR operand inside the row being written: read before the row's first write even
    # when a row takes more beats than the pipeline is deep (W / L > 5).
    sp, acc = _blank(cfg, rng)
    prog = []
    for space in (ACC, SP):
        for op, lane in ((Opcode.VADD, 0), (Opcode.VMUL, 1 % W), (Opcode.VSUB, W - 1)):
            prog.append(instr(op, dst=_op(space, 5 * W, W), src1=_op(space, 5 * W, W),
                              rows=3, src2={"mode": Src2Mode.SCALAR,
                                            **_op(space, 5 * W + lane, W)}))
    cases.append(Case("scalar_in_place", sp, acc, prog))

    # Zero-row instructions between real ones.
    sp, acc = _blank(cfg, rng)
    prog = []
    for op in (Opcode.VADD, Opcode.VRECIP, Opcode.VISQRT, Opcode.VMASK, Opcode.VTRANS,
               Opcode.VLUT, Opcode.VMUL):
        prog.append(instr(op, dst=_op(ACC, 0), src1=_op(SP, 0), rows=0))
        prog.append(instr(Opcode.VADD, dst=_op(ACC, 4 * W, W), src1=_op(ACC, 4 * W, W), rows=2,
                          src2={"mode": Src2Mode.IMM}, imm=1))
    cases.append(Case("zero_rows", sp, acc, prog))
    return cases


# ---------------------------------------------------------------------------------------------
# Composites: the instruction sequences of numerics.layernorm_int and numerics.softmax_int

def layernorm_case(cfg: AccelConfig, rng: random.Random, features: int = 8, *,
                   constant: bool = False) -> Case:
    """``numerics.layernorm_int`` over ``features`` for W tokens in the T layout (row f holds
    feature f of every token): ten instructions, as the compiler emits them. With
    ``constant`` every token's features are equal (zero variance)."""
    W = cfg.row_width
    SP, ACC = Space.SP, Space.ACC
    F = features
    sp, acc = _blank(cfg, rng)
    if constant:
        x = np.repeat(np.array([[rng.randint(-20000, 20000)] for _ in range(W)]), F, axis=1)
    else:
        x = np.array([[rng.randint(-20000, 20000) for _ in range(F)] for _ in range(W)])
    mean_m, mean_s = nx.requant_multiplier(1 / F)
    p = nx.LayerNormParams(
        mean_m=mean_m, mean_s=mean_s, var_s=6, recip_num=1 << 24, norm_s=10,
        gamma_m=np.array([rng.randint(100, 400) for _ in range(F)], np.int64),
        beta=np.array([rng.randint(-5 << 20, 5 << 20) for _ in range(F)], np.int64),
        out_s=19)
    # ACC layout (rows): X, C, Q, Z, Y (F rows each), then S, MU, V, R, INV, then γ and β.
    X, C, Q, Z, Y = (k * F * W for k in range(5))
    S, MU, V, R, INV = ((5 * F + k) * W for k in range(5))
    G = (5 * F + 5) * W
    BETA = G + F
    _put(acc, 0, x.T, W)
    acc[G:G + F] = p.gamma_m
    acc[BETA:BETA + F] = p.beta
    OUT = 8 * W
    rows = {"rows": F}
    vec = lambda addr, stride=W: {"mode": Src2Mode.VEC, **_op(ACC, addr, stride)}  # noqa: E731
    prog = [
        instr(Opcode.VREDSUM, dst=_op(ACC, S), src1=_op(ACC, X, W), **rows),
        instr(Opcode.VMUL, dst=_op(ACC, MU), src1=_op(ACC, S), rows=1, shift=p.mean_s,
              src2={"mode": Src2Mode.IMM}, imm=p.mean_m),
        instr(Opcode.VSUB, dst=_op(ACC, C, W), src1=_op(ACC, X, W), src2=vec(MU, 0), **rows),
        instr(Opcode.VMUL, dst=_op(ACC, Q, W), src1=_op(ACC, C, W), src2=vec(C), shift=p.var_s,
              **rows),
        instr(Opcode.VREDSUM, dst=_op(ACC, V), src1=_op(ACC, Q, W), **rows),
        instr(Opcode.VISQRT, dst=_op(ACC, R), src1=_op(ACC, V), rows=1),
        instr(Opcode.VRECIP, dst=_op(ACC, INV), src1=_op(ACC, R), rows=1, imm=p.recip_num),
        instr(Opcode.VMUL, dst=_op(ACC, Z, W), src1=_op(ACC, C, W), src2=vec(INV, 0),
              shift=p.norm_s, **rows),
        instr(Opcode.VMUL, dst=_op(ACC, Y, W), src1=_op(ACC, Z, W),
              src2={"mode": Src2Mode.SCALAR, **_op(ACC, G, 1)}, **rows),
        instr(Opcode.VADD, dst=_op(SP, OUT, W), src1=_op(ACC, Y, W),
              src2={"mode": Src2Mode.SCALAR, **_op(ACC, BETA, 1)}, shift=p.out_s, **rows),
    ]
    want = nx.layernorm_int(x, p)                       # (tokens, features)
    return Case("layernorm_zero_variance" if constant else "layernorm", sp, acc, prog,
                {"out": (SP, OUT, want.T)})


def softmax_case(cfg: AccelConfig, rng: random.Random, keys: int = 8, *,
                 equal: bool = False, table: int = 1) -> Case:
    """``numerics.softmax_int`` over ``keys`` rows (one per key, a lane per query, causal mask
    ``r − l + offset > 0``): a table load and six instructions, as the compiler emits them.
    With ``equal`` every unmasked score of a query is the same (all-equal softmax rows)."""
    W = cfg.row_width
    SP, ACC = Space.SP, Space.ACC
    K = keys
    sp, acc = _blank(cfg, rng)
    if equal:
        scores = np.tile([rng.randint(-2000, 2000) for _ in range(W)], (K, 1))
    else:
        scores = np.array([[rng.randint(-2000, 2000) for _ in range(W)] for _ in range(K)])
    offset = rng.randint(-2, 1)
    masked = (np.arange(K)[:, None] - np.arange(W)[None, :] + offset) > 0
    in_scale = 0.05
    in_m, in_s = nx.requant_multiplier(0.002 / in_scale)
    p = nx.SoftmaxParams(in_m=in_m, in_s=in_s, lut=nx.build_exp_lut(in_scale))
    lut_rows = 256 // W
    LUT = 0
    S, X, D = ((lut_rows + k * K) * W for k in range(3))
    M, Z = ((lut_rows + 3 * K + k) * W for k in range(2))
    I, E = 0, K * W
    acc[LUT:LUT + 256] = p.lut
    _put(acc, S // W, scores, W)
    rows = {"rows": K}
    prog = [
        instr(Opcode.VLUTLD, src1=_op(ACC, LUT), imm=table),
        instr(Opcode.VMASK, dst=_op(ACC, X, W), src1=_op(ACC, S, W), mask_a=1, mask_b=-1,
              imm=offset, **rows),
        instr(Opcode.VREDMAX, dst=_op(ACC, M), src1=_op(ACC, X, W), **rows),
        instr(Opcode.VSUB, dst=_op(ACC, D, W), src1=_op(ACC, X, W),
              src2={"mode": Src2Mode.VEC, **_op(ACC, M, 0)}, **rows),
        instr(Opcode.VMUL, dst=_op(SP, I, W), src1=_op(ACC, D, W), src2={"mode": Src2Mode.IMM},
              imm=p.in_m, shift=p.in_s, **rows),
        instr(Opcode.VLUT, dst=_op(SP, E, W), src1=_op(SP, I, W), imm=table, **rows),
        instr(Opcode.VREDSUM, dst=_op(ACC, Z), src1=_op(SP, E, W), **rows),
    ]
    e, z = nx.softmax_int(scores, masked, p, axis=0)
    return Case("softmax_equal" if equal else "softmax", sp, acc, prog,
                {"e": (SP, E, e), "z": (ACC, Z, z)})


def check_composite(case: Case, sp: np.ndarray, acc: np.ndarray, width: int) -> None:
    """Assert that the memories hold what the numerics function predicted for ``case``."""
    for name, (space, addr, want) in case.checks.items():
        mem = acc if space is Space.ACC else sp
        want = np.asarray(want)
        got = mem[addr:addr + want.size].reshape(want.shape)
        np.testing.assert_array_equal(got, want, err_msg=f"{case.name}: {name}")


# ---------------------------------------------------------------------------------------------
# Amaranth-simulator driver and monitor

@dataclass
class AmaranthRun:
    """What :func:`run_amaranth` observed."""

    scoreboard: VecScoreboard
    sp: np.ndarray            # memories read back from the harness after the run
    acc: np.ndarray
    cycles: int
    busy_cycles: int          # cycles with o_busy high


def run_amaranth(cfg: AccelConfig, sp: np.ndarray, acc: np.ndarray,
                 program: list[Instruction], expected: list[Expected], *,
                 rng: random.Random | None = None, stall: float = 0.0,
                 max_cycles: int = 200_000) -> AmaranthRun:
    """Run ``program`` on a :class:`VectorUnitHarness` in the Amaranth simulator.

    A driver offers the instructions on ``i_cmd`` (with random idle cycles when ``stall`` > 0,
    back to back otherwise); a monitor samples the handshake, ``o_done`` and the unit's write
    ports every cycle and feeds the :class:`VecScoreboard`, which raises on the first
    difference. The memories are read back at the end.
    """
    from amaranth.sim import Simulator  # noqa: PLC0415

    from llmaccel.sim.testing import stream_put  # noqa: PLC0415

    W = cfg.row_width
    dut = VectorUnitHarness(cfg, sp_init=sp, acc_init=acc)
    sb = VecScoreboard(cfg, sp, acc, expected)
    state = {"cycle": 0, "accepts": [], "busy": 0}
    result = {}

    async def monitor(ctx):
        mon_sp, mon_acc = dut.mon_sp_wr, dut.mon_acc_wr
        async for _, _, valid, ready, done, busy, s_en, s_addr, s_data, a_en, a_addr, a_data \
                in ctx.tick().sample(dut.i_cmd.valid, dut.i_cmd.ready, dut.o_done, dut.o_busy,
                                     mon_sp.en, mon_sp.addr, mon_sp.data.as_value(),
                                     mon_acc.en, mon_acc.addr, mon_acc.data.as_value()):
            cycle = state["cycle"]
            state["busy"] += busy
            if s_en:
                sb.write(Space.SP, s_addr, s_data, s_en)
            if a_en:
                sb.write(Space.ACC, a_addr, a_data, a_en)
            if done:
                assert sb.done < len(state["accepts"]), "o_done before any instruction"
                sb.complete(cycle - state["accepts"][sb.done])
            if valid and ready:
                state["accepts"].append(cycle)
            state["cycle"] = cycle + 1

    async def driver(ctx):
        for ins in program:
            await stream_put(ctx, dut.i_cmd, payload_const(ins), rng=rng, stall=stall)
        while not sb.finished():
            assert state["cycle"] < max_cycles, "the vector unit did not finish (watchdog)"
            await ctx.tick()
        await ctx.tick()
        assert not ctx.get(dut.o_busy), "o_busy after the last o_done"
        rows = [ctx.get(dut.sp_mem.data[i].as_value()) for i in range(cfg.sp_rows)]
        result["sp"] = np.concatenate([unpack_row(r, Space.SP, W) for r in rows])
        rows = [ctx.get(dut.acc_mem.data[i].as_value()) for i in range(cfg.acc_rows)]
        result["acc"] = np.concatenate([unpack_row(r, Space.ACC, W) for r in rows])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(driver)
    sim.run()
    return AmaranthRun(sb, result["sp"], result["acc"], state["cycle"], state["busy"])


# ---------------------------------------------------------------------------------------------
# cocotb driver and monitor (used by tests/cocotb/tb_vector_unit.py on the harness's Verilog)

class CocotbCmdDriver:
    """Offers instructions on ``i_cmd``. Inputs change at falling edges; an instruction is
    taken at the rising edge that ends a cycle in which ``valid`` and ``ready`` are both high.
    With ``stall`` > 0 ``valid`` stays low for random cycles before each instruction."""

    def __init__(self, dut, *, rng: random.Random | None = None, stall: float = 0.0):
        self.dut = dut
        self.rng = rng
        self.stall = stall
        dut.i_cmd__valid.value = 0

    async def send(self, ins: Instruction) -> None:
        """Call at a falling edge; returns at the falling edge after the handshake."""
        from cocotb.triggers import FallingEdge  # noqa: PLC0415

        dut = self.dut
        while self.rng is not None and self.rng.random() < self.stall:
            dut.i_cmd__valid.value = 0
            await FallingEdge(dut.clk)
        dut.i_cmd__payload.value = payload_bits(ins)
        dut.i_cmd__valid.value = 1
        while True:
            ready = int(dut.i_cmd__ready.value)     # registered: independent of valid
            await FallingEdge(dut.clk)
            if ready:
                break
        dut.i_cmd__valid.value = 0


class CocotbWriteMonitor:
    """Watches every cycle (after the falling edge, in the read-only phase): handshakes on
    ``i_cmd``, ``o_done`` and the unit's SP/ACC write ports (``mon_*``), feeding a
    :class:`VecScoreboard` with writes and with each instruction's cycles."""

    def __init__(self, dut, cfg: AccelConfig, scoreboard: VecScoreboard):
        self.dut = dut
        self.cfg = cfg
        self.sb = scoreboard
        self.cycle = 0
        self.accepts: list[int] = []
        self.errors: list[str] = []

    async def run(self) -> None:
        from cocotb.triggers import FallingEdge, ReadOnly  # noqa: PLC0415

        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            try:
                s_en = int(dut.mon_sp_wr__en.value)
                if s_en:
                    self.sb.write(Space.SP, int(dut.mon_sp_wr__addr.value),
                                  int(dut.mon_sp_wr__data.value), s_en)
                a_en = int(dut.mon_acc_wr__en.value)
                if a_en:
                    self.sb.write(Space.ACC, int(dut.mon_acc_wr__addr.value),
                                  int(dut.mon_acc_wr__data.value), a_en)
                if int(dut.o_done.value):
                    assert self.sb.done < len(self.accepts), "o_done before any instruction"
                    self.sb.complete(self.cycle - self.accepts[self.sb.done])
            except AssertionError as e:
                # Keep the first difference; the test body reports it.
                self.errors.append(str(e))
                return
            if int(dut.i_cmd__valid.value) and int(dut.i_cmd__ready.value):
                self.accepts.append(self.cycle)
            self.cycle += 1


async def cocotb_load(dut, cfg: AccelConfig, sp: np.ndarray, acc: np.ndarray) -> None:
    """Write both memories through the host ports, one row of each per cycle (call at a
    falling edge with the unit idle)."""
    from cocotb.triggers import FallingEdge  # noqa: PLC0415

    W = cfg.row_width
    sp_rows, acc_rows = pack_rows(sp, Space.SP, W), pack_rows(acc, Space.ACC, W)
    full = (1 << W) - 1
    for i in range(max(len(sp_rows), len(acc_rows))):
        for rows, port in ((sp_rows, "host_sp_wr"), (acc_rows, "host_acc_wr")):
            en = full if i < len(rows) else 0
            getattr(dut, f"{port}__en").value = en
            if en:
                getattr(dut, f"{port}__addr").value = i
                getattr(dut, f"{port}__data").value = rows[i]
        await FallingEdge(dut.clk)
    dut.host_sp_wr__en.value = 0
    dut.host_acc_wr__en.value = 0
