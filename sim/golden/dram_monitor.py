"""DRAM timing monitor: checks a command trace against every timing parameter of a config.

A trace is a list of ``(cycle, kind, bank, row, col)`` with ``kind`` one of ``ACT``, ``PRE``,
``RD``, ``WR``, ``REF`` (commands on the channel's command bus) and ``MAC`` (a PIM column read
inside one bank; it does not use the command or data bus). :func:`check_trace` raises
:class:`TimingViolationError` naming the rule, the two commands and their cycles at the first
violation. It is independent of the RTL and of :class:`~.dram_model.DramModel` (it only knows
the rules), so every test that runs the channel can pass its trace through it.

Rules (``t`` = the config's :class:`~llmaccel.hw.config.DramTiming`):

* command bus: at most one ACT/PRE/RD/WR/REF per cycle;
* row state: ACT only to a precharged bank, PRE only to an open bank, RD/WR/MAC only to the open
  row, REF only when every bank is precharged;
* same bank: ACT→RD/WR/MAC tRCD, ACT→PRE tRAS, ACT→ACT tRC, PRE→ACT tRP, RD/MAC→PRE tRTP,
  WR→PRE tBURST+tWR (write recovery after the burst), column→column tCCD_L;
* across banks: ACT→ACT tRRD_L in the same bank group, tRRD_S otherwise; at most four ACTs in
  any tFAW window; RD/WR→RD/WR tCCD_L in the same group, tCCD_S otherwise; data bursts (RD:
  cycles c+tCL … c+tCL+tBURST−1, WR: c … c+tBURST−1) never overlap;
* refresh: PRE→REF tRP and ACT→REF tRC for every bank, REF→ACT tRFC; optionally, the k-th
  REF is issued no earlier than k·tREFI and at most ``refresh_slack`` cycles later.
"""

from __future__ import annotations

from collections import deque

from llmaccel.hw.config import AccelConfig

__all__ = ["KINDS", "TimingViolationError", "check_trace"]

KINDS = ("ACT", "PRE", "RD", "WR", "REF", "MAC")
_BUS = ("ACT", "PRE", "RD", "WR", "REF")


class TimingViolationError(AssertionError):
    """A command that breaks a timing or row-state rule."""

    def __init__(self, rule: str, first, second, detail: str = ""):
        self.rule, self.first, self.second = rule, first, second
        a = f"{first[1]} bank {first[2]} row {first[3]} col {first[4]} @ {first[0]}" \
            if first is not None else "(start)"
        b = f"{second[1]} bank {second[2]} row {second[3]} col {second[4]} @ {second[0]}"
        super().__init__(f"{rule}: {b} after {a}{': ' + detail if detail else ''}")


