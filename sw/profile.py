"""``llmaccel profile``: where the cycles of one program of a generation go.

The tiny GPT generates on the golden backend; for one of its programs (by default the last
decode step) the golden system model (sim/golden/system_model.py) gives every instruction's
dispatch, start and end cycle and every DRAM command. The model is exact to the RTL: its
cycles and every performance counter equal the RTL's for every program of a generation
(tests/e2e/test_e2e.py) and for fuzzed programs (tests/e2e/test_fuzz.py), so this is the RTL's
timeline without a waveform.

Reported: the program's cycles; per compiler op (``h.0.attention``, ``h.0.mlp``, …, the ops of
:mod:`llmaccel.sw.compiler.gpt`) its span (first start to last end) and each unit's busy cycles
inside it (the RTL's busy-counter convention, so the per-op figures add up to the counters);
the same summed over layers; the units' busy cycles and the cycles no unit is busy; the DRAM
commands. ``--chrome-trace FILE`` writes the timeline as Chrome trace-event JSON (one track per
unit, one per op, one per DRAM bank; one microsecond = one cycle) for Perfetto
(https://ui.perfetto.dev) or chrome://tracing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.controller import UNITS
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import INSTR_BYTES
from llmaccel.sim.golden.system_model import BUSY_SPAN

__all__ = ["Profile", "chrome_trace", "profile_generation", "report"]


@dataclass
class OpProfile:
    """One compiler op of the profiled program."""

    name: str
    first: int                       # instruction indices [first, end)
    end: int
    start_cycle: int | None = None   # relative to T0; None when no unit instruction ran
    end_cycle: int | None = None
    busy: dict = field(default_factory=dict)     # unit name → busy cycles inside the op

    @property
    def span(self) -> int:
        return 0 if self.start_cycle is None else self.end_cycle - self.start_cycle + 1


@dataclass
class Profile:
    """The profiled program (cycles relative to its first RUNNING cycle, T0)."""

    config: str
    kind: str                        # "prefill" or "decode"
    position: int
    cycles: int
    instructions: int
    ops: list[OpProfile]
    busy: dict                       # unit → busy cycles (= the RTL's busy counters)
    idle: int                        # cycles in which no unit is busy
    dram: dict                       # DRAM command → count
    counters: dict                   # the run's performance counters (hw/regs.py COUNTERS)
    events: list = field(repr=False, default_factory=list)    # InstrEvent, absolute cycles
    trace: list = field(repr=False, default_factory=list)     # DRAM commands, absolute cycles
    t0: int = 0
    trfc: int = 0

    def by_kind(self) -> list[tuple[str, int, int, dict]]:
        """Ops merged over layers (``h.<i>.`` dropped): (kind, count, span, busy)."""
        out: dict[str, list] = {}
        for op in self.ops:
            k = re.sub(r"^h\.\d+\.", "", op.name)
            row = out.setdefault(k, [0, 0, {}])
            row[0] += 1
            row[1] += op.span
            for u, v in op.busy.items():
                row[2][u] = row[2].get(u, 0) + v
        return [(k, n, s, b) for k, (n, s, b) in out.items()]

    def as_json(self) -> dict:
        return {
            "config": self.config, "kind": self.kind, "position": self.position,
            "cycles": self.cycles, "instructions": self.instructions, "busy": self.busy,
            "idle": self.idle, "dram_commands": self.dram, "counters": self.counters,
            "ops": [{"name": o.name, "instructions": [o.first, o.end],
                     "start": o.start_cycle, "end": o.end_cycle, "span": o.span,
                     "busy": o.busy} for o in self.ops],
            "by_kind": [{"kind": k, "count": n, "span": s, "busy": b}
                        for k, n, s, b in self.by_kind()],
        }


def _busy_interval(ev) -> tuple[int, int]:
    """The cycles (inclusive) in which the instruction's unit counts as busy for it."""
    a, b = BUSY_SPAN[ev.unit]
    return ev.start + a, ev.end + b


