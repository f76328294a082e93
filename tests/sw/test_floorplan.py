"""The ECP5 block-RAM floorplan (sw/floorplan.py): each DRAM bank's block RAMs in one row, the
block RAMs of one data bit side by side, the PIM engine's slot memory in the middle of its
bank's row, everything else left to nextpnr; and the cases it declines."""

import json
import re

import pytest

from llmaccel.hw.errors import LlmaccelError
from llmaccel.sw import fpga
from llmaccel.sw.cli import main
from llmaccel.sw.floorplan import LFE5U_85F, EbrGrid, apply_floorplan, plan_floorplan


def _netlist(banks=4, mem0=32, mem1=8, slots=True, others=44, cell_type="DP16KD"):
    """A Yosys-shaped netlist of the fpga preset's block RAMs: per bank a 2048 × 8 memory in
    ``mem0`` slices and a 512 × 32 memory in ``mem1`` slices, one slot memory per PIM engine,
    and ``others`` block RAMs of the SRAMs and tables."""
    cells = {}
    for b in range(banks):
        for k in range(mem0):
            cells[f"accel.dram.bank{b}.mem0.0.{k}"] = {"type": cell_type}
        for j in range(mem1):
            cells[f"accel.dram.bank{b}.mem1.0.{j}"] = {"type": cell_type}
        if slots:
            cells[f"accel.dram.pim{b}.slots.0.0"] = {"type": cell_type}
    for k in range(others):
        cells[f"accel.acc.bank0.{k % 2}.{k}"] = {"type": "DP16KD"}
    cells["accel.vec.alu.x_LUT4_Z"] = {"type": "LUT4"}
    return {"modules": {"board_top": {"attributes": {"top": "1"}, "cells": cells}}}


def _site(bel):
    x, y, z = map(int, re.fullmatch(r"X(\d+)/Y(\d+)/EBR(\d)", bel).groups())
    return y, LFE5U_85F.sites.index((x, z))


def test_the_85f_grid_is_four_rows_of_52_distinct_sites():
    bels = {LFE5U_85F.bel(r, s) for r in range(4) for s in range(52)}
    assert len(bels) == LFE5U_85F.capacity == 208
    assert LFE5U_85F.bel(0, 0) == "X4/Y22/EBR0"
    assert LFE5U_85F.bel(3, 51) == "X120/Y82/EBR3"
    assert LFE5U_85F.bel(1, 28) == "X69/Y46/EBR0"     # past the centre column


def test_each_bank_takes_one_row_with_a_bits_blocks_side_by_side():
    plan = plan_floorplan(_netlist())
    assert not plan.reason and plan.banks == 4
    assert len(plan.bels) == 4 * 41                   # the other 44 are left to nextpnr
    assert len(set(plan.bels.values())) == len(plan.bels)
    for b in range(4):
        row = {n: _site(bel) for n, bel in plan.bels.items() if f"bank{b}." in n or f"pim{b}." in n}
        assert {y for y, _ in row.values()} == {LFE5U_85F.rows[b]}
        sites = {n: s for n, (_, s) in row.items()}
        # mem0 slices 4j … 4j+3 hold the bits of mem1 slice j: they are its neighbours.
        order = sorted((s, n) for n, s in sites.items() if "bank" in n)
        names = [n.removeprefix(f"accel.dram.bank{b}.") for _, n in order]
        assert names[:5] == ["mem0.0.0", "mem0.0.1", "mem1.0.0", "mem0.0.2", "mem0.0.3"]
        assert names[-5:] == ["mem0.0.28", "mem0.0.29", "mem1.0.7", "mem0.0.30", "mem0.0.31"]
        # 20 sites at each end for the bank; its engine's slot memory in the free middle.
        bank_sites = sorted(s for n, s in sites.items() if "bank" in n)
        assert bank_sites == [*range(20), *range(32, 52)]
        assert sites[f"accel.dram.pim{b}.slots.0.0"] == 26


def test_a_netlist_the_floorplan_does_not_suit_is_left_alone():
    assert "no DRAM bank" in plan_floorplan(_netlist(banks=0)).reason
    assert "5 DRAM banks but 4 block-RAM rows" in plan_floorplan(
        _netlist(banks=5, others=0)).reason
    assert "bank 0 needs 53 DP16KD, a row has 52" in plan_floorplan(
        _netlist(banks=1, mem0=48, mem1=4)).reason
    assert "209 DP16KD but the device has 208" in plan_floorplan(_netlist(others=45)).reason
    for plan in (plan_floorplan(_netlist(banks=5, others=0)), plan_floorplan(_netlist(banks=0))):
        assert plan.bels == {} and "nothing pinned" in plan.summary()


def test_a_smaller_grid_and_fewer_banks_plan_the_same_way():
    grid = EbrGrid(rows=(5, 9), sites=tuple((2 * k, 0) for k in range(10)))
    plan = plan_floorplan(_netlist(banks=2, mem0=4, mem1=2, others=2), grid)
    assert not plan.reason
    for b, y in enumerate(grid.rows):
        names = sorted((int(re.match(r"X(\d+)", bel)[1]), n) for n, bel in plan.bels.items()
                       if f"/Y{y}/" in bel)
        assert {n.split(".")[2] for _, n in names} == {f"bank{b}", f"pim{b}"}
        assert [n.split(".", 3)[-1] for _, n in names] == [
            "mem0.0.0", "mem1.0.0", "mem0.0.1", "slots.0.0", "mem0.0.2", "mem1.0.1",
            "mem0.0.3"]


def test_apply_writes_bel_attributes_the_placer_binds(tmp_path):
    path = tmp_path / "board_top.json"
    path.write_text(json.dumps(_netlist()))
    plan = apply_floorplan(path)
    cells = json.loads(path.read_text())["modules"]["board_top"]["cells"]
    pinned = {n: c["attributes"]["BEL"] for n, c in cells.items()
              if "BEL" in c.get("attributes", {})}
    assert pinned == plan.bels
    assert "164 block RAMs pinned" in plan.summary()
    # A netlist it declines is not rewritten.
    path.write_text(json.dumps(_netlist(banks=0)))
    before = path.read_text()
    assert apply_floorplan(path).reason and path.read_text() == before


def test_no_floorplan_reaches_the_flow_and_needs_a_placement(monkeypatch, capsys):
    seen = {}

    def fake(cfg, target, **kw):
        seen.update(kw)
        raise LlmaccelError("stop here")

    monkeypatch.setattr(fpga, "synthesize", fake)
    assert main(["synth", "--config", "tiny"]) == 2
    assert seen["floorplan"] is True
    assert main(["synth", "--config", "tiny", "--no-floorplan"]) == 2
    assert seen["floorplan"] is False
    assert main(["synth", "--config", "tiny", "--no-pnr", "--no-floorplan"]) == 2
    assert "--no-floorplan leaves the whole design's block RAMs" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"modules": {}}, {"modules": {"a": {"attributes": {}}}}])
def test_a_netlist_without_one_top_module_is_an_error(bad):
    with pytest.raises(LlmaccelError, match="no single top module"):
        plan_floorplan(bad)
