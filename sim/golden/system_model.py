"""Exact system cycle model: the cycles and counters of a program run on hw/accelerator.py.

Given a golden run (``GoldenMachine.run(trace=True)``: the executed instructions, the gathers'
DRAM bases, how the run ended) and the cycle of START, :class:`SystemModel` predicts the RTL's
``cycles`` counter and every performance counter of hw/regs.py exactly, by composing

* the controller's rules (hw/controller.py; docs/host.md): fetch with :data:`FETCH_DEPTH`
  credits on channel port 0, the two-stage decode checker and its output buffer, dispatch
  into queues of ``queue_depth`` entries, wait masks on registered completion counters,
  fences, gather serialisation, the end-of-run condition;
* the unit timing modules: :class:`~.timing_gemm.GemmTimeline`, :func:`~.timing_vec.vec_cycles`,
  the DMA engines' recurrences (:mod:`.timing_dma`, driven request by request), and the PIM
  front-end and DRAM channel of :class:`~.dram_model.DramModel`, which also arbitrates the
  three requester ports (fetch, DMA load, DMA store) exactly as hw/dram_channel.py does.

Conventions (absolute cycles; cycle 0 is the first cycle after reset): START is written in
cycle ``s``; the run is RUNNING from ``T0 = s + 1`` to the end cycle ``e`` inclusive (the
status changes in ``e + 1``), so ``cycles = e + 1 − T0``. Every unit instruction has

* ``dispatch`` — the cycle it enters its queue;
* ``start`` — its ``i_cmd`` handshake;
* ``done`` — the cycle its unit's ``o_done`` is high;
* ``complete`` — ``done``, except for a DMA_STORE: the first cycle ≥ ``done`` by which the
  channel has issued every write accepted before ``done`` (the controller's rule);
  instructions waiting for it may start from ``complete + 1``;
* ``busy`` — the cycles its unit's ``o_busy`` is high for it, one convention per unit, all
  in :data:`BUSY_SPAN`.

**How it is computed.** Each requester of the channel (fetch, DMA load, DMA store, PIM) and the
controller are Python generators ("actors") that compute event cycles as soon as what they
depend on is known and *present* their requests to the DramModel for future cycles; the DramModel
is advanced only as far as every actor has presented what it will present (a request for cycle
``t`` depends only on events of cycles before ``t``). Idle stretches cost nothing, so the model
runs at DRAM-event speed, not per cycle.

Not modelled: runs ended by the watchdog (the queues are flushed there), programs that modify
their own instructions, and a START while a previous run's fetches are still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.accelerator import FETCH_PORT, LOAD_PORT, STORE_PORT
from llmaccel.hw.config import AccelConfig
from llmaccel.hw.controller import FETCH_DEPTH, LATE_STOP, UNITS
from llmaccel.hw.dma_load import GATHER_START, LOAD_START
from llmaccel.hw.dma_store import STORE_START
from llmaccel.hw.instr_checker import CHECK_LATENCY, OUT_DEPTH
from llmaccel.hw.isa import (
    INSTR_BYTES,
    DecodeError,
    ErrorCode,
    Instruction,
    Opcode,
    Space,
    Unit,
    decode,
)
from llmaccel.hw.regs import COUNTERS
from llmaccel.hw.wishbone import CTRL_LATENCY

from .dram_model import DramModel
from .timing_dma import _gather_error, load_steps, store_steps
from .timing_gemm import GemmTimeline
from .timing_vec import vec_cycles

__all__ = ["BUSY_SPAN", "InstrEvent", "SystemModel", "SystemReport"]

_NAMES = {Unit.LOAD: "load", Unit.STORE: "store", Unit.GEMM: "gemm", Unit.PIM: "pim",
          Unit.VEC: "vec"}

#: ``o_busy`` of an instruction, as (offset from ``start``, offset from ``done``), inclusive:
#: the vector unit is busy from its handshake to the cycle before ``o_done``; the DMA engines
#: from the cycle after the handshake to the cycle before ``o_done``; the GEMM core and the PIM
#: unit from the cycle after the handshake to the ``o_done`` cycle.
BUSY_SPAN = {Unit.VEC: (0, -1), Unit.LOAD: (1, -1), Unit.STORE: (1, -1), Unit.GEMM: (1, 0),
             Unit.PIM: (1, 0)}


@dataclass(eq=False)
class InstrEvent:
    """Timing of one dispatched instruction (absolute cycles)."""

    index: int
    pc: int
    ins: Instruction
    unit: Unit | None
    dispatch: int
    targets: dict = field(default_factory=dict)     # unit → instructions it waits for
    work: int = 0
    offered: int | None = None
    start: int | None = None
    done: int | None = None
    complete_at: int | None = None
    stall: int = 0
    gather_error: bool = False
    pim_op: object = None
    write_dep: object = None     # a store's last write request accepted before its o_done

    @property
    def complete(self) -> int | None:
        if self.pim_op is not None:
            return self.pim_op.done
        if self.write_dep is not None and self.complete_at is None \
                and self.write_dep.issue is not None:
            self.complete_at = max(self.done, self.write_dep.issue + 1)
        return self.complete_at

    @property
    def end(self) -> int | None:
        return self.done if self.pim_op is None else self.pim_op.done


@dataclass
class SystemReport:
    """Predicted outcome of one run."""

    cycles: int
    start: int                  # T0, the first RUNNING cycle
    end: int                    # the last RUNNING cycle
    status: str
    error: ErrorCode
    error_pc: int
    counters: dict              # hw/regs.py COUNTERS → value
    events: list                # InstrEvent per dispatched instruction

    @property
    def busy(self) -> dict:
        return {u.name: self.counters[f"busy_{_NAMES[u]}"] for u in UNITS}


def _work(cfg: AccelConfig, ins: Instruction) -> int:
    op = ins.opcode
    if op is Opcode.GEMM:
        return ins.m * ins.n * ins.k
    if op is Opcode.PIM_MAC:
        return ins.ncols * cfg.dram_banks * cfg.col_bytes
    if op in (Opcode.DMA_LOAD, Opcode.DMA_GATHER, Opcode.DMA_STORE):
        size = 4 if ins.space is Space.ACC else 1
        per_row = size if (op is Opcode.DMA_LOAD and ins.bcast) else size * ins.len
        return ins.rows * per_row if ins.len else 0
    return 0


def _late_gather(cfg: AccelConfig, ins: Instruction) -> bool:
    """A gather the controller decides at run time (its destination is out of SRAM)."""
    if ins.idx_addr >= cfg.acc_elems or ins.rows == 0 or ins.len == 0:
        return False
    ends = (ins.sram_addr, ins.sram_addr + (ins.rows - 1) * ins.sram_stride)
    size = cfg.acc_elems if ins.space is Space.ACC else cfg.sp_bytes
    return min(ends) < 0 or max(ends) + ins.len - 1 >= size


class _Actor:
    __slots__ = ("deadline", "gen", "name", "pred")

    def __init__(self, name, gen):
        self.name = name
        self.gen = gen
        self.pred = lambda: True
        self.deadline = None


class SystemModel:
    """Predicts cycles and counters of runs on the RTL top level (see the module docstring).

    The DRAM channel's state persists across :meth:`run` calls (open rows, refresh phase), as
    in the hardware; give runs in order with their START cycles.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.dram = DramModel(cfg, n_ports=3)

    # ---------------------------------------------------------------------------------------
    def run(self, result, *, start_cycle: int, base: int | None = None,
            program: bytes | np.ndarray | None = None) -> SystemReport:
        """Predict the run whose golden outcome is ``result`` (a ``RunResult`` traced with
        ``trace=True``), started by a START written in cycle ``start_cycle`` (the cycle the
        register block performs the write; the controller sees it ``CTRL_LATENCY`` cycles
        later, so the first RUNNING cycle is ``start_cycle + CTRL_LATENCY + 1``). ``base``
        defaults to the first traced PC; ``program`` (the DRAM contents at START) lets the
        model see words past the end of the trace that the fetch reads (only needed for runs
        that end in an error)."""
        return _Run(self, result, start_cycle + CTRL_LATENCY + 1, base, program).go()