def build_profile(cfg: AccelConfig, program, rep, trace: list, *, kind: str,
                  position: int) -> Profile:
    """A :class:`Profile` of one run from its :class:`~llmaccel.sw.compiler.gpt.ProgramInfo`,
    the system model's report and the DRAM model's command trace."""
    t0, n = rep.start, rep.cycles
    names = [u.name for u in UNITS]
    # Per unit and cycle of the run: 1 + the index of the op whose instruction keeps the unit
    # busy then (0: idle).
    occ = {u: np.zeros(n, np.int32) for u in names}
    spans = program.plan.op_spans
    op_of = np.zeros(program.n_instructions, np.int32)
    for k, (_, a, b) in enumerate(spans):
        op_of[a:b] = k
    ops = [OpProfile(name, a, b) for name, a, b in spans]
    events = [ev for ev in rep.events if ev.unit is not None and ev.start is not None]
    for ev in events:
        idx = (ev.pc - program.base) // INSTR_BYTES
        if not 0 <= idx < program.n_instructions:
            raise LlmaccelError(f"an instruction at pc {ev.pc:#x} lies outside the profiled "
                                f"program ({program.n_instructions} instructions at "
                                f"{program.base:#x})")
        op = ops[op_of[idx]]
        lo, hi = _busy_interval(ev)
        lo, hi = max(lo, t0), min(hi, t0 + n - 1)
        if hi >= lo:
            occ[ev.unit.name][lo - t0:hi - t0 + 1] = op_of[idx] + 1
        s, e = ev.start - t0, ev.end - t0
        op.start_cycle = s if op.start_cycle is None else min(op.start_cycle, s)
        op.end_cycle = e if op.end_cycle is None else max(op.end_cycle, e)
    per_op = {u: np.bincount(occ[u], minlength=len(ops) + 1) for u in names}
    busy = {u: int(n - per_op[u][0]) for u in names}
    for k, op in enumerate(ops):
        op.busy = {u: int(per_op[u][k + 1]) for u in names if per_op[u][k + 1]}
    any_busy = np.zeros(n, bool)
    for u in names:
        any_busy |= occ[u] != 0
    window = [c for c in trace if t0 <= c[0] < t0 + n]
    dram: dict[str, int] = {}
    for c in window:
        dram[c[1]] = dram.get(c[1], 0) + 1
    return Profile(cfg.name, kind, position, n, len(events), ops, busy,
                   int(n - np.count_nonzero(any_busy)), dram, dict(rep.counters), events,
                   window, t0, cfg.timing.tRFC)


def profile_generation(cfg: AccelConfig, qmodel, prompt: list[int], tokens: int, *,
                       step: str = "decode", index: int = -1) -> Profile:
    """Generate on the golden backend and profile one program: ``step`` ``"prefill"`` or
    ``"decode"``, ``index`` among the programs of that kind (default: the last)."""
    from llmaccel.sim.backends.golden import GoldenBackend  # noqa: PLC0415
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator  # noqa: PLC0415

    if step not in ("prefill", "decode"):
        raise LlmaccelError(f"step must be prefill or decode, not {step!r}")
    if step == "decode" and tokens < 2:
        raise LlmaccelError("a decode step needs at least 2 new tokens (the first comes from "
                            "the prefill)")
    be = GoldenBackend(cfg)
    runs: list = []        # (ProgramInfo, SystemReport) of every program run
    Generator(CompiledGPT.fitting(qmodel, cfg), be,
              on_run=lambda info, _run: runs.append((info, be.last_report))
              ).generate(list(prompt), tokens)
    picked = [r for r in runs if r[0].kind == step]
    if not picked:
        raise LlmaccelError(f"the generation ran no {step} program")
    try:
        program, rep = picked[index]
    except IndexError:
        raise LlmaccelError(f"there are {len(picked)} {step} programs; index {index} is out "
                            f"of range") from None
    return build_profile(cfg, program, rep, be.model.dram.trace, kind=step,
                         position=program.position)


