"""Cycle model: how many cycles a program takes, from the config alone.

The model replays a program's instruction stream (decoded by the golden simulator, which also
supplies the runtime values the timing depends on) through a model of the machine's timing:

* the controller dispatches one instruction per cycle into per-unit queues of
  ``config.queue_depth`` entries and stalls when a queue is full;
* each unit runs its instructions in order; an instruction starts when its unit is free and every
  earlier instruction of each unit in its ``wait`` mask has finished;
* GEMM takes :func:`gemm_cycles` (the SCALE-Sim output-stationary formula when
  ``gemm_overlap`` is off);
* DMA and PIM share one DRAM channel, modelled command by command by :class:`DramModel` (open
  rows, tRCD/tRP/tRAS/tRC/tRRD/tFAW/tCCD/tCL/tWR/tRTP, refresh every tREFI for tRFC);
* PIM_MAC streams one column per bank per tCCD_L after the row is open in every bank;
* vector instructions take one beat per row (``row_width / vector_lanes`` cycles per row) plus a
  fixed pipeline latency, and multi-cycle steps for VRECIP/VISQRT.

The per-unit timing functions are the contract with the RTL: each RTL issue updates its function
so the model stays exact (cycle-accuracy tests compare RTL counters with it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode, Space, Unit

__all__ = [
    "CycleModel",
    "CycleReport",
    "DramModel",
    "gemm_cycles",
    "scalesim_cycles",
    "vec_cycles",
]

UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)
VEC_PIPE_LATENCY = 4       # read, compute, requantise, write
RECIP_STEPS = 32           # restoring division: one quotient bit per cycle
ISQRT_STEPS = 16           # digit-by-digit square root: one result bit per cycle


def scalesim_cycles(dataflow: str, R: int, C: int, M: int, N: int, K: int) -> int:
    """SCALE-Sim v2 cycle count for folds run back to back (../shared/REFERENCES.md)."""
    ceil = lambda a, b: -(-a // b)  # noqa: E731
    if dataflow == "os":
        return ceil(M, R) * ceil(N, C) * (K + R + C - 2) - 1
    if dataflow == "ws":
        return ceil(K, R) * ceil(N, C) * (2 * R + C + M - 2) - 1
    if dataflow == "is":
        return ceil(K, R) * ceil(M, C) * (2 * R + C + N - 2) - 1
    raise ValueError(f"dataflow must be os, ws or is, not {dataflow!r}")


def gemm_cycles(cfg: AccelConfig, m: int, n: int, k: int) -> int:
    """Cycles of one GEMM instruction on the output-stationary array.

    Overlap off: folds one after another, exactly SCALE-Sim's OS count. Overlap on: each fold
    streams for ``max(k, C)`` cycles (operands of the next fold enter while the previous fold's
    results drain through the array's output shift path, which needs C cycles), and the skew of
    the first and last fold is paid once.
    """
    if m == 0 or n == 0:
        return 1
    R, C = cfg.array_rows, cfg.array_cols
    folds = -(-m // R) * -(-n // C)
    if not cfg.gemm_overlap:
        return scalesim_cycles("os", R, C, m, n, k)
    return folds * max(k, C) + R + C - 2


def vec_cycles(cfg: AccelConfig, ins: Instruction) -> int:
    """Cycles of one vector instruction."""
    beats = cfg.row_width // cfg.vector_lanes
    op = ins.opcode
    if op is Opcode.VLUTLD:
        return 256 // cfg.vector_lanes + VEC_PIPE_LATENCY
    rows = ins.rows
    if op is Opcode.VTRANS:
        return rows * cfg.row_width * beats * 2 + VEC_PIPE_LATENCY
    per_row = beats
    if op is Opcode.VRECIP:
        per_row = beats * RECIP_STEPS
    elif op is Opcode.VISQRT:
        per_row = beats * ISQRT_STEPS
    extra = cfg.vector_lanes.bit_length() if (op in (Opcode.VREDSUM, Opcode.VREDMAX,
                                                     Opcode.VARGMAX) and ins.horizontal) else 0
    return rows * per_row + VEC_PIPE_LATENCY + extra


class DramModel:
    """Command-level DRAM timing of one channel with open-page row buffers.

    :meth:`column` issues the ACT/PRE a column access needs and the RD/WR itself at the earliest
    legal cycle at or after ``t``, and returns the cycle its data transfer completes. Refresh is
    all-bank: every tREFI cycles all banks are precharged and unavailable for tRFC.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        t = cfg.timing
        self.t = t
        n = cfg.dram_banks
        self.open_row = [None] * n
        self.act_at = [-10**9] * n        # last ACT per bank
        self.pre_ok = [0] * n             # earliest PRE per bank (tRAS, tWR, tRTP)
        self.col_ok = [0] * n             # earliest RD/WR per bank (tRCD)
        self.act_ok = [0] * n             # earliest ACT per bank (tRP, tRC)
        self.last_act = -10**9
        self.last_act_bg = -1
        self.faw = deque(maxlen=4)
        self.last_col = -10**9
        self.last_col_bg = -1
        self.bus_free = 0
        self.next_refresh = t.tREFI
        self.stats = {"reads": 0, "writes": 0, "row_hits": 0, "row_misses": 0,
                      "activates": 0, "precharges": 0, "refreshes": 0}

    def _refresh(self, now: int) -> int:
        t = self.t
        while now >= self.next_refresh:
            start = max(self.next_refresh, *self.pre_ok)
            for b in range(self.cfg.dram_banks):
                if self.open_row[b] is not None:
                    self.open_row[b] = None
                    self.stats["precharges"] += 1
            start += t.tRP
            done = start + t.tRFC
            self.act_ok = [max(a, done) for a in self.act_ok]
            self.stats["refreshes"] += 1
            self.next_refresh += t.tREFI
            now = max(now, done)
        return now

    def activate(self, now: int, bank: int, row: int) -> int:
        """Make ``row`` open in ``bank``; returns the earliest cycle a column command may issue."""
        t = self.t
        now = self._refresh(now)
        if self.open_row[bank] == row:
            self.stats["row_hits"] += 1
            return max(now, self.col_ok[bank])
        self.stats["row_misses"] += 1
        if self.open_row[bank] is not None:
            pre = max(now, self.pre_ok[bank])
            self.stats["precharges"] += 1
            self.act_ok[bank] = max(self.act_ok[bank], pre + t.tRP)
            self.open_row[bank] = None
        bg = self.cfg.bank_group(bank)
        act = max(now, self.act_ok[bank], self.act_at[bank] + t.tRC,
                  self.last_act + (t.tRRD_L if bg == self.last_act_bg else t.tRRD_S))
        if len(self.faw) == 4:
            act = max(act, self.faw[0] + t.tFAW)
        self.faw.append(act)
        self.act_at[bank] = act
        self.last_act, self.last_act_bg = act, bg
        self.open_row[bank] = row
        self.col_ok[bank] = act + t.tRCD
        self.pre_ok[bank] = act + t.tRAS
        self.stats["activates"] += 1
        return self.col_ok[bank]

    def column(self, now: int, bank: int, row: int, write: bool) -> int:
        """One column read or write; returns the cycle its data has moved."""
        t = self.t
        ready = self.activate(now, bank, row)
        bg = self.cfg.bank_group(bank)
        issue = max(ready, self.last_col + (t.tCCD_L if bg == self.last_col_bg else t.tCCD_S))
        data = issue + (0 if write else t.tCL)
        data = max(data, self.bus_free)
        self.bus_free = data + t.tBURST
        self.last_col, self.last_col_bg = issue, bg
        if write:
            self.pre_ok[bank] = max(self.pre_ok[bank], data + t.tBURST + t.tWR)
            self.stats["writes"] += 1
        else:
            self.pre_ok[bank] = max(self.pre_ok[bank], issue + t.tRTP)
            self.stats["reads"] += 1
        return data + t.tBURST

    def all_bank_row(self, now: int, row: int) -> list[int]:
        """Open ``row`` in every bank (PIM); returns per-bank earliest column cycles."""
        return [self.activate(now, b, row) for b in range(self.cfg.dram_banks)]


@dataclass
class InstrTiming:
    index: int
    pc: int
    opcode: Opcode
    dispatch: int
    start: int
    end: int


@dataclass
class CycleReport:
    """Cycles of one program run and where they went."""

    cycles: int
    busy: dict = field(default_factory=dict)        # unit name → busy cycles
    dram: dict = field(default_factory=dict)        # DramModel.stats
    timings: list = field(default_factory=list)     # InstrTiming per instruction

    def utilisation(self, unit: str) -> float:
        return self.busy.get(unit, 0) / self.cycles if self.cycles else 0.0


class CycleModel:
    """Replays a list of ``(pc, Instruction)`` (a golden trace) through the timing model."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.dram = DramModel(cfg)

    def _dma_cycles(self, ins: Instruction, start: int, gather_base: int | None) -> int:
        cfg = self.cfg
        size = 4 if ins.space is Space.ACC else 1
        rows, n = ins.rows, ins.len
        if rows == 0 or n == 0:
            return start + 1
        base = ins.dram_addr if gather_base is None else gather_base
        write = ins.opcode is Opcode.DMA_STORE
        t = start
        last_col = None
        beats = 0
        done = start
        row_bytes = size if (ins.bcast and not write) else n * size
        for r in range(rows):
            a0 = base + r * ins.dram_stride
            for col_addr in range(a0 - a0 % cfg.col_bytes, a0 + row_bytes, cfg.col_bytes):
                if col_addr == last_col:
                    continue  # the engine keeps the last column it read
                last_col = col_addr
                bank, drow, _, _ = cfg.dram_map(col_addr)
                done = self.dram.column(t, bank, drow, write)
                t = done - cfg.timing.tBURST if write else t
            s0 = ins.sram_addr + r * ins.sram_stride
            beats += (s0 + n - 1) // cfg.row_width - s0 // cfg.row_width + 1
        return max(done, start + beats) + 1

    def _pim_cycles(self, ins: Instruction, start: int) -> int:
        cfg = self.cfg
        t = cfg.timing
        if ins.opcode is Opcode.PIM_WRGB:
            cols = -(-ins.len // cfg.col_bytes) if ins.len else 0
            return start + cols * t.tBURST + 1
        if ins.opcode is Opcode.PIM_READ:
            words = ins.nslots * cfg.dram_banks * 4
            return start + -(-words // cfg.col_bytes) * t.tBURST + t.tCL + 1
        if ins.ncols == 0:
            return start + 1
        ready = self.dram.all_bank_row(start, ins.row)
        for b in range(cfg.dram_banks):
            self.dram.pre_ok[b] = max(self.dram.pre_ok[b],
                                      ready[b] + ins.ncols * t.tCCD_L + t.tRTP)
        return max(ready) + ins.ncols * t.tCCD_L + t.tCL + 1

    def run(self, trace: list[tuple[int, Instruction]], gather_bases: dict | None = None
            ) -> CycleReport:
        """Cycles of a traced run. ``gather_bases`` maps a DMA_GATHER's trace index to the DRAM
        base address its index selected (the golden simulator knows it)."""
        cfg = self.cfg
        gather_bases = gather_bases or {}
        unit_free = dict.fromkeys(UNITS, 0)
        last_end = dict.fromkeys(UNITS, 0)           # end of the latest instruction per unit
        starts = {u: deque() for u in UNITS}        # start cycles, for queue occupancy
        busy = {u.name: 0 for u in UNITS}
        channel_free = 0
        dispatch = 0
        timings = []
        end_all = 0
        for i, (pc, ins) in enumerate(trace):
            unit = ins.unit
            dispatch += 1
            if unit is not None and len(starts[unit]) >= cfg.queue_depth:
                dispatch = max(dispatch, starts[unit][-cfg.queue_depth])
            waits = UNITS if ins.opcode is Opcode.HALT else [u for u in UNITS if u in ins.wait]
            ready = max([dispatch + 1] + [last_end[u] for u in waits])
            if unit is None:
                end = ready + (0 if ins.opcode is Opcode.NOP else 1)
                dispatch = max(dispatch, ready)   # the controller itself waits
                timings.append(InstrTiming(i, pc, ins.opcode, dispatch, ready, end))
                end_all = max(end_all, end)
                continue
            start = max(ready, unit_free[unit])
            if unit in (Unit.LOAD, Unit.STORE) or ins.opcode is Opcode.PIM_MAC:
                start = max(start, channel_free)
            if unit in (Unit.LOAD, Unit.STORE):
                end = self._dma_cycles(ins, start, gather_bases.get(i))
                channel_free = end
            elif unit is Unit.PIM:
                end = self._pim_cycles(ins, start)
                if ins.opcode is Opcode.PIM_MAC:
                    channel_free = end
            elif unit is Unit.GEMM:
                end = start + gemm_cycles(cfg, ins.m, ins.n, ins.k)
            else:
                end = start + vec_cycles(cfg, ins)
            starts[unit].append(start)
            unit_free[unit] = end
            last_end[unit] = end
            busy[unit.name] += end - start
            timings.append(InstrTiming(i, pc, ins.opcode, dispatch, start, end))
            end_all = max(end_all, end)
        return CycleReport(cycles=end_all, busy=busy, dram=dict(self.dram.stats),
                           timings=timings)
