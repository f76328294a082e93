"""Build and run a cocotb test module against an Amaranth component, cached by Verilog hash.

Each (component Verilog, simulator) pair gets its own build directory
``build/cocotb/<simulator>/<name>-<hash>``, so parametrisations never share a build and an
unchanged design is not rebuilt. Waveforms are written only when ``LLMACCEL_WAVES=1``.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from llmaccel.sim.tools import (
    BUILD_ROOT,
    content_hash,
    icarus_compatible,
    require_iverilog,
    verilator_env,
    verilog_of,
)

__all__ = ["run_cocotb"]

#: Verilator options for simulation builds (lint cleanliness is checked separately with -Wall).
VERILATOR_BUILD_ARGS = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "--x-assign", "0",
                        "--x-initial", "0", "-O2"]


def run_cocotb(component, *, name: str, test_module: str, simulator: str = "verilator",
               test_dir: str | Path | None = None, extra_env: dict | None = None,
               testcase: str | None = None, seed: int = 1, verilog: str | None = None) -> Path:
    """Generate Verilog for ``component`` (or use ``verilog``), build it for ``simulator`` and
    run the cocotb ``test_module``. Raises AssertionError when any cocotb test fails.

    ``extra_env`` reaches the test module through ``os.environ`` (e.g. a JSON config).
    """
    from cocotb_tools.runner import get_results, get_runner  # noqa: PLC0415

    text = verilog if verilog is not None else verilog_of(component, name)
    if simulator == "icarus":
        text = icarus_compatible(text)
    digest = content_hash(text, simulator)
    build_dir = BUILD_ROOT / "cocotb" / simulator / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / f"{name}.v"
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    waves = os.environ.get("LLMACCEL_WAVES") == "1"
    env_saved = dict(os.environ)
    try:
        if simulator == "verilator":
            os.environ.update(verilator_env())
            build_args = list(VERILATOR_BUILD_ARGS)
        elif simulator == "icarus":
            require_iverilog()
            build_args = []
        else:
            raise ValueError(f"simulator must be verilator or icarus, not {simulator!r}")
        runner = get_runner(simulator)
        # pytest-xdist workers may build the same design at once: one builds, the others wait.
        with open(build_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            runner.build(sources=[src], hdl_toplevel=name, build_dir=build_dir,
                         build_args=build_args, waves=waves, timescale=("1ns", "1ps"),
                         log_file=build_dir / "build.log")
        test_dir = Path(test_dir) if test_dir else build_dir
        paths = [str(test_dir)] + [p for p in sys.path if p]
        env = {"PYTHONPATH": os.pathsep.join(paths)} | (extra_env or {})
        results = runner.test(hdl_toplevel=name, test_module=test_module, build_dir=build_dir,
                              test_dir=test_dir, extra_env=env, testcase=testcase, seed=seed,
                              waves=waves, timescale=("1ns", "1ps"),
                              results_xml=str(build_dir / f"results-{os.getpid()}.xml"))
    finally:
        os.environ.clear()
        os.environ.update(env_saved)
    n_tests, n_failed = get_results(results)
    assert n_tests > 0, f"no cocotb tests ran from {test_module}"
    assert n_failed == 0, f"{n_failed} of {n_tests} cocotb tests failed in {test_module} " \
                          f"({simulator}, build {build_dir})"
    return results