def report(p: Profile, *, top: int | None = None) -> str:
    """The profile as text tables."""
    names = [u.name for u in UNITS if p.busy.get(u.name)]
    lines = [f"Profile of the {p.kind} program at position {p.position} (config {p.config}): "
             f"{p.cycles} cycles, {p.instructions} unit instructions",
             "(golden system model = the RTL's cycles; busy = the RTL's busy-counter convention)",
             ""]
    head = f"  {'op':28} {'start':>7} {'end':>7} {'span':>6} " + \
        " ".join(f"{u:>6}" for u in names)
    ops = [o for o in p.ops if o.start_cycle is not None]
    if top is not None:
        ops = sorted(ops, key=lambda o: -o.span)[:top]
    lines += [f"The {len(ops)} longest ops:" if top is not None else "By op, in program order:",
              head]
    for o in ops:
        lines.append(f"  {o.name:28} {o.start_cycle:>7} {o.end_cycle:>7} {o.span:>6} "
                     + " ".join(f"{o.busy.get(u, 0):>6}" for u in names))
    lines += ["", "By op kind (layers merged):",
              f"  {'kind':28} {'ops':>7} {'span':>14} " + " ".join(f"{u:>6}" for u in names)]
    for k, n, s, b in sorted(p.by_kind(), key=lambda r: -r[2]):
        share = f"{s} ({100 * s / p.cycles:4.1f} %)"
        lines.append(f"  {k:28} {n:>7} {share:>14} " + " ".join(f"{b.get(u, 0):>6}"
                                                              for u in names))
    lines += ["", "Units: " + "  ".join(f"{u} {v} ({100 * v / p.cycles:.0f} %)"
                                        for u, v in p.busy.items() if v)
              + f"; no unit busy: {p.idle} cycles",
              "DRAM commands: " + "  ".join(f"{k} {v}" for k, v in sorted(p.dram.items()))
              + (f" (refresh: {p.dram['REF']} × tRFC = {p.dram['REF'] * p.trfc} cycles with "
                 f"every bank closed)" if p.dram.get("REF") else "")]
    return "\n".join(lines)


def chrome_trace(p: Profile, path: str | Path) -> None:
    """Write the profile as Chrome trace-event JSON (one microsecond per cycle)."""
    ev_out: list[dict] = []

    def meta(pid, tid, name):
        ev_out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                       "args": {"name": name}})
    ev_out.append({"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "units"}})
    ev_out.append({"ph": "M", "name": "process_name", "pid": 2,
                   "args": {"name": "DRAM banks"}})
    meta(1, 0, "ops")
    for k, u in enumerate(UNITS):
        meta(1, k + 1, u.name)
    for o in p.ops:
        if o.start_cycle is not None:
            ev_out.append({"ph": "X", "name": o.name, "pid": 1, "tid": 0, "ts": o.start_cycle,
                           "dur": max(1, o.span), "args": {"busy": o.busy}})
    tids = {u: k + 1 for k, u in enumerate(UNITS)}
    for ev in p.events:
        ev_out.append({
            "ph": "X", "name": ev.ins.opcode.name, "pid": 1, "tid": tids[ev.unit],
            "ts": ev.start - p.t0, "dur": max(1, ev.end - ev.start),
            "args": {"pc": f"{ev.pc:#x}", "dispatch": ev.dispatch - p.t0,
                     "fields": {k: str(v) for k, v in ev.ins.fields.items()}}})
    banks = sorted({c[2] for c in p.trace})
    for b in banks:
        meta(2, b, f"bank {b}")
    for t, kind, b, row, col in p.trace:
        ev_out.append({"ph": "i", "s": "t", "name": kind, "pid": 2, "tid": b,
                       "ts": t - p.t0, "args": {"row": row, "col": col}})
    Path(path).write_text(json.dumps({"traceEvents": ev_out, "displayTimeUnit": "ns",
                                      "otherData": {"cycles": p.cycles, "config": p.config,
                                                    "program": f"{p.kind}@{p.position}"}}))
