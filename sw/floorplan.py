"""Block-RAM floorplan for the ECP5 flow: each DRAM bank's block RAMs in one row of the device.

The ``fpga`` preset's four DRAM banks take 160 of the LFE5U-85F's 208 DP16KD block RAMs, and
nextpnr's placers, left to themselves, interleave the four banks over all four rows of block
RAM: every bank's 256-bit read data and its PIM engine then span the whole device. Pinning bank
``b``'s block RAMs (and its PIM engine's accumulator-slot block RAM) to row ``b`` keeps each bank
and its engine in one horizontal band. The bank's block RAMs take the outer sites of the row,
ordered by the bits they hold so that the block RAMs of one data bit are neighbours; the middle
sites stay free for the other memories (accumulator, scratchpad, tables), which nextpnr places
itself. docs/fpga.md ("Floorplan") has the measurements.

The plan is written into the netlist as ``BEL`` attributes, which nextpnr binds before placing.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from llmaccel.hw.errors import LlmaccelError

__all__ = ["LFE5U_85F", "EbrGrid", "Floorplan", "apply_floorplan", "plan_floorplan"]


@dataclass(frozen=True)
class EbrGrid:
    """Where a device's DP16KD sites are: ``rows`` (tile Y) × ``sites`` per row, each an
    ``(x, z)`` pair, nextpnr's bel ``X<x>/Y<y>/EBR<z>``."""

    rows: tuple[int, ...]
    sites: tuple[tuple[int, int], ...]

    def bel(self, row: int, site: int) -> str:
        x, z = self.sites[site]
        return f"X{x}/Y{self.rows[row]}/EBR{z}"

    @property
    def capacity(self) -> int:
        return len(self.rows) * len(self.sites)


def _lfe5u_85f_sites() -> tuple[tuple[int, int], ...]:
    # 13 groups of four EBR bels, one group per 9 tiles from X4; the group at X69 and those after
    # it sit two tiles further right (past the device's centre column).
    sites = []
    for g in range(13):
        base = 4 + 9 * g + (2 if g >= 7 else 0)
        sites += [(base + 2 * z, z) for z in range(4)]
    return tuple(sites)


#: The LFE5U-85F (ULX3S): four rows of 52 DP16KD sites (208), as nextpnr-ecp5 0.11 names them
#: (checked against the 208 bels nextpnr chose for the whole ``fpga`` design, 2026-11-27).
LFE5U_85F = EbrGrid(rows=(22, 46, 70, 82), sites=_lfe5u_85f_sites())

#: Yosys' block-RAM cell types on ECP5 (nextpnr places both on DP16KD sites).
BRAM_TYPES = ("DP16KD", "PDPW16KD")
_BANK = re.compile(r"accel\.dram\.bank(\d+)\.(.+)\.(\d+)\.(\d+)$")
_SLOTS = re.compile(r"accel\.dram\.pim(\d+)\.")


@dataclass
class Floorplan:
    """``bels``: cell name → bel for every pinned block RAM; ``reason``: why nothing was pinned
    (empty when the plan was made)."""

    bels: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    banks: int = 0

    def summary(self) -> str:
        if self.reason:
            return f"floorplan: nothing pinned ({self.reason})"
        return (f"floorplan: {len(self.bels)} block RAMs pinned, DRAM bank b and its PIM "
                f"engine's slot memory in block-RAM row b ({self.banks} banks)")


def _top_module(netlist: dict) -> dict:
    mods = netlist.get("modules", {})
    tops = [m for m in mods.values() if m.get("attributes", {}).get("top")]
    if len(tops) != 1:
        raise LlmaccelError("the netlist has no single top module")
    return tops[0]


def plan_floorplan(netlist: dict, grid: EbrGrid = LFE5U_85F) -> Floorplan:
    """The floorplan of a Yosys JSON netlist (flattened, after block-RAM mapping) on ``grid``.

    DRAM bank ``b``'s block-RAM cells (``accel.dram.bank<b>.<memory>.<depth>.<slice>``) go to row
    ``b``; within a bank they are ordered by the fraction of the data word their slice holds
    (so a 512×32 slice sits among the 2048×8 slices of the same bits), then split between the
    left and right ends of the row. PIM engine ``b``'s block-RAM cells go to the middle of row
    ``b``. Nothing is pinned, and ``reason`` says why, if the banks outnumber the rows, a bank
    does not fit one row, or the remaining block RAMs would not fit the remaining sites."""
    cells = _top_module(netlist)["cells"]
    brams = [n for n, c in cells.items() if c.get("type") in BRAM_TYPES]
    banks: dict[int, list[tuple[str, int, int, str]]] = defaultdict(list)
    slots: dict[int, list[str]] = defaultdict(list)
    for name in brams:
        if m := _BANK.match(name):
            banks[int(m[1])].append((m[2], int(m[3]), int(m[4]), name))
        elif m := _SLOTS.match(name):
            slots[int(m[1])].append(name)
    if not banks:
        return Floorplan(reason="the netlist has no DRAM bank in block RAM")
    if len(brams) > grid.capacity:
        return Floorplan(reason=f"{len(brams)} DP16KD but the device has {grid.capacity}")
    if max(banks) >= len(grid.rows):
        return Floorplan(reason=f"{max(banks) + 1} DRAM banks but {len(grid.rows)} block-RAM "
                                f"rows")
    per_row = len(grid.sites)
    for b, bank in banks.items():
        if len(bank) + len(slots.get(b, ())) > per_row:
            return Floorplan(reason=f"bank {b} needs {len(bank) + len(slots.get(b, ()))} "
                                    f"DP16KD, a row has {per_row}")
    plan = Floorplan(banks=len(banks))
    for b, bank in sorted(banks.items()):
        slices = Counter((mem, depth) for mem, depth, _, _ in bank)
        order = [name for *_, name in sorted(
            bank, key=lambda t: ((t[2] + 0.5) / slices[(t[0], t[1])], t[0], t[1], t[2]))]
        left = (len(order) + 1) // 2
        sites = [*range(left), *range(per_row - (len(order) - left), per_row)]
        for name, site in zip(order, sites, strict=True):
            plan.bels[name] = grid.bel(b, site)
        middle = (left + per_row - (len(order) - left)) // 2
        for k, name in enumerate(sorted(slots.get(b, ()))):
            plan.bels[name] = grid.bel(b, middle + k)
    return plan


def apply_floorplan(netlist_path: str | Path, grid: EbrGrid = LFE5U_85F) -> Floorplan:
    """Plan the floorplan of the netlist at ``netlist_path`` and write it back with a ``BEL``
    attribute on every pinned cell."""
    path = Path(netlist_path)
    netlist = json.loads(path.read_text())
    plan = plan_floorplan(netlist, grid)
    if plan.bels:
        cells = _top_module(netlist)["cells"]
        for name, bel in plan.bels.items():
            cells[name].setdefault("attributes", {})["BEL"] = bel
        path.write_text(json.dumps(netlist))
    return plan
