"""DMA timing: cycles of DMA_LOAD, DMA_GATHER and DMA_STORE on the RTL engines, given when the DRAM
accepts and answers each column request.

The RTL engines (hw/dma_load.py, hw/dma_store.py) must take exactly the cycles these functions
return; the cycle-accuracy tests compare them over sweeps. docs/dma.md explains the engines; this
module restates their scheduling rules as recurrences over events (requests, window shifts, SRAM
beats), so it is as exact as a cycle-by-cycle model but costs O(events), not O(cycles).

**Cycles of an instruction** = (cycle in which ``o_done`` is high) − (cycle in which the ``i_cmd``
handshake completes). The engine accepts its next instruction in its ``o_done`` cycle, so
back-to-back instructions start exactly ``cycles`` apart (what :class:`CycleModel` assumes).

Terms (W = row width, s = element size 1 for SP / 4 for ACC, B = W·s bytes per SRAM row):

* a transfer row r covers DRAM bytes ``[a_r, a_r + span)`` with ``a_r = base + r·dram_stride``
  and ``span = n·s`` (``s`` for a broadcast load), and SRAM elements ``[b_r, b_r + n)`` with
  ``b_r = sram_addr + r·sram_stride``;
* a *pair* is (row, DRAM column) for every column the row's bytes touch, in order;
* a *request* is a pair whose column differs from the previous pair's column (the load engine
  keeps the last column it read; the store engine merges consecutive pairs of one column into
  one write request, later rows' bytes winning);
* a *beat* is (row, SRAM row) for every SRAM row the row's elements touch: one SRAM write (load)
  or read (store) of up to W lanes.

The DRAM is abstracted by an object with ``request(t, col, write) -> (accept, response)``: the
engine offers a request from cycle ``t`` on; it is accepted (handshake) in cycle ``accept ≥ t``;
a read's data is on the response stream in cycle ``response``. :class:`FixedLatencyDram` is the
behavioural responder of the tests (hw/dram_responder.py and the cocotb model), for which the
functions are exact; :class:`ChannelDram` drives :class:`~.dram_model.DramModel`.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.dma_load import (
    GATHER_START,
    LOAD_OUTSTANDING,
    LOAD_START,
    load_window_columns,
)
from llmaccel.hw.dma_store import STORE_START, store_window_beats
from llmaccel.hw.isa import Instruction, Opcode, Space

from .dram_model import DramModel

__all__ = [
    "ChannelDram",
    "DmaTiming",
    "FixedLatencyDram",
    "dma_cycles",
    "dma_end",
    "dma_timing",
    "load_plan",
    "load_steps",
    "load_timing",
    "store_plan",
    "store_steps",
    "store_timing",
]

COL = 32  # bytes per DRAM column (AccelConfig.col_bytes is fixed at 32)


class FixedLatencyDram:
    """The behavioural DRAM of the tests: one port accepts a request at most every ``interval``
    cycles and returns read data exactly ``latency`` cycles after accepting the request.

    State (the last accept cycle) persists across instructions, as in the RTL responder; use
    absolute cycle numbers.
    """

    def __init__(self, latency: int, interval: int = 1):
        if latency < 2:
            raise ValueError(f"latency must be at least 2, not {latency!r}")
        if interval < 1:
            raise ValueError(f"interval must be at least 1, not {interval!r}")
        self.latency = latency
        self.interval = interval
        self.last_accept = -(10 ** 9)

    def request(self, t: int, col: int, write: bool) -> tuple[int, int]:
        accept = max(t, self.last_accept + self.interval)
        self.last_accept = accept
        return accept, accept + self.latency


class ChannelDram:
    """Adapter from the engines' request stream to :class:`DramModel`.

    A read is accepted when offered (the channel queues it) and its data arrives when the model
    says the data transfer has completed. A write is accepted when its data can move on the bus
    (the model's data-done cycle minus tBURST), which is when a channel without a write buffer
    would take it. The integrator reconciles this with the real channel's request queue.
    """

    def __init__(self, cfg: AccelConfig, model: DramModel | None = None):
        self.cfg = cfg
        self.model = model if model is not None else DramModel(cfg)

    def request(self, t: int, col: int, write: bool) -> tuple[int, int]:
        bank, row, _, _ = self.cfg.dram_map(col * COL)
        done = self.model.column(t, bank, row, write)
        if write:
            return max(t, done - self.cfg.timing.tBURST), done
        return t, done


@dataclass
class DmaTiming:
    """Event times of one DMA instruction (absolute cycles)."""

    start: int          # i_cmd handshake
    end: int            # o_done high
    accepts: list       # request handshakes, in order
    beats: list         # SRAM write cycles (load) or SRAM read cycles (store), in order
    requests: int = 0
    error: bool = False

    @property
    def cycles(self) -> int:
        return self.end - self.start


# -------------------------------------------------------------------------------------------
# Plans: the request, pair and beat sequences both the RTL and the recurrences walk.
def _geometry(cfg: AccelConfig, ins: Instruction):
    W = cfg.row_width
    s = 4 if ins.space is Space.ACC else 1
    return W, W.bit_length() - 1, s


def load_plan(cfg: AccelConfig, ins: Instruction, base: int):
    """``(request_columns, pair_is_request, beats)`` of a load/gather with DRAM base ``base``.

    ``beats[k] = (jl, jh, sram_row, lane_mask)``: the beat needs requests ``jl..jh`` (indices into
    ``request_columns``).
    """
    W, lw, s = _geometry(cfg, ins)
    n, rows = ins.len, ins.rows
    bcast = bool(ins.bcast) and ins.opcode is Opcode.DMA_LOAD
    span = s if bcast else n * s
    cols: list[int] = []
    pairs: list[bool] = []
    beats: list[tuple[int, int, int, int]] = []
    last = None
    if rows == 0 or n == 0:
        return cols, pairs, beats
    for r in range(rows):
        a = base + r * ins.dram_stride
        b = ins.sram_addr + r * ins.sram_stride
        c0, c1 = a // COL, (a + span - 1) // COL
        j0 = len(cols) - 1 if c0 == last else len(cols)
        for c in range(c0, c1 + 1):
            if c == last:
                pairs.append(False)
            else:
                pairs.append(True)
                cols.append(c)
                last = c
        q0, q1 = b >> lw, (b + n - 1) >> lw
        for q in range(q0, q1 + 1):
            lo = (b & (W - 1)) if q == q0 else 0
            hi = ((b + n - 1) & (W - 1)) if q == q1 else W - 1
            mask = ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)
            if bcast:
                jl, jh = j0, j0 + c1 - c0
            else:
                base_q = a + (q * W - b) * s
                p_lo = a if q == q0 else base_q
                p_hi = a + n * s if q == q1 else base_q + W * s
                jl = j0 + p_lo // COL - c0
                jh = j0 + (p_hi - 1) // COL - c0
            beats.append((jl, jh, q, mask))
    return cols, pairs, beats


def store_plan(cfg: AccelConfig, ins: Instruction):
    """``(beat_rows, pairs)`` of a store: ``beat_rows[k]`` is the SRAM row beat k reads;
    ``pairs[p] = (col, bl, bh, final)``: the column contribution needs beats ``bl..bh`` and is
    the last of its write request when ``final``."""
    _, lw, s = _geometry(cfg, ins)
    n, rows = ins.len, ins.rows
    beat_rows: list[int] = []
    pairs: list[tuple[int, int, int, bool]] = []
    if rows == 0 or n == 0:
        return beat_rows, pairs
    span = n * s
    for r in range(rows):
        a = ins.dram_addr + r * ins.dram_stride
        b = ins.sram_addr + r * ins.sram_stride
        c0, c1 = a // COL, (a + span - 1) // COL
        q0, q1 = b >> lw, (b + n - 1) >> lw
        k0 = len(beat_rows)
        beat_rows.extend(range(q0, q1 + 1))
        next_c0 = (a + ins.dram_stride) // COL if r + 1 < rows else None
        for c in range(c0, c1 + 1):
            x_lo = max(c * COL, a)
            x_hi = min(c * COL + COL, a + span) - 1
            e_lo, e_hi = (x_lo - a) // s, (x_hi - a) // s
            bl = k0 + ((b + e_lo) >> lw) - q0
            bh = k0 + ((b + e_hi) >> lw) - q0
            final = not (c == c1 and next_c0 == c1)
            pairs.append((c, bl, bh, final))
    return beat_rows, pairs


# -------------------------------------------------------------------------------------------
# The engines' rules, written once as generators of DRAM interactions. A step generator yields
#
# * ``("issue", t, col)``: offer a request for column ``col`` from cycle ``t``; it is sent back
#   a handle for the request;
# * ``("accept", h)`` / ``("done", h)``: it is sent back the cycle of request ``h``'s handshake /
#   of its read data on the response stream;
#
# and returns ``(end, accepts, beats, requests)``. :func:`_drive` answers from a DRAM object
# with ``request(t, col, write) -> (accept, response)``; the system cycle model
# (sim/golden/system_model.py) answers as its DramModel simulates the channel, so the RTL's
# rules live here only.
def load_steps(cfg: AccelConfig, ins: Instruction, t0: int, base: int, *,
               outstanding: int = LOAD_OUTSTANDING):
    """The load engine (hw/dma_load.py) from its first active cycle ``t0`` and DRAM ``base``:

    * the request walker visits one pair per cycle from T0; a pair whose column equals the last
      requested one is skipped; a request is offered while fewer than ``outstanding`` requests
      are in flight (issued but not yet moved into the window) and the walker waits for its
      handshake;
    * the response of request i enters a FIFO in cycle ``response`` and can move into the
      window (a shift register of K columns) from the next cycle, one column per cycle, but only
      while the oldest window column is not needed by the current beat (``i < jl + K``);
    * beat k is formed when its last column is in the window (the cycle after it moved there),
      at most one per cycle, and written to the SRAM in the next cycle;
    * ``o_done`` is high in the cycle after the last SRAM write (T0 for an empty transfer).
    """
    cols, pairs, beats = load_plan(cfg, ins, base)
    if not beats:
        return t0, [], [], 0
    K = load_window_columns(cfg)
    D = outstanding
    N = len(cols)
    handles: list = []
    accepts: list[int] = []
    resp: list[int] = []
    pop = [0] * N
    emit: list[int] = []
    jls = [b[0] for b in beats]
    state = {"pop_next": 0}

    # Window moves and beats are computed lazily: request i needs the credit that the move of
    # request i-D returns, and that move may wait for beats (whose columns are all known then:
    # a beat's columns fit in the window).
    def beat(k: int) -> int:
        while len(emit) <= k:
            jh = beats[len(emit)][1]
            move(jh)
            emit.append(max(t0, (emit[-1] + 1) if emit else t0, pop[jh] + 1))
        return emit[k]

    def move(i: int) -> None:
        while state["pop_next"] <= i:
            x = state["pop_next"]
            t = max(t0, resp[x] + 1, (pop[x - 1] + 1) if x else t0)
            # Beats with jl <= x - K need the column that moving x pushes out.
            kk = _count_le(jls, x - K)
            if kk:
                t = max(t, beat(kk - 1) + 1)
            pop[x] = t
            state["pop_next"] = x + 1

    p, t = 0, t0
    for x in range(N):
        while not pairs[p]:
            p += 1
            t += 1
        offer = t
        if x >= D:
            while len(resp) <= x - D:        # responses arrive in order
                resp.append((yield ("done", handles[len(resp)])))
            move(x - D)
            offer = max(offer, pop[x - D] + 1)
        h = yield ("issue", offer, cols[x])
        handles.append(h)
        accepts.append((yield ("accept", h)))
        p, t = p + 1, accepts[-1] + 1
    if len(resp) < N:
        # Wait for the last response; the earlier ones (in order) are there by then.
        last = yield ("done", handles[-1])
        while len(resp) < N - 1:
            resp.append((yield ("done", handles[len(resp)])))
        resp.append(last)
    beat(len(beats) - 1)
    return emit[-1] + 2, accepts, [e + 1 for e in emit], N


def store_steps(cfg: AccelConfig, ins: Instruction, t0: int):
    """The store engine (hw/dma_store.py) from its first active cycle ``t0``:

    * SRAM reads (beats) one per cycle from T0; read data appears the next cycle as the newest
      slot of a window of K beats; a read is allowed while the oldest slot is not needed by the
      current column (``k < bl + K``);
    * column contributions are formed one per cycle once their last beat's data is visible, into
      the request register; consecutive contributions to one column merge there; a final one is
      offered as a write request the next cycle, and the register is free again in the cycle its
      handshake completes;
    * ``o_done`` is high in the cycle after the last request handshake (T0 when empty).
    """
    _, pairs = store_plan(cfg, ins)
    if not pairs:
        return t0, [], [], 0
    K = store_window_beats(cfg, ins.space)
    rd: list[int] = []
    asm: list[int] = []
    accepts: list[int] = []
    bls = [p[1] for p in pairs]

    def read(k: int) -> int:
        while len(rd) <= k:
            x = len(rd)
            t = max(t0, (rd[-1] + 1) if rd else t0)
            pp = _count_le(bls, x - K)
            if pp:
                t = max(t, asm[pp - 1] + 1)   # formed already: its beats precede beat x
            rd.append(t)
        return rd[k]

    for x, (col, _bl, bh, final) in enumerate(pairs):
        t = max(t0, (asm[-1] + 1) if asm else t0, read(bh) + 1)
        if x and pairs[x - 1][3]:
            t = max(t, accepts[-1])           # the request register frees in its handshake
        asm.append(t)
        if final:
            h = yield ("issue", t + 1, col)
            accepts.append((yield ("accept", h)))
    return accepts[-1] + 1, accepts, rd, len(accepts)


def _drive(steps, dram, write: bool):
    """Run a step generator against ``dram.request(t, col, write) -> (accept, response)``."""
    try:
        msg = next(steps)
        while True:
            if msg[0] == "issue":
                answer = dram.request(msg[1], msg[2], write)
            else:
                answer = msg[1][0] if msg[0] == "accept" else msg[1][1]
            msg = steps.send(answer)
    except StopIteration as stop:
        return stop.value


def load_timing(cfg: AccelConfig, ins: Instruction, start: int, dram, *,
                gather_base: int | None = None,
                outstanding: int = LOAD_OUTSTANDING) -> DmaTiming:
    """Event times of a DMA_LOAD / DMA_GATHER accepted in cycle ``start``: cycle 0 is the
    handshake, the engine is active from T0 (1 for a load, 3 for a gather, whose index is read
    and checked first) and follows :func:`load_steps`."""
    is_gather = ins.opcode is Opcode.DMA_GATHER
    t0 = start + (GATHER_START if is_gather else LOAD_START)
    base = gather_base if is_gather else ins.dram_addr
    # A gather without a base is one whose index was negative (GoldenMachine raised before
    # forming a base); one with a base may still leave DRAM.
    if is_gather and (base is None or _gather_error(cfg, ins, base)):
        return DmaTiming(start, t0, [], [], error=True)
    end, accepts, beats, n = _drive(load_steps(cfg, ins, t0, base, outstanding=outstanding),
                                    dram, False)
    return DmaTiming(start, end, accepts, beats, requests=n)


def _count_le(sorted_vals: list[int], x: int) -> int:
    """Number of elements ``<= x`` in a non-decreasing list."""
    lo, hi = 0, len(sorted_vals)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_vals[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _gather_error(cfg: AccelConfig, ins: Instruction, base: int) -> bool:
    """The gather's DRAM_RANGE check (GoldenMachine._exec_dma_gather), from its base address.

    ``base < dram_addr`` can only mean a negative index."""
    if base < ins.dram_addr:
        return True
    if ins.rows == 0 or ins.len == 0:
        return False
    s = 4 if ins.space is Space.ACC else 1
    ext = (ins.rows - 1) * ins.dram_stride
    lo = base + min(0, ext)
    hi = base + max(0, ext) + ins.len * s - 1
    return lo < 0 or hi >= cfg.dram_bytes


def store_timing(cfg: AccelConfig, ins: Instruction, start: int, dram) -> DmaTiming:
    """Event times of a DMA_STORE accepted in cycle ``start`` (active from T0 = start + 1,
    :func:`store_steps`)."""
    end, accepts, beats, n = _drive(store_steps(cfg, ins, start + STORE_START), dram, True)
    return DmaTiming(start, end, accepts, beats, requests=n)


def dma_timing(cfg: AccelConfig, ins: Instruction, start: int, dram, *,
               gather_base: int | None = None,
               outstanding: int = LOAD_OUTSTANDING) -> DmaTiming:
    """Event times of any DMA instruction (see :func:`load_timing`, :func:`store_timing`)."""
    if ins.opcode is Opcode.DMA_STORE:
        return store_timing(cfg, ins, start, dram)
    if ins.opcode in (Opcode.DMA_LOAD, Opcode.DMA_GATHER):
        return load_timing(cfg, ins, start, dram, gather_base=gather_base,
                           outstanding=outstanding)
    raise ValueError(f"not a DMA instruction: {ins.opcode.name}")


def dma_cycles(cfg: AccelConfig, ins: Instruction, dram=None, *, start: int = 0,
               gather_base: int | None = None) -> int:
    """Cycles of one DMA instruction (handshake to ``o_done``). ``dram`` defaults to a
    :class:`FixedLatencyDram` with the channel's row-hit read latency (tCL + tBURST) and one
    column per tBURST."""
    if dram is None:
        t = cfg.timing
        dram = FixedLatencyDram(max(2, t.tCL + t.tBURST), t.tBURST)
    return dma_timing(cfg, ins, start, dram, gather_base=gather_base).cycles


def dma_end(cfg: AccelConfig, ins: Instruction, start: int, model: DramModel, *,
            gather_base: int | None = None) -> int:
    """End cycle of a DMA instruction started at ``start`` on the channel ``model`` — the
    drop-in for ``CycleModel._dma_cycles``."""
    return dma_timing(cfg, ins, start, ChannelDram(cfg, model), gather_base=gather_base).end
