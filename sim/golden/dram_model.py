"""DRAM channel timing, command by command.

The RTL DRAM controller (hw/dram_channel.py) must issue the same commands at the same cycles as
:class:`DramModel` for the same request sequence; the timing monitor checks every command against
the JEDEC-style parameters of the config.
"""

from __future__ import annotations

from collections import deque

from llmaccel.hw.config import AccelConfig

__all__ = ["DramModel"]


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