def check_trace(cfg: AccelConfig, trace, *, refresh_slack: int | None = None,
                end_cycle: int | None = None) -> dict:
    """Check ``trace``; return counts of each command kind. Raises :class:`TimingViolationError`.

    With ``refresh_slack`` the refresh schedule is checked too: every REF k (k ≥ 1) lies in
    [k·tREFI, k·tREFI + refresh_slack], and, given ``end_cycle``, every REF due before
    ``end_cycle - refresh_slack`` is present.
    """
    t = cfg.timing
    B = cfg.dram_banks
    is_open = [False] * B
    open_row = [0] * B
    last = {k: [None] * B for k in ("ACT", "PRE", "RD", "WR", "MAC", "COL")}
    last_act_any = None
    acts = deque(maxlen=4)
    last_col_group = [None] * cfg.dram_bank_groups
    last_ref = None
    bus_end = None        # (cycle the last burst ends, the command)
    last_bus_cycle = None
    counts = dict.fromkeys(KINDS, 0)
    refs = 0

    def need(rule, prev, cmd, gap):
        if prev is not None and cmd[0] - prev[0] < gap:
            raise TimingViolationError(rule, prev, cmd, f"{cmd[0] - prev[0]} < {gap} cycles")

    for cmd in sorted(trace, key=lambda c: (c[0], c[1] == "MAC")):
        cyc, kind, bank, row, _col = cmd
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        counts[kind] += 1
        if kind in _BUS:
            if last_bus_cycle is not None and last_bus_cycle[0] == cyc:
                raise TimingViolationError("one command per cycle", last_bus_cycle, cmd)
            last_bus_cycle = cmd
        if kind == "ACT":
            if is_open[bank]:
                raise TimingViolationError("ACT to an open bank", last["ACT"][bank], cmd)
            need("tRC", last["ACT"][bank], cmd, t.tRC)
            need("tRP", last["PRE"][bank], cmd, t.tRP)
            need("tRFC", last_ref, cmd, t.tRFC)
            if last_act_any is not None and last_act_any[2] != bank:
                same = cfg.bank_group(last_act_any[2]) == cfg.bank_group(bank)
                need("tRRD_L" if same else "tRRD_S", last_act_any, cmd,
                     t.tRRD_L if same else t.tRRD_S)
            if len(acts) == 4:
                need("tFAW", acts[0], cmd, t.tFAW)
            acts.append(cmd)
            last_act_any = cmd
            last["ACT"][bank] = cmd
            is_open[bank], open_row[bank] = True, row
        elif kind == "PRE":
            if not is_open[bank]:
                raise TimingViolationError("PRE to a precharged bank", last["PRE"][bank], cmd)
            need("tRAS", last["ACT"][bank], cmd, t.tRAS)
            need("tRTP", last["RD"][bank], cmd, t.tRTP)
            need("tRTP", last["MAC"][bank], cmd, t.tRTP)
            need("tWR", last["WR"][bank], cmd, t.tBURST + t.tWR)
            last["PRE"][bank] = cmd
            is_open[bank] = False
        elif kind in ("RD", "WR", "MAC"):
            if not is_open[bank] or open_row[bank] != row:
                raise TimingViolationError(f"{kind} to a row that is not open", last["ACT"][bank],
                                      cmd, f"open row {open_row[bank] if is_open[bank] else None}")
            need("tRCD", last["ACT"][bank], cmd, t.tRCD)
            need("tCCD_L (same bank)", last["COL"][bank], cmd, t.tCCD_L)
            last["COL"][bank] = cmd
            last[kind][bank] = cmd
            if kind != "MAC":
                mine = cfg.bank_group(bank)
                for g, prev in enumerate(last_col_group):
                    need("tCCD_L" if g == mine else "tCCD_S", prev, cmd,
                         t.tCCD_L if g == mine else t.tCCD_S)
                last_col_group[mine] = cmd
                start = cyc + (t.tCL if kind == "RD" else 0)
                if bus_end is not None and start < bus_end[0]:
                    raise TimingViolationError("data bus overlap", bus_end[1], cmd,
                                          f"burst from {start} before {bus_end[0]}")
                bus_end = (start + t.tBURST, cmd)
        else:  # REF
            for b in range(B):
                if is_open[b]:
                    raise TimingViolationError("REF with a bank open", last["ACT"][b], cmd,
                                          f"bank {b}")
                need("tRP before REF", last["PRE"][b], cmd, t.tRP)
                need("tRC before REF", last["ACT"][b], cmd, t.tRC)
            need("tRFC", last_ref, cmd, t.tRFC)
            refs += 1
            if refresh_slack is not None:
                due = refs * t.tREFI
                if not due <= cyc <= due + refresh_slack:
                    raise TimingViolationError("tREFI", last_ref, cmd,
                                          f"refresh {refs} due at {due}, slack {refresh_slack}")
            last_ref = cmd
    if refresh_slack is not None and end_cycle is not None:
        expected = max(0, (end_cycle - refresh_slack) // t.tREFI)
        if refs < expected:
            raise TimingViolationError("tREFI", last_ref, (end_cycle, "REF", 0, 0, 0),
                                  f"only {refs} refreshes by cycle {end_cycle}, "
                                  f"{expected} due")
    return counts
