"""Bench pieces shared by the DRAM-channel and PIM tests (Amaranth simulator and cocotb).

* :class:`PimHarness` — an Amaranth component wrapping :class:`~llmaccel.hw.dram_channel.
  DramChannel` and :class:`~llmaccel.hw.pim_unit.PimUnit` with a scratchpad and an accumulator
  memory, backdoor ports to load the scratchpad and read the accumulator, and the channel's
  host port to load DRAM.
* Stimulus: :func:`random_traffic` (column requests of several ports on disjoint columns of
  shared rows, so the expected data do not depend on the order between ports) and
  :func:`gemv_layout` (a GEMV laid out bank-interleaved and row-hit-first, plus its program).
* Models and scoreboards: :class:`ByteModel` (DRAM as a byte array, per-port expected read data),
  :func:`golden_pim` (runs the program on :class:`~llmaccel.sim.golden.isa_sim.GoldenMachine`),
  :func:`model_requests` / :func:`model_pim` (replay on :class:`~llmaccel.sim.golden.dram_model.
  DramModel` for the exact timing), :func:`trace_entry` (monitor values → trace tuples).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.dram_bank import DramCmd
from llmaccel.hw.dram_channel import DramChannel, cmd_layout, host_signature, mac_layout
from llmaccel.hw.isa import Instruction, Opcode, PimInstr
from llmaccel.hw.pim_unit import PimUnit
from llmaccel.hw.ports import acc_read_signature, dram_port_signature, sp_write_signature
from llmaccel.sim.golden.dram_model import DramModel
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sw.asm import instr

__all__ = [
    "LINT_WAIVERS",
    "ByteModel",
    "CmdMonitor",
    "CocotbBench",
    "GemvCase",
    "PimDriver",
    "PimHarness",
    "Req",
    "ReqDriver",
    "RspMonitor",
    "cocotb_config",
    "gemv_layout",
    "golden_pim",
    "model_pim",
    "model_requests",
    "random_traffic",
    "sp_init_rows",
    "trace_entry",
]


#: Extra Verilator lint waivers for the channel and the PIM unit (passed to lint_verilog).
LINT_WAIVERS = {
    "WIDTHEXPAND": "Amaranth's generator compares and adds operands of different widths (e.g. "
                   "a narrow constant or a 3-bit row register against a 16-bit ISA field); "
                   "Verilog's context sizing extends them exactly as Amaranth's rules do.",
    "WIDTHTRUNC": "Amaranth lowers `x == 0` on a multi-bit value to `!x`, and truncating "
                  "assignments are explicit slices in the source.",
    "CASEINCOMPLETE": "Array indexing and If/Elif chains become casez statements without a "
                      "default; the value keeps its default assignment made before the case.",
    "DECLFILENAME": "Submodules are emitted as `top.sub` modules in the one generated file.",
}


# -------------------------------------------------------------------------------------------
# Harness
class PimHarness(wiring.Component):
    """Channel + PIM unit + scratchpad + accumulator, for tests and the PIM benchmark.

    Ports: ``i_cmd``/``o_done``/``o_busy`` (the PIM unit), ``sp_w`` (backdoor scratchpad
    write), ``acc_r`` (backdoor accumulator read), ``host`` (the channel's DRAM backdoor),
    ``o_cmd``/``o_mac`` (the channel's monitor outputs) and ``ports`` (``n_ports`` requester
    ports of the channel, for traffic mixed with PIM).
    """

    def __init__(self, cfg: AccelConfig, *, n_ports: int = 1, image: bytes | None = None,
                 sp_init: np.ndarray | None = None):
        self.cfg = cfg
        self.n_ports = n_ports
        self._image = image
        self._sp_init = sp_init
        super().__init__({
            "i_cmd": In(stream.Signature(PimInstr)),
            "o_done": Out(1),
            "o_busy": Out(1),
            "sp_w": Out(sp_write_signature(cfg)),
            "acc_r": Out(acc_read_signature(cfg)),
            "host": In(host_signature(cfg)),
            "o_cmd": Out(cmd_layout(cfg)),
            "o_mac": Out(mac_layout(cfg)),
            "ports": In(dram_port_signature(cfg)).array(n_ports),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        W = cfg.row_width
        m.submodules.channel = ch = DramChannel(cfg, self.n_ports, self._image)
        m.submodules.pim = pim = PimUnit(cfg)
        init = sp_init_rows(cfg, self._sp_init) if self._sp_init is not None else []
        m.submodules.sp = sp = memory.Memory(shape=unsigned(8 * W), depth=cfg.sp_rows,
                                             init=init)
        m.submodules.acc = acc = memory.Memory(shape=unsigned(32 * W), depth=cfg.acc_rows,
                                               init=[])
        sp_r = sp.read_port()
        sp_w = sp.write_port(granularity=8)
        acc_w = acc.write_port(granularity=32)
        acc_r = acc.read_port()
        m.d.comb += [
            sp_r.addr.eq(pim.sp_rd.addr), sp_r.en.eq(pim.sp_rd.en),
            pim.sp_rd.data.eq(sp_r.data),
            sp_w.addr.eq(self.sp_w.addr), sp_w.data.eq(self.sp_w.data.as_value()),
            sp_w.en.eq(self.sp_w.en),
            acc_w.addr.eq(pim.acc_wr.addr), acc_w.data.eq(pim.acc_wr.data.as_value()),
            acc_w.en.eq(pim.acc_wr.en),
            acc_r.addr.eq(self.acc_r.addr), acc_r.en.eq(self.acc_r.en),
            self.acc_r.data.eq(acc_r.data),
        ]
        wiring.connect(m, pim.pim, ch.pim)
        wiring.connect(m, wiring.flipped(self.i_cmd), pim.i_cmd)
        wiring.connect(m, wiring.flipped(self.host), ch.host)
        for p in range(self.n_ports):
            wiring.connect(m, wiring.flipped(self.ports[p]), ch.ports[p])
        m.d.comb += [self.o_done.eq(pim.o_done), self.o_busy.eq(pim.o_busy),
                     self.o_cmd.eq(ch.o_cmd), self.o_mac.eq(ch.o_mac)]
        return m


def sp_init_rows(cfg: AccelConfig, sp: np.ndarray) -> list[int]:
    """Scratchpad contents (int8, element order) as row words for a memory initialiser."""
    W = cfg.row_width
    b = np.zeros(cfg.sp_bytes, dtype=np.uint8)
    b[:sp.size] = np.asarray(sp).astype(np.int8).view(np.uint8)
    rows = b.reshape(-1, W)
    last = int(np.flatnonzero(rows.any(axis=1)).max()) + 1 if rows.any() else 0
    return [int.from_bytes(r.tobytes(), "little") for r in rows[:last]]


def trace_entry(cycle: int, kind: int, bank: int, row: int, col: int) -> tuple:
    """One monitor sample as a trace tuple ``(cycle, kind name, bank, row, col)``."""
    return (cycle, DramCmd(kind).name, bank, row, col)


# -------------------------------------------------------------------------------------------
# DRAM traffic
@dataclass
class Req:
    """A column request of one port: column address, write flag, data, byte mask."""

    port: int
    addr: int
    write: bool
    wdata: bytes = bytes(32)
    wmask: int = 0
    gap: int = 0                 # idle cycles before the driver presents it


def random_traffic(cfg: AccelConfig, rng: random.Random, n_ports: int, n: int, *,
                   rows: int = 3, banks: int | None = None, write_frac: float = 0.4,
                   gap: int = 0, row_base: int = 0) -> list[list[Req]]:
    """``n`` requests per port on ``rows`` rows of the first ``banks`` banks; port p only
    touches columns ≡ p (mod n_ports) so ports never touch the same bytes."""
    banks = cfg.dram_banks if banks is None else banks
    cols = list(range(cfg.cols_per_row))
    out = []
    for p in range(n_ports):
        mine = [c for c in cols if c % n_ports == p] or cols[:1]
        reqs = []
        for _ in range(n):
            bank = rng.randrange(banks)
            row = row_base + rng.randrange(rows)
            col = rng.choice(mine)
            addr = cfg.dram_addr(bank, row, col) // cfg.col_bytes
            write = rng.random() < write_frac
            # A read's data and byte mask are ignored; random here too, so that a write enable
            # leaking from a read would corrupt bytes the checks read back.
            wdata = bytes(rng.randrange(256) for _ in range(cfg.col_bytes))
            wmask = rng.choice([(1 << 32) - 1, rng.getrandbits(32)])
            reqs.append(Req(p, addr, write, wdata, wmask, rng.randrange(gap + 1)))
        out.append(reqs)
    return out


class ByteModel:
    """DRAM as a byte array: apply requests in each port's order; the expected read data."""

    def __init__(self, cfg: AccelConfig, image: bytes | None = None):
        self.cfg = cfg
        self.mem = np.zeros(cfg.dram_bytes, dtype=np.uint8)
        if image is not None:
            self.mem[:len(image)] = np.frombuffer(bytes(image), dtype=np.uint8)

    def apply(self, r: Req) -> bytes | None:
        a = r.addr * self.cfg.col_bytes
        if r.write:
            mask = np.array([(r.wmask >> i) & 1 for i in range(self.cfg.col_bytes)], bool)
            cur = self.mem[a:a + self.cfg.col_bytes]
            cur[mask] = np.frombuffer(r.wdata, dtype=np.uint8)[mask]
            return None
        return self.mem[a:a + self.cfg.col_bytes].tobytes()

    def expected(self, traffic: list[list[Req]]) -> list[list[bytes]]:
        """Read data per port, in order (ports touch disjoint bytes)."""
        return [[d for d in (self.apply(r) for r in reqs) if d is not None]
                for reqs in traffic]


def model_requests(cfg: AccelConfig, traffic: list[list[Req]], presented: list[list[int]],
                   *, to_cycle: int | None = None, **kw) -> DramModel:
    """Replay requests with the cycles their ``valid`` rose in the RTL run (and simulate the
    idle channel up to ``to_cycle``)."""
    dm = DramModel(cfg, len(traffic), **kw)
    for p, reqs in enumerate(traffic):
        for r, c in zip(reqs, presented[p], strict=True):
            dm.present_addr(p, c, r.addr, r.write)
    dm.run(to_cycle=to_cycle)
    return dm


# -------------------------------------------------------------------------------------------
# PIM GEMV
@dataclass
class GemvCase:
    """A GEMV y = W·x laid out for PIM, with its program and the golden results."""

    K: int
    N: int
    weights: np.ndarray                       # (N, K) int8
    x: np.ndarray                             # (K,) int8
    image: bytes                              # DRAM image (weights placed)
    sp: np.ndarray                            # scratchpad contents (int8)
    program: list[Instruction] = field(default_factory=list)
    acc_addr: int = 0
    mac_count: int = 0
    cols_per_row_used: int = 0                # columns per opened row per bank (n)
    weight_bytes: int = 0                     # bytes the MACs read from the banks


def gemv_layout(cfg: AccelConfig, K: int, N: int, *, rng: np.random.Generator | None = None,
                weights: np.ndarray | None = None, x: np.ndarray | None = None,
                row0: int = 0, slot0: int = 0, sp_addr: int = 0, gb_addr: int = 0,
                acc_addr: int = 0, image: np.ndarray | None = None) -> GemvCase:
    """Lay out y = W·x (W: N×K int8) bank-interleaved and row-hit-first: output o lives in bank
    o%B, slot slot0 + o//B, its ⌈K/32⌉ columns consecutive (an output spans rows only when it
    needs more columns than a row has; then successive MACs accumulate). Returns the case with
    its program: WRGB x, the MACs (one per opened row), READ."""
    B, C, CB = cfg.dram_banks, cfg.cols_per_row, cfg.col_bytes
    rng = rng or np.random.default_rng(0)
    if weights is None:
        weights = rng.integers(-128, 128, size=(N, K), dtype=np.int64).astype(np.int8)
    if x is None:
        x = rng.integers(-128, 128, size=K, dtype=np.int64).astype(np.int8)
    if gb_addr % CB:
        raise ValueError(f"gb_addr must be a multiple of {CB}, not {gb_addr!r}")
    kc = -(-K // CB)
    nb = -(-N // B)
    img = np.zeros(cfg.dram_bytes, dtype=np.uint8) if image is None else image.copy()
    wpad = np.zeros((nb * B, kc * CB), dtype=np.int8)
    wpad[:N, :K] = weights
    prog = [instr(Opcode.PIM_WRGB, sram_addr=sp_addr, gb_addr=gb_addr, len=K)]
    chunk0 = gb_addr // CB
    if kc <= C:
        opr = C // kc
        nrows = -(-nb // opr)
        for s in range(nb):
            for b in range(B):
                o = s * B + b
                row, col = row0 + s // opr, (s % opr) * kc
                for c in range(kc):
                    a = cfg.dram_addr(b, row, col + c)
                    img[a:a + CB] = wpad[o, c * CB:(c + 1) * CB].view(np.uint8)
        for r in range(nrows):
            outs = min(opr, nb - r * opr)
            prog.append(instr(Opcode.PIM_MAC, row=row0 + r, col=0, ncols=outs * kc, kc=kc,
                              gb_chunk=chunk0, slot=slot0 + r * opr))
        used = min(nb, opr) * kc
    else:
        rpo = -(-kc // C)
        for s in range(nb):
            for b in range(B):
                o = s * B + b
                for c in range(kc):
                    a = cfg.dram_addr(b, row0 + s * rpo + c // C, c % C)
                    img[a:a + CB] = wpad[o, c * CB:(c + 1) * CB].view(np.uint8)
        for s in range(nb):
            for q in range(rpo):
                n = min(C, kc - q * C)
                prog.append(instr(Opcode.PIM_MAC, row=row0 + s * rpo + q, col=0, ncols=n,
                                  kc=n, gb_chunk=chunk0 + q * C, slot=slot0 + s,
                                  accumulate=int(q > 0)))
        used = C
    prog.append(instr(Opcode.PIM_READ, slot=slot0, nslots=nb, sram_addr=acc_addr))
    sp = np.zeros(sp_addr + K, dtype=np.int8)
    sp[sp_addr:] = x
    macs = [p for p in prog if p.opcode is Opcode.PIM_MAC]
    return GemvCase(K, N, weights, x, img.tobytes(), sp, prog, acc_addr, len(macs), used,
                    sum(p.ncols for p in macs) * B * CB)


def golden_pim(cfg: AccelConfig, image: bytes, sp: np.ndarray,
               program: list[Instruction], acc: tuple[int, np.ndarray] | None = None
               ) -> GoldenMachine:
    """Run ``program`` on the golden machine from the given DRAM image and scratchpad (and
    accumulator contents ``acc = (start, values)`` left by earlier tests)."""
    gm = GoldenMachine(cfg, check_races=False)
    gm.load_dram(0, image)
    gm.sp[:sp.size] = sp
    if acc is not None:
        gm.acc[acc[0]:acc[0] + acc[1].size] = acc[1]
    for ins in program:
        gm.execute(ins)
    return gm


def model_pim(cfg: AccelConfig, program: list[Instruction], presented: list[int], *,
              n_ports: int = 1, to_cycle: int | None = None) -> DramModel:
    """Replay PIM instructions with the cycles their ``valid`` rose in the RTL run."""
    dm = DramModel(cfg, n_ports)
    for ins, c in zip(program, presented, strict=True):
        dm.pim(c, ins)
    dm.run(to_cycle=to_cycle)
    return dm


# -------------------------------------------------------------------------------------------
# cocotb pieces (imported lazily: the Amaranth-simulator tests use only the parts above)
def cocotb_config() -> AccelConfig:
    """The small configuration the cocotb benches are built for (one build serves both the
    DRAM and the PIM tests): tiny, 16 rows × 8 columns per bank, refresh every 600 cycles."""
    from llmaccel.hw.config import DramTiming, preset  # noqa: PLC0415

    return preset("tiny").replace(name="cocotb_dram", bank_rows=16, cols_per_row=8,
                                  timing=DramTiming(tREFI=600, tRFC=40))


class CocotbBench:
    """Clock, reset, cycle counter and backdoors of a :class:`PimHarness` under cocotb.

    Cycle 0 is the first cycle after reset (as in the Amaranth tests and the model). Inputs
    are driven and outputs sampled at the falling edge, in the middle of the cycle."""

    def __init__(self, dut, cfg: AccelConfig, n_ports: int):
        self.dut, self.cfg, self.n_ports = dut, cfg, n_ports
        self.cycle = 0

    async def start(self) -> None:
        import cocotb  # noqa: PLC0415
        from cocotb.clock import Clock  # noqa: PLC0415
        from cocotb.triggers import ClockCycles, FallingEdge  # noqa: PLC0415

        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        for sig in ("i_cmd__valid", "sp_w__en", "acc_r__en", "host__re", "host__we"):
            getattr(dut, sig).value = 0
        for p in range(self.n_ports):
            getattr(dut, f"ports__{p}__req__valid").value = 0
            getattr(dut, f"ports__{p}__rsp__ready").value = 0
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        self.cycle = 0
        cocotb.start_soon(self._count())

    async def _count(self) -> None:
        from cocotb.triggers import RisingEdge  # noqa: PLC0415

        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    async def tick(self, n: int = 1) -> None:
        from cocotb.triggers import FallingEdge  # noqa: PLC0415

        for _ in range(n):
            await FallingEdge(self.dut.clk)

    async def load_dram(self, image: bytes) -> None:
        """Write every column of ``image`` through the host port (earlier tests' data in
        those columns are overwritten)."""
        dut, cb = self.dut, self.cfg.col_bytes
        img = np.frombuffer(bytes(image), dtype=np.uint8)
        img = np.pad(img, (0, -img.size % cb)).reshape(-1, cb)
        dut.host__we.value = 1
        dut.host__wmask.value = (1 << cb) - 1
        for a in range(img.shape[0]):
            dut.host__addr.value = a
            dut.host__wdata.value = int.from_bytes(img[a].tobytes(), "little")
            await self.tick()
        dut.host__we.value = 0

    async def read_dram(self, n_cols: int) -> bytes:
        dut, cb = self.dut, self.cfg.col_bytes
        out = []
        dut.host__re.value = 1
        for a in range(n_cols):
            dut.host__addr.value = a
            await self.tick()
            out.append(int(dut.host__rdata.value).to_bytes(cb, "little"))
        dut.host__re.value = 0
        return b"".join(out)

    async def load_sp(self, sp: np.ndarray) -> None:
        dut, W = self.dut, self.cfg.row_width
        rows = sp_init_rows(self.cfg, sp)
        rows += [0] * (-(-sp.size // W) - len(rows))
        dut.sp_w__en.value = (1 << W) - 1
        for r, word in enumerate(rows):
            dut.sp_w__addr.value = r
            dut.sp_w__data.value = word
            await self.tick()
        dut.sp_w__en.value = 0

    async def read_acc(self, start: int, count: int) -> np.ndarray:
        dut, W = self.dut, self.cfg.row_width
        words = []
        dut.acc_r__en.value = 1
        for r in range(start // W, -(-(start + count) // W)):
            dut.acc_r__addr.value = r
            await self.tick()
            v = int(dut.acc_r__data.value)
            words += [(v >> (32 * i)) & 0xFFFFFFFF for i in range(W)]
        dut.acc_r__en.value = 0
        lo = start - start // W * W
        return np.array(words[lo:lo + count], dtype=np.uint32).view(np.int32)


class ReqDriver:
    """Drives one requester port: each request after its ``gap`` idle cycles; records the
    cycle ``valid`` rose and the cycle of the handshake."""

    def __init__(self, bench: CocotbBench, port: int):
        self.bench, self.port = bench, port
        self.presented: list[int] = []
        self.accepted: list[int] = []

    async def send(self, reqs: list[Req]) -> None:
        from llmaccel.hw.ports import dram_request_layout  # noqa: PLC0415

        dut, b = self.bench.dut, self.bench
        layout = dram_request_layout(b.cfg)
        valid = getattr(dut, f"ports__{self.port}__req__valid")
        ready = getattr(dut, f"ports__{self.port}__req__ready")
        payload = getattr(dut, f"ports__{self.port}__req__payload")
        for r in reqs:
            await b.tick(r.gap)
            payload.value = int(layout.const({"addr": r.addr, "write": int(r.write),
                                              "wdata": list(r.wdata),
                                              "wmask": r.wmask}).as_bits())
            valid.value = 1
            self.presented.append(b.cycle)
            while True:
                rdy = int(ready.value)
                c = b.cycle
                await b.tick()
                if rdy:
                    break
            self.accepted.append(c)
            valid.value = 0


class RspMonitor:
    """Takes one port's responses, withholding ``ready`` with probability ``stall``."""

    def __init__(self, bench: CocotbBench, port: int, rng: random.Random, stall: float = 0.0):
        self.bench, self.port, self.rng, self.stall = bench, port, rng, stall
        self.got: list[tuple[int, bytes]] = []

    async def run(self, n: int) -> None:
        """Take ``n`` responses: ``ready`` is set and ``valid``/``payload`` sampled in the same
        cycle (``valid`` does not depend on ``ready``)."""
        dut, b = self.bench.dut, self.bench
        valid = getattr(dut, f"ports__{self.port}__rsp__valid")
        ready = getattr(dut, f"ports__{self.port}__rsp__ready")
        payload = getattr(dut, f"ports__{self.port}__rsp__payload")
        while len(self.got) < n:
            rdy = int(self.rng.random() >= self.stall)
            ready.value = rdy
            v = int(valid.value)
            data = int(payload.value) if v else 0
            c = b.cycle
            await b.tick()
            if rdy and v:
                self.got.append((c, data.to_bytes(b.cfg.col_bytes, "little")))
        ready.value = 0


class CmdMonitor:
    """Samples ``o_cmd`` and ``o_mac`` every cycle into a trace for the timing monitor, and
    ``o_done`` pulses."""

    def __init__(self, bench: CocotbBench):
        self.bench = bench
        self.trace: list[tuple] = []
        self.done: list[int] = []
        self.first = None            # the first cycle sampled

    async def run(self) -> None:
        b = self.bench
        self.first = b.cycle
        cfg = b.cfg
        cl = cmd_layout(cfg)
        ml = mac_layout(cfg)
        open_row = [0] * cfg.dram_banks
        # Bit positions of each bank's `valid` in o_mac: idle cycles cost one integer test.
        esize = ml.elem_shape.size
        valid_mask = sum(1 << (esize * bank) for bank in range(cfg.dram_banks))
        while True:
            c = b.cycle
            raw = b.dut.o_cmd.value
            if not raw.is_resolvable:
                raise AssertionError(f"o_cmd {raw} at cycle {c}")
            raw = int(raw)
            if raw:
                cmd = cl.from_bits(raw)
                kind = cmd.kind.value if not isinstance(cmd.kind, int) else cmd.kind
                if kind:
                    e = trace_entry(c, kind, int(cmd.bank), int(cmd.row), int(cmd.col))
                    self.trace.append(e)
                    if e[1] == "ACT":
                        open_row[e[2]] = e[3]
            v = b.dut.o_mac.value
            if not v.is_resolvable:
                raise AssertionError(f"o_mac {v} at cycle {c}")
            v = int(v)
            if v & valid_mask:
                macs = ml.from_bits(v)
                for bank in range(cfg.dram_banks):
                    if macs[bank].valid:
                        self.trace.append((c, "MAC", bank, open_row[bank],
                                           int(macs[bank].col)))
            if int(b.dut.o_done.value):
                self.done.append(c)
            await b.tick()


class PimDriver:
    """Offers PIM instructions on ``i_cmd``; records presented and accepted cycles."""

    def __init__(self, bench: CocotbBench, rng: random.Random | None = None,
                 stall: float = 0.0):
        self.bench, self.rng, self.stall = bench, rng or random.Random(0), stall
        self.presented: list[int] = []
        self.accepted: list[int] = []

    async def send(self, program: list[Instruction]) -> None:
        dut, b = self.bench.dut, self.bench
        for ins in program:
            while self.rng.random() < self.stall:
                await b.tick()
            dut.i_cmd__payload.value = ins.encode()
            dut.i_cmd__valid.value = 1
            self.presented.append(b.cycle)
            while True:
                rdy = int(dut.i_cmd__ready.value)
                c = b.cycle
                await b.tick()
                if rdy:
                    break
            self.accepted.append(c)
            dut.i_cmd__valid.value = 0