class _Run:
    def __init__(self, model: SystemModel, result, t0: int, base, program):
        cfg = model.cfg
        self.cfg = cfg
        self.dm = model.dram
        self.t0 = t0
        trace = list(result.trace)
        self.gather_bases = dict(result.gather_bases)
        if base is None:
            base = trace[0][0] if trace else result.error_pc
        self.base = base
        self.program = None if program is None else np.frombuffer(bytes(program), np.uint8) \
            if not isinstance(program, np.ndarray) else program.view(np.uint8).ravel()
        # Items the dispatcher sees, in order: (pc, ins or None, kind).
        items = []
        ending = "pc"
        for i, (pc, ins) in enumerate(trace):
            kind = "ctrl" if ins.unit is None else "unit"
            last = i == len(trace) - 1
            if last and result.status != "done" and result.error_pc == pc and \
                    result.error not in (ErrorCode.PC_RANGE, ErrorCode.WATCHDOG):
                if ins.opcode is Opcode.DMA_GATHER and _late_gather(cfg, ins):
                    kind, ending = "late", "late"
                elif ins.opcode is Opcode.DMA_GATHER and result.error is ErrorCode.DRAM_RANGE \
                        and i not in self.gather_bases:
                    kind, ending = "unit", "gerr"
                else:
                    kind, ending = "err", "err"
            items.append((pc, ins, kind))
        if result.status == "done":
            ending = "halt"
        elif ending == "pc" and result.error not in (ErrorCode.PC_RANGE, ErrorCode.WATCHDOG):
            items.append((result.error_pc, None, "err"))       # a decode error
            ending = "err"
        if result.error is ErrorCode.WATCHDOG:
            raise ValueError("runs ended by the watchdog are not modelled")
        self.items = items
        self.ending = ending
        self.result = result
        # The fetch stops after the first HALT word it receives.
        self.halt_index = None
        for i, (_pc, ins, _k) in enumerate(items):
            if ins is not None and ins.opcode is Opcode.HALT:
                self.halt_index = i
                break
        if self.halt_index is None and self.program is not None:
            for j in range(len(items), len(items) + 2 * FETCH_DEPTH + 4):
                a = base + INSTR_BYTES * j
                if a + INSTR_BYTES > self.program.size:
                    break
                try:
                    if decode(self.program[a:a + INSTR_BYTES].tobytes()).opcode is Opcode.HALT:
                        self.halt_index = j
                        break
                except DecodeError:
                    pass
        # State.
        self.freq: list = []                 # fetch requests, in order
        self.fetch_done = False
        self.pop: dict[int, int] = {}        # item index → cycle it entered the checker
        self.out: dict[int, int] = {}        # item index → first cycle at the checker output
        self.disp: dict[int, int] = {}       # item index → dispatch cycle
        self.never: int | None = None        # items from here on are never dispatched
        self.pipe_done = False
        self.stop: int | None = None         # first cycle with the controller stopped
        self.disp_done = False
        self.queues = {u: [] for u in UNITS}
        self.events: list[InstrEvent] = []
        self.ctrl_retired = 0
        self.late_end = 0
        self.store_writes: list = []         # every write request of the run, in order
        self.actors: list[_Actor] = []
        self.gemm = GemmTimeline(cfg)

    # ---------------------------------------------------------------------------------------
    # Scheduling.
    def _spawn(self, name, gen):
        self.actors.append(_Actor(name, gen))

    def _pump(self) -> None:
        progress = True
        while progress:
            progress = False
            for a in list(self.actors):
                while a.pred():
                    try:
                        w = next(a.gen)
                    except StopIteration:
                        self.actors.remove(a)
                        break
                    progress = True
                    if isinstance(w, tuple):
                        a.pred, a.deadline = w
                    else:
                        a.pred, a.deadline = w, None

    def _present(self, port, cycle, col, write):
        assert cycle >= self.dm.now, (port, cycle, self.dm.now)
        return self.dm.present_addr(port, cycle, col, write)

    def go(self) -> SystemReport:
        self._spawn("dispatch", self._dispatch())
        self._spawn("pop", self._pop())
        self._spawn("check", self._check())
        self._spawn("end", self._end())
        self._spawn("fetch", self._fetch())
        for u in UNITS:
            self._spawn(_NAMES[u], self._unit(u))
        dm = self.dm
        while True:
            self._pump()
            if not self.actors:
                break
            deadlines = [a.deadline for a in self.actors if a.deadline is not None]
            limit = min(deadlines) if deadlines else None
            before = dm.now
            self._advance(limit)
            if dm.now == before and not any(a.pred() for a in self.actors):
                raise RuntimeError(f"system model stuck at cycle {dm.now}: "
                                   f"{[a.name for a in self.actors]}")
        return self._report()

    def _advance(self, limit: int | None) -> None:
        """``DramModel.run`` until an actor can go on, but never jumping past ``limit``
        (the cycle from which an actor's time-based wait may end): the model skips idle
        stretches, and an actor may present a request inside one."""
        dm = self.dm
        while not any(a.pred() for a in self.actors):
            if limit is not None and dm.now >= limit:
                return
            if limit is None and not dm._pending():
                return
            t = dm.now
            acted = dm._step(t)
            nxt = t + 1 if acted else dm._next_time(t)
            if limit is not None:
                nxt = min(nxt, max(limit, t + 1))
            dm.now = nxt
            if dm.ref_due <= dm.now:
                dm.ref_pending = True
                while dm.ref_due <= dm.now:
                    dm.ref_due += dm.t.tREFI

    # ---------------------------------------------------------------------------------------
    def _fetch(self):
        cfg, dm = self.cfg, self.dm
        lat = cfg.timing.tCL + cfg.timing.tBURST
        j = 0
        while True:
            a = self.base + INSTR_BYTES * j
            if a % INSTR_BYTES or a < 0 or a + INSTR_BYTES > cfg.dram_bytes:
                break
            c = self.t0
            if j:
                prev = self.freq[j - 1]
                yield lambda prev=prev: prev.accept is not None
                c = max(c, prev.accept + 1)
            if j >= FETCH_DEPTH:
                k = j - FETCH_DEPTH
                yield lambda k=k: k in self.pop or self.pipe_done
                if k not in self.pop:
                    break
                c = max(c, self.pop[k] + 1)
            h = self.halt_index
            if h is not None and h < j:
                rq = self.freq[h]
                yield (lambda rq=rq, c=c: rq.done is not None or c <= dm.now + lat, c - lat)
                if rq.done is not None and c > rq.done:
                    break
            yield (lambda c=c: self.stop is not None or (c <= dm.now + 1
                                                          and not self._disp_runnable()),
                   c - 1)
            if self.stop is not None and c >= self.stop:
                break
            self.freq.append(self._present(FETCH_PORT, c, a // INSTR_BYTES, False))
            j += 1
        if self.freq:
            last = self.freq[-1]
            yield lambda: last.accept is not None
        self.fetch_done = True

    def _disp_runnable(self) -> bool:
        return any(a.pred() for a in self.actors if a.name in ("dispatch", "pop", "check", "end"))

    def _wait_fetch(self, i):
        """Wait for request ``i``'s data; returns its response cycle or None if never
        fetched."""
        yield lambda: (len(self.freq) > i and self.freq[i].done is not None) or \
            self.fetch_done
        if len(self.freq) > i:
            # Data that arrives after the controller stopped changes nothing (its pop would
            # only let the fetch issue past the stop): stop waiting, so that a request still
            # queued behind a refresh does not carry the model past the run's end.
            yield lambda: self.freq[i].done is not None or \
                (self.stop is not None and self.dm.now >= self.stop)
            done = self.freq[i].done
            if done is not None and (self.stop is None or done < self.stop):
                return done
        return None

    # ---------------------------------------------------------------------------------------
    def _end(self):
        yield lambda: self.disp_done
        for ev in self.events:
            yield lambda ev=ev: ev.start is not None and ev.complete is not None

    def _pop(self):
        """The fetch FIFO's reads: item i leaves the FIFO and enters the checker's stage 1 at
        ``pop[i]`` (hw/instr_checker.py).

        Stage 1 moves into the checker's output buffer (:data:`OUT_DEPTH` verdicts) whenever
        the buffer has room at the start of the cycle, and a word enters stage 1 when stage 1
        is empty or moves on. So item i leaves the FIFO once it is there, after item i − 1, and
        once item i − 1 − OUT_DEPTH has been dispatched (a cycle later: the buffer's level is
        a register). Kept apart from :meth:`_check` because the fetch's credits wait for
        these cycles, which do not depend on item i − 1's dispatch."""
        prev = -(1 << 60)
        i = 0
        while True:
            r = yield from self._wait_fetch(i)
            if r is None:
                break
            c = max(r + 1, prev + 1)
            k = i - 1 - OUT_DEPTH
            if k >= 0:
                yield lambda k=k: k in self.disp or (self.never is not None and k >= self.never)
                if k not in self.disp:
                    break                       # the output buffer stays full
                c = max(c, self.disp[k] + 1)
            self.pop[i] = prev = c
            i += 1
        self.pipe_done = True

    def _check(self):
        """The checker's output: item i is there from ``out[i]``, two cycles after it entered
        stage 1 or the cycle after item i − 1 was dispatched."""
        i = 0
        while True:
            yield lambda i=i: i in self.pop or self.pipe_done
            if i not in self.pop:
                break
            d = -(1 << 60)
            if i:
                yield lambda i=i: (i - 1) in self.disp or (self.never is not None
                                                           and i - 1 >= self.never)
                if (i - 1) not in self.disp:
                    break                       # i stays in the checker
                d = self.disp[i - 1]
            self.out[i] = max(self.pop[i] + CHECK_LATENCY, d + 1)
            i += 1

    def _dispatch(self):
        cfg = self.cfg
        depth = cfg.queue_depth
        counts = dict.fromkeys(UNITS, 0)
        gather: InstrEvent | None = None
        last_disp = self.t0 - 1
        for i, (pc, ins, kind) in enumerate(self.items):
            yield lambda i=i: i in self.out
            c = self.out[i]
            if gather is not None:
                g = gather
                yield lambda g=g: g.start is not None
                c = max(c, g.start + GATHER_START + 1)
                gather = None
            if kind == "err":
                self.stop, self.never = c + 1, i
                break
            if kind == "late":
                w = c + 1
                msk = {u for u in UNITS if u in ins.wait} | {Unit.LOAD}
                for u in msk:
                    if counts[u]:
                        ev = self.queues[u][counts[u] - 1]
                        yield lambda ev=ev: ev.complete is not None
                        w = max(w, ev.complete + 1)
                self.stop = self.late_end = w + LATE_STOP
                self.never = i
                break
            if kind == "ctrl":
                if ins.opcode is Opcode.NOP:
                    for u in UNITS:
                        if u in ins.wait and counts[u]:
                            ev = self.queues[u][counts[u] - 1]
                            yield lambda ev=ev: ev.complete is not None
                            c = max(c, ev.complete + 1)
                self.ctrl_retired += 1
                self.disp[i] = last_disp = c
                if ins.opcode is Opcode.HALT:
                    self.stop, self.never = c + 1, i + 1
                    break
                continue
            u = ins.unit
            k = counts[u]
            if k >= depth:
                ev = self.queues[u][k - depth]
                yield lambda ev=ev: ev.start is not None
                c = max(c, ev.start + 1)
            ev = InstrEvent(i, pc, ins, u, c, targets=dict(counts), work=_work(cfg, ins))
            self.queues[u].append(ev)
            self.events.append(ev)
            counts[u] += 1
            self.disp[i] = last_disp = c
            if ins.opcode is Opcode.DMA_GATHER:
                gather = ev
                if self.ending == "gerr" and i == len(self.items) - 1:
                    ev.gather_error = True
                    self.never = i + 1
                    yield lambda ev=ev: ev.start is not None
                    self.stop = ev.start + GATHER_START + 1
                    break
        else:
            # The PC left DRAM: PC_RANGE once no gather check is pending.
            self.never = len(self.items)
            c = max(last_disp + 1, self.t0)
            if gather is not None:
                g = gather
                yield lambda g=g: g.start is not None
                c = max(c, g.start + GATHER_START + 1)
            self.stop = c + 1
        self.disp_done = True

    # ---------------------------------------------------------------------------------------
    def _unit(self, u: Unit):
        cfg = self.cfg
        q = self.queues[u]
        k = 0
        prev_start = prev_done = -(1 << 60)
        while True:
            yield lambda k=k: len(q) > k or self.disp_done
            if len(q) <= k:
                return
            ev = q[k]
            hv = max(ev.dispatch + 1, prev_start + 1)
            w = hv
            for v in UNITS:
                t = ev.targets[v]
                if v in ev.ins.wait and t:
                    dep = self.queues[v][t - 1]
                    yield lambda dep=dep: dep.complete is not None
                    w = max(w, dep.complete + 1)
            ev.stall = w - hv
            ev.offered = w
            ins = ev.ins
            if u is Unit.VEC:
                ev.start = max(w, prev_done)
                ev.done = ev.complete_at = ev.start + vec_cycles(cfg, ins)
            elif u is Unit.GEMM:
                ge = self.gemm.issue(w, ins.m, ins.n, ins.k)
                ev.start, ev.done = ge.handshake, ge.done
                ev.complete_at = ev.done
            elif u is Unit.PIM:
                op = self.dm.pim(w, ins)
                ev.pim_op = op
                yield lambda op=op: op.accept is not None
                ev.start = op.accept
            elif u is Unit.LOAD:
                ev.start = max(w, prev_done)
                ev.done = yield from self._load(ev)
                ev.complete_at = ev.done
            else:
                ev.start = max(w, prev_done)
                ev.done = yield from self._store(ev)
                done = ev.done
                before = [r for r in self.store_writes if r.accept < done]
                if before:
                    ev.write_dep = before[-1]
                else:
                    ev.complete_at = done
            prev_start = ev.start
            prev_done = ev.done if ev.done is not None else prev_done
            k += 1

    # DMA engines, request by request: timing_dma's step generators (the engines' rules),
    # answered as the DramModel simulates the channel.
    def _dma(self, steps, port: int, write: bool):
        try:
            msg = next(steps)
            while True:
                if msg[0] == "issue":
                    r = self._present(port, msg[1], msg[2], write)
                    if write:
                        self.store_writes.append(r)
                    answer = r
                elif msg[0] == "accept":
                    r = msg[1]
                    yield lambda r=r: r.accept is not None
                    answer = r.accept
                else:
                    r = msg[1]
                    yield lambda r=r: r.done is not None
                    answer = r.done
                msg = steps.send(answer)
        except StopIteration as stop:
            return stop.value[0]

    def _load(self, ev: InstrEvent):
        cfg = self.cfg
        ins = ev.ins
        is_gather = ins.opcode is Opcode.DMA_GATHER
        t0 = ev.start + (GATHER_START if is_gather else LOAD_START)
        if is_gather:
            base = self.gather_bases.get(ev.index)
            if ev.gather_error or base is None or _gather_error(cfg, ins, base):
                ev.gather_error = True
                return t0
        else:
            base = ins.dram_addr
        return (yield from self._dma(load_steps(cfg, ins, t0, base), LOAD_PORT, False))

    def _store(self, ev: InstrEvent):
        steps = store_steps(self.cfg, ev.ins, ev.start + STORE_START)
        return (yield from self._dma(steps, STORE_PORT, True))

    # ---------------------------------------------------------------------------------------
    def _report(self) -> SystemReport:
        cfg, dm = self.cfg, self.dm
        ends = [self.stop, self.late_end]
        for ev in self.events:
            ends.append(ev.complete + 1)
            if ev.ins.opcode is Opcode.DMA_GATHER:
                ends.append(ev.start + GATHER_START + 1)
        ends += [r.accept + 1 for r in self.freq]
        e = max(ends)
        dm.run(until=lambda: dm.now > e, to_cycle=e + 1)
        t0 = self.t0
        cnt = dict.fromkeys(COUNTERS, 0)
        cnt["cycles"] = e + 1 - t0
        cnt["retired_ctrl"] = self.ctrl_retired
        for u in UNITS:
            n = _NAMES[u]
            lo_off, hi_off = BUSY_SPAN[u]
            cycles = set()
            for ev in self.queues[u]:
                lo = max(ev.start + lo_off, t0)
                hi = min(ev.end + hi_off, e)
                cycles.update(range(lo, hi + 1))
            cnt[f"busy_{n}"] = len(cycles)
            cnt[f"stall_{n}"] = sum(ev.stall for ev in self.queues[u])
            cnt[f"retired_{n}"] = sum(not ev.gather_error for ev in self.queues[u])
        for ev in self.events:
            op = ev.ins.opcode
            if op is Opcode.GEMM:
                cnt["gemm_macs"] += ev.work
            elif op is Opcode.PIM_MAC:
                cnt["pim_macs"] += ev.work
            elif op in (Opcode.DMA_LOAD, Opcode.DMA_GATHER) and not ev.gather_error:
                cnt["dram_read_bytes"] += ev.work
            elif op is Opcode.DMA_STORE:
                cnt["dram_write_bytes"] += ev.work
        fresh = [False] * cfg.dram_banks
        for cyc, kind, b, _row, _col in dm.trace:
            inside = t0 <= cyc <= e
            if kind == "ACT":
                fresh[b] = True
                cnt["dram_activates"] += inside
            elif kind == "REF":
                cnt["dram_refreshes"] += inside
            elif kind in ("RD", "WR"):
                if inside:
                    cnt["dram_row_misses" if fresh[b] else "dram_row_hits"] += 1
                fresh[b] = False
            elif kind == "MAC":
                fresh[b] = False
        res = self.result
        wrap = (1 << self.cfg.counter_bits) - 1      # the RTL's counters wrap there
        cycles = cnt["cycles"]
        cnt = {k: v & wrap for k, v in cnt.items()}
        return SystemReport(cycles=cycles, start=t0, end=e, status=res.status,
                            error=res.error, error_pc=res.error_pc, counters=cnt,
                            events=self.events)
