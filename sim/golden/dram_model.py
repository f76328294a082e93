"""Exact timing of the DRAM channel (hw/dram_channel.py) and the PIM front-end (hw/pim_unit.py).

:class:`DramModel` implements the channel's scheduling policy (docs/dram_pim.md) in Python and
predicts, for the same requests and PIM instructions presented at the same cycles, exactly the
cycle of every command the RTL issues, when each request is accepted and when its data move, and
when each PIM instruction is accepted and done. Time is kept as absolute "legal from" cycles
(the RTL's down-counters), and the model jumps from one cycle where something can happen to the
next, so idle stretches cost nothing.

Public API (stable; the cycle model and the DMA timing call it)
----------------------------------------------------------------
``DramModel(cfg, n_ports=1, *, starve_limit=STARVE_LIMIT)``

``present(port, cycle, bank, row, col, write) -> Request``
    A column request whose ``req.valid`` rises at ``cycle`` (or the cycle after the port's
    previous acceptance, whichever is later) and stays high until accepted.
``pim(cycle, ins) -> PimOp``
    A PIM instruction (an :class:`~llmaccel.hw.isa.Instruction`) offered on the PIM unit's
    ``i_cmd`` from ``cycle`` on.
``run(*, to_cycle=None) -> None``
    Simulate until every presented request and PIM instruction has completed (and, with
    ``to_cycle``, until that cycle: an idle channel still refreshes).
``request(now, bank, row, write, col=0, port=0) -> Request``
    Present one request and simulate until its column command issues (``accept``, ``issue``
    and ``done`` are then known).
``column(now, bank, row, write, col=0) -> int``
    Convenience for a single in-order requester on port 0: present one request at ``now``,
    simulate until its column command issues and return the cycle its data have moved (read:
    the cycle ``rsp.valid`` rises; write: the cycle after its burst). Successive calls model a
    requester that keeps ``valid`` high: a request presented at or before the previous one's
    column command waits in the port's skid register (accepted when presented, or the cycle
    after the previous acceptance) and becomes the head the cycle after that command.
``Request``: ``accept``, ``head`` (its first cycle as the port's head: a request accepted
while the head waits sits in the port's skid register until then), ``issue`` (column command
cycle), ``done``; ``PimOp``: ``accept``, ``start``, ``done`` (the cycle ``o_done`` is high).
``trace``: ``[(cycle, kind, bank, row, col), ...]`` of every command, ``kind`` one of ACT, PRE,
RD, WR, REF, MAC (per-bank PIM column reads); the same format as
:mod:`~llmaccel.sim.golden.dram_monitor` checks. ``stats``: counts of commands, row hits/misses.

Assumptions: ``rsp`` is always ready (with backpressure the RTL may hold reads back; the data
and the timing rules are still checked by the tests, the cycles are not predicted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Instruction, Opcode
from llmaccel.hw.pim_mac import MAC_LATENCY

__all__ = ["STARVE_LIMIT", "DramModel", "PimOp", "Request", "rsp_depth", "starvation_bound"]

#: Must equal hw/dram_channel.STARVE_LIMIT (a test checks it).
STARVE_LIMIT = 64
_NEVER = 1 << 62


def rsp_depth(cfg: AccelConfig) -> int:
    """Must equal hw/dram_channel.rsp_depth (a test checks it)."""
    t = cfg.timing
    return -(-(t.tCL + t.tBURST) // t.tCCD_S) + 2


def wrgb_row_period(cfg: AccelConfig) -> int:
    return max(1, -(-cfg.row_width * cfg.timing.tBURST // cfg.col_bytes))


def read_row_period(cfg: AccelConfig) -> int:
    return max(1, -(-cfg.row_width * 4 * cfg.timing.tBURST // cfg.col_bytes))


def starvation_bound(cfg: AccelConfig, n_ports: int, starve_limit: int = STARVE_LIMIT) -> int:
    """Cycles a head request waits at most from becoming head to its column command.

    After ``starve_limit`` cycles the head is urgent; urgent heads are served one at a time in
    round-robin order (at most one other head per port before it), each needing at most PRE
    (after tRAS / tWR / tRTP), tRP, ACT (tRRD, tFAW), tRCD and its column command (tCCD, the
    data bus); one refresh may intervene.
    """
    t = cfg.timing
    service = (max(t.tRAS, t.tBURST + t.tWR, t.tRTP, t.tCCD_L) + max(t.tRP, t.tRC)
               + max(t.tRRD_L, t.tFAW) + t.tRCD + t.tCL + t.tBURST + t.tCCD_L)
    refresh = max(t.tRAS, t.tBURST + t.tWR, t.tRC) + cfg.dram_banks + t.tRP + t.tRFC
    return starve_limit + n_ports * service + refresh


@dataclass(eq=False)
class Request:
    """One column request and what happened to it."""

    port: int
    present: int
    bank: int
    row: int
    col: int
    write: bool
    accept: int | None = None
    head: int | None = None         # first cycle as its port's head (after the skid register)
    issue: int | None = None
    done: int | None = None


@dataclass(frozen=True)
class _Mac:
    row: int
    col: int
    ncols: int


@dataclass(eq=False)
class PimOp:
    """One PIM instruction and its cycles."""

    present: int
    ins: Instruction
    accept: int | None = None
    start: int | None = None
    done: int | None = None
    mac: _Mac | None = None      # the MAC fields, read once (Instruction attributes are slow)


@dataclass(eq=False)
class _Bank:
    is_open: bool = False
    row: int = 0
    act_ok: int = 0
    pre_ok: int = 0
    col_ok: int = 0
    ccd_ok: int = 0


@dataclass(eq=False)
class _Engine:
    pend: _Mac | None = None
    cur: _Mac | None = None
    j: int = 0
    seq: int = 0                                  # instructions that became current
    done_at: list = field(default_factory=list)   # cycle its done count covers each MAC


@dataclass(eq=False)
class _Port:
    queue: deque = field(default_factory=deque)
    head: Request | None = None
    skid: Request | None = None      # accepted while the head waits; the next head
    last_accept: int = -1
    freed_at: int = -1


class DramModel:
    """Cycle-exact model of :class:`~llmaccel.hw.dram_channel.DramChannel` plus the timing of
    :class:`~llmaccel.hw.pim_unit.PimUnit` (see the module docstring for the API)."""

    def __init__(self, cfg: AccelConfig, n_ports: int = 1, *, starve_limit: int = STARVE_LIMIT):
        self.cfg = cfg
        self.t = cfg.timing
        self.n_ports = n_ports
        self.starve_limit = starve_limit
        B, G = cfg.dram_banks, cfg.dram_bank_groups
        self.banks = [_Bank() for _ in range(B)]
        self.engines = [_Engine() for _ in range(B)]
        self.ports = [_Port() for _ in range(n_ports)]
        self.requests: list[list[Request]] = [[] for _ in range(n_ports)]
        self.rrd_ok = [0] * G
        self.ccd_ok = [0] * G
        self.faw = [0, 0, 0, 0]
        self.bus_free = 0
        self.ref_pending = False
        self.ref_due = self.t.tREFI
        self.granted = False
        self.retire = 0
        self.owner: int | None = None       # the urgent port being served exclusively
        self.last_owner = n_ports - 1
        self._picked: int | None = None
        # PIM front-end.
        self.pim_queue: deque[PimOp] = deque()
        self.pim_ops: list[PimOp] = []
        self.pim_last_accept = -1
        self.cmd: PimOp | None = None
        self.outstanding = 0
        self.mac_ops: deque[PimOp] = deque()
        self.walk: PimOp | None = None
        self.walk_start = 0
        self.walk_done = -1
        self.now = 0                 # the next cycle to simulate
        self._hold_last = False
        self.trace: list[tuple] = []
        self.stats = {"reads": 0, "writes": 0, "row_hits": 0, "row_misses": 0,
                      "activates": 0, "precharges": 0, "refreshes": 0, "pim_columns": 0}

    # ---------------------------------------------------------------------------------------
    # Inputs
    def present(self, port: int, cycle: int, bank: int, row: int, col: int,
                write: bool) -> Request:
        r = Request(port, cycle, bank, row, col, bool(write))
        self.ports[port].queue.append(r)
        self.requests[port].append(r)
        self._late_accept(port)
        return r

    def pim(self, cycle: int, ins: Instruction) -> PimOp:
        op = PimOp(cycle, ins)
        if ins.opcode is Opcode.PIM_MAC:
            op.mac = _Mac(ins.row, ins.col, ins.ncols)
        self.pim_queue.append(op)
        self.pim_ops.append(op)
        return op

    def present_addr(self, port: int, cycle: int, col_addr: int, write: bool) -> Request:
        """:meth:`present` with a column address (byte address // 32)."""
        bank, row, col, _ = self.cfg.dram_map(col_addr * self.cfg.col_bytes)
        return self.present(port, cycle, bank, row, col, write)

    def request(self, now: int, bank: int, row: int, write: bool, col: int = 0,
                port: int = 0) -> Request:
        """Present one request at ``now`` and simulate until its column command issues; the
        returned :class:`Request` has ``accept``, ``issue`` and ``done``."""
        r = self.present(port, now, bank, row, col, write)
        self.run(until=lambda: r.issue is not None)
        return r

    def column(self, now: int, bank: int, row: int, write: bool, col: int = 0) -> int:
        return self.request(now, bank, row, write, col).done

    def _late_accept(self, p: int) -> None:
        # A request presented in a cycle the model has already simulated, behind a head that
        # issued in the last simulated cycle with nothing else waiting (``column``'s
        # successive calls): the RTL took it into the skid register as soon as it was
        # presented (the skid was empty; PIM is assumed not to have held the channel in
        # between) and made it the head from the cycle after that column command.
        port = self.ports[p]
        last = self.now - 1
        if last < 0 or port.head is not None or port.freed_at != last or len(port.queue) != 1:
            return
        r = port.queue[0]
        if max(r.present, port.last_accept + 1) > last or self._hold_last:
            return
        port.queue.popleft()
        r.accept = max(r.present, port.last_accept + 1)
        port.last_accept = r.accept
        port.head, r.head = r, last + 1

    # ---------------------------------------------------------------------------------------
    def _busy(self, t: int) -> bool:
        return self.walk is not None and self.walk_start < t <= self.walk_done

    def _hold(self, t: int) -> bool:
        return self.cmd is not None or self.outstanding > 0 or self._busy(t)

    def _pending(self) -> bool:
        if any(p.queue or p.head is not None or p.skid is not None for p in self.ports):
            return True
        if self.pim_queue or self.cmd is not None or self.mac_ops:
            return True
        return self.walk is not None and self.walk_done >= self.now

    def run(self, until=None, *, to_cycle: int | None = None) -> None:
        """Simulate until nothing is pending (or ``until()`` is true); with ``to_cycle``, go
        on (refreshing an idle channel) until that cycle."""
        while (self._pending() or (to_cycle is not None and self.now < to_cycle)) and \
                not (until is not None and until()):
            t = self.now
            acted = self._step(t)
            nxt = t + 1 if acted else self._next_time(t)
            if to_cycle is not None and t < to_cycle:
                nxt = min(nxt, to_cycle)    # an idle jump must not carry us past to_cycle
            self.now = nxt
            if self.ref_due <= self.now:
                self.ref_pending = True
                while self.ref_due <= self.now:
                    self.ref_due += self.t.tREFI

    # ---------------------------------------------------------------------------------------
    def _next_time(self, t: int) -> int:
        cands = [self.ref_due]
        for bk in self.banks:
            cands += [bk.act_ok, bk.pre_ok, bk.col_ok, bk.ccd_ok]
        cands += self.rrd_ok + self.ccd_ok + [self.faw[0], self.bus_free,
                                                self.bus_free - self.t.tCL]
        for p in self.ports:
            if p.queue:
                cands.append(max(p.queue[0].present, p.last_accept + 1))
            if p.head is not None:
                cands.append(p.head.head + self.starve_limit)
        if self.pim_queue:
            cands.append(max(self.pim_queue[0].present, self.pim_last_accept + 1))
        if self.walk is not None:
            cands += [self.walk_done, self.walk_done + 1]
        for e in self.engines:
            if len(e.done_at) > self.retire:
                cands.append(e.done_at[self.retire])
        later = [c for c in cands if c > t]
        return min(later) if later else t + 1

    def _step(self, t: int) -> bool:
        cfg, tm = self.cfg, self.t
        B, G = cfg.dram_banks, cfg.dram_bank_groups
        banks, engines = self.banks, self.engines
        acted = False
        hold = self._hold(t)
        heads_empty = all(p.head is None for p in self.ports)
        bus_idle = self.bus_free <= t

        # --- command selection --------------------------------------------------------------
        cmd = None               # (kind, bank, row, col, port)
        mac_go = [False] * B
        if self.ref_pending:
            for b, bk in enumerate(banks):
                if bk.is_open and bk.pre_ok <= t:
                    cmd = ("PRE", b, bk.row, 0, 0)
                    break
            else:
                if all(not bk.is_open and bk.act_ok <= t for bk in banks):
                    cmd = ("REF", 0, 0, 0, 0)
        elif self.granted:
            for b, (bk, e) in enumerate(zip(banks, engines, strict=True)):
                active = e.cur is not None and e.cur.ncols != 0
                hit = active and bk.is_open and bk.row == e.cur.row
                mac_go[b] = hit and bk.col_ok <= t and bk.ccd_ok <= t
            # Banks still on the oldest unfinished MAC first, then lowest bank first.
            for oldest in (True, False):
                for b, (bk, e) in enumerate(zip(banks, engines, strict=True)):
                    if cmd is not None:
                        break
                    if oldest and (e.seq - 1) % 8 != self.retire % 8:
                        continue
                    active = e.cur is not None and e.cur.ncols != 0
                    if not active or (bk.is_open and bk.row == e.cur.row):
                        continue
                    if bk.is_open and bk.pre_ok <= t:
                        cmd = ("PRE", b, bk.row, 0, 0)
                    elif (not bk.is_open and bk.act_ok <= t and self.rrd_ok[b % G] <= t
                          and self.faw[0] <= t):
                        cmd = ("ACT", b, e.cur.row, 0, 0)
        else:
            self._picked = None
            cmd = self._select_normal(t)
            if self.owner is not None and cmd is not None and cmd[0] in ("RD", "WR") and \
                    cmd[4] == self.owner:
                self.owner = None
                acted = True
            elif self._picked is not None:
                self.last_owner = self._picked
                acted = True
                if cmd is None or cmd[0] not in ("RD", "WR") or cmd[4] != self._picked:
                    self.owner = self._picked

        # --- PIM front-end decisions (registered state of cycle t) ------------------------------
        mac_done = all(len(e.done_at) > self.retire and e.done_at[self.retire] <= t
                       for e in engines)
        mac_ready = self.granted and all(e.pend is None for e in engines)
        is_mac = self.cmd is not None and self.cmd.ins.opcode is Opcode.PIM_MAC
        fe_mac_go = is_mac and mac_ready and not self._busy(t)
        start = (self.cmd is not None and not is_mac and self.granted and self.outstanding == 0
                 and not self._busy(t))
        walk_done = self._busy(t) and t == self.walk_done
        cmd_ready = self.cmd is None or fe_mac_go or start
        pim_accept = None
        if cmd_ready and self.pim_queue and \
                max(self.pim_queue[0].present, self.pim_last_accept + 1) <= t:
            pim_accept = self.pim_queue.popleft()

        # --- apply: banks and channel counters ------------------------------------------------
        if cmd is not None:
            acted = True
            kind, b, row, col, port = cmd
            self.trace.append((t, kind, b, row, col))
            if kind == "ACT":
                bk = banks[b]
                bk.is_open, bk.row = True, row
                bk.act_ok = max(bk.act_ok, t + tm.tRC)
                bk.col_ok = t + tm.tRCD
                bk.pre_ok = max(bk.pre_ok, t + tm.tRAS)
                g0 = b % G
                for g in range(G):
                    self.rrd_ok[g] = max(self.rrd_ok[g],
                                         t + (tm.tRRD_L if g == g0 else tm.tRRD_S))
                self.faw = [*self.faw[1:], t + tm.tFAW]
                self.stats["activates"] += 1
            elif kind == "PRE":
                bk = banks[b]
                bk.is_open = False
                bk.act_ok = max(bk.act_ok, t + tm.tRP)
                self.stats["precharges"] += 1
            elif kind == "REF":
                for bk in banks:
                    bk.act_ok = max(bk.act_ok, t + tm.tRFC)
                self.ref_pending = False
                self.stats["refreshes"] += 1
            else:
                bk = banks[b]
                write = kind == "WR"
                bk.pre_ok = max(bk.pre_ok, t + (tm.tBURST + tm.tWR if write else tm.tRTP))
                bk.ccd_ok = t + tm.tCCD_L
                g0 = b % G
                for g in range(G):
                    self.ccd_ok[g] = max(self.ccd_ok[g],
                                         t + (tm.tCCD_L if g == g0 else tm.tCCD_S))
                self.bus_free = max(self.bus_free,
                                    t + (tm.tBURST if write else tm.tCL + tm.tBURST))
                p = self.ports[port]
                r = p.head
                r.issue = t
                r.done = t + (tm.tBURST if write else tm.tCL + tm.tBURST)
                p.head = None
                p.freed_at = t
                self.stats["writes" if write else "reads"] += 1

        # --- engines ---------------------------------------------------------------------------
        disp = self.cmd.mac if fe_mac_go else None
        for b, e in enumerate(engines):
            cur = e.cur
            take = cur is None
            if mac_go[b]:
                acted = True
                col = cur.col + e.j
                self.trace.append((t, "MAC", b, cur.row, col))
                bk = banks[b]
                bk.pre_ok = max(bk.pre_ok, t + tm.tRTP)
                bk.ccd_ok = t + tm.tCCD_L
                self.stats["pim_columns"] += 1
                if e.j == cur.ncols - 1:
                    take = True
                    e.done_at.append(t + MAC_LATENCY + 1)
                else:
                    e.j += 1
            elif cur is not None and cur.ncols == 0:
                take = True
                e.done_at.append(t + MAC_LATENCY + 1)
            if take:
                if e.cur is not None or e.pend is not None:
                    acted = True
                if e.pend is not None:
                    e.seq += 1
                e.cur, e.j = e.pend, 0
            if disp is not None:
                e.pend = disp
                acted = True
            elif take:
                e.pend = None

        # --- PIM front-end -------------------------------------------------------------------
        if mac_done:
            acted = True
            self.retire += 1
            self.outstanding -= 1
            op = self.mac_ops.popleft()
            op.done = t
        if walk_done:
            acted = True
            self.walk.done = t
            self.walk = None
        if fe_mac_go:
            acted = True
            self.outstanding += 1
            self.cmd.start = t
            self.mac_ops.append(self.cmd)
            self.cmd = None
        if start:
            acted = True
            self._start_walk(self.cmd, t)
            self.cmd = None
        if pim_accept is not None:
            acted = True
            pim_accept.accept = t
            self.pim_last_accept = t
            self.cmd = pim_accept

        # --- ports: acceptance -----------------------------------------------------------------
        # A port is ready while its skid register is empty (at the start of the cycle) and PIM
        # does not hold the channel. A head freed this cycle (or empty) takes the skid's request
        # or else the one accepted now, from the next cycle; a request accepted while the head
        # stays waits in the skid register.
        for p in self.ports:
            ready = p.skid is None and not hold
            if p.skid is not None and p.head is None:
                p.head, p.skid = p.skid, None
                p.head.head = t + 1
                acted = True
            if p.queue and ready:
                r = p.queue[0]
                if max(r.present, p.last_accept + 1) <= t:
                    p.queue.popleft()
                    r.accept = t
                    p.last_accept = t
                    if p.head is None:
                        p.head, r.head = r, t + 1
                    else:
                        p.skid = r
                    acted = True

        # --- ownership (registered: from the heads and bus state at the start of cycle t) ------
        granted = hold and (self.granted or (heads_empty and bus_idle))
        if granted != self.granted:
            acted = True
        self.granted = granted
        self._hold_last = hold
        return acted

    def _select_normal(self, t: int):
        cfg, tm = self.cfg, self.t
        G = cfg.dram_bank_groups
        banks = self.banks
        ports = self.ports
        heads = [p.head for p in ports]
        hit = [h is not None and banks[h.bank].is_open and banks[h.bank].row == h.row
               for h in heads]
        urgent = [h is not None and t - h.head >= self.starve_limit for h in heads]
        P = len(ports)
        if self.owner is not None:
            sel = self.owner
        elif any(urgent):
            sel = next(q for q in ((self.last_owner + 1 + k) % P for k in range(P)) if urgent[q])
            self._picked = sel
        else:
            sel = None
        allowed = [sel is None or i == sel for i in range(P)]
        for i, h in enumerate(heads):
            if not (allowed[i] and hit[i]):
                continue
            bk = banks[h.bank]
            g = h.bank % G
            if bk.col_ok > t or bk.ccd_ok > t or self.ccd_ok[g] > t:
                continue
            if h.write:
                if self.bus_free > t:
                    continue
            elif self.bus_free > t + tm.tCL:
                continue
            return ("WR" if h.write else "RD", h.bank, h.row, h.col, i)
        for i, h in enumerate(heads):
            if h is None or not allowed[i] or hit[i]:
                continue
            bk = banks[h.bank]
            if bk.is_open:
                protected = any(hit[q] and heads[q].bank == h.bank
                                for q in range(len(ports)) if q != i)
                if bk.pre_ok <= t and (urgent[i] or not protected):
                    return ("PRE", h.bank, bk.row, 0, i)
            elif (bk.act_ok <= t and self.rrd_ok[h.bank % G] <= t and self.faw[0] <= t):
                return ("ACT", h.bank, h.row, 0, i)
        return None

    def _start_walk(self, op: PimOp, t: int) -> None:
        cfg = self.cfg
        W = cfg.row_width
        ins = op.ins
        s = ins.sram_addr
        if ins.opcode is Opcode.PIM_WRGB:
            n = 0 if ins.len == 0 else (s + ins.len - 1) // W - s // W + 1
            done = t + 1 if n == 0 else t + 3 + (n - 1) * wrgb_row_period(cfg)
        else:
            count = ins.nslots * cfg.dram_banks
            n = 0 if count == 0 else (s + count - 1) // W - s // W + 1
            done = t + 1 if n == 0 else t + 2 + (n - 1) * read_row_period(cfg)
        op.start = t
        self.walk, self.walk_start, self.walk_done = op, t, done
