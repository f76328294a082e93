"""``llmaccel bench simspeed``: how fast each backend simulates the end-to-end run.

The tiny GPT generates ``--tokens`` tokens after a ``--prompt-len``-byte prompt on the default
config. Measured, as simulated clock cycles per wall second (bus transfers included):

* **verilator** through the Python backend (ctypes calls into the C++ harness), recording every
  host operation it makes;
* **bare Verilator**: the same Verilog and harness linked into a C++ ``main`` that replays the
  recorded operations with no Python at all — the ceiling the backend is measured against
  (target: the backend reaches at least half of it);
* **icarus** and **amaranth** on a bounded slice of the same work (the image load and the first
  ``--slice-cycles`` cycles of the prefill program), as they are far slower;
* **golden**: the NumPy model's wall time for the same generation, expressed in the cycles the
  RTL needed, for comparison.

Build times are excluded (the builds are cached); each figure names its own workload.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

DESCRIPTION = ("simulation speed: Verilator backend vs a bare C++ main, Icarus, the Amaranth "
               "simulator and the golden model, in cycles per second")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default", help="accelerator preset")
    p.add_argument("--checkpoint", help="weights (default: the shipped tiny GPT)")
    p.add_argument("--prompt-len", type=int, default=16, help="prompt bytes")
    p.add_argument("--tokens", type=int, default=8, help="new tokens")
    p.add_argument("--slice-cycles", type=int, default=20_000,
                   help="cycles of the prefill program run on Icarus and Amaranth")
    p.add_argument("--skip", action="append", default=[],
                   choices=["icarus", "amaranth", "golden", "bare"], help="leave one out")


def write_replay(log: list, script: Path, data: Path) -> None:
    """The host operations a VerilatorBackend recorded, as the harness main's script."""
    chunks, off = [], 0
    with open(script, "w") as fh:
        for op in log:
            if op[0] == "w":
                fh.write(f"w {op[1]} {op[2]}\n")
            elif op[0] == "r":
                fh.write(f"r {op[1]}\n")
            elif op[0] == "m":
                words = np.asarray(op[3], np.uint32)
                fh.write(f"m {op[1]} {op[2]} {words.size} {off}\n")
                chunks.append(words)
                off += words.size
            elif op[0] == "d":
                fh.write(f"d {op[1]} {op[2]} {op[3]}\n")
            elif op[0] == "x":
                fh.write(f"x {op[1]}\n")
    (np.concatenate(chunks) if chunks else np.zeros(1, np.uint32)).astype("<u4").tofile(data)


def _slice(name: str, cfg, c, prompt: list[int], cycles: int) -> dict:
    """Image load and the first ``cycles`` cycles of the prefill program on ``name``."""
    from llmaccel.sim.backends import get_backend  # noqa: PLC0415

    t0 = time.perf_counter()
    be = get_backend(name, cfg)
    setup = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        ticks0 = be.ticks
        be.load_dram(0, c.image)
        be.load_dram(c.r_prompt.addr, np.asarray(prompt, "<i4").tobytes())
        info = c.prefill_programs(len(prompt))[0] if hasattr(c, "prefill_programs") \
            else c.prefill(len(prompt))
        be.load_dram(info.base, info.binary)
        t_load = time.perf_counter() - t0
        ticks_load = be.ticks - ticks0
        t0 = time.perf_counter()
        run = be.run(info.base, max_cycles=cycles)
        t_run = time.perf_counter() - t0
        ticks_run = be.ticks - ticks0 - ticks_load
    finally:
        be.close()
    return {"backend": name, "setup_seconds": setup, "load_seconds": t_load,
            "load_ticks": ticks_load, "run_seconds": t_run, "run_ticks": ticks_run,
            "run_status": f"{run.status} {run.error.name}",
            "cycles_per_second": (ticks_load + ticks_run) / (t_load + t_run),
            "run_cycles_per_second": ticks_run / t_run}


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.sim.backends import get_backend  # noqa: PLC0415
    from llmaccel.sim.backends.golden import GoldenBackend  # noqa: PLC0415
    from llmaccel.sim.backends.rtl import build_verilator  # noqa: PLC0415
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator, load_model  # noqa: PLC0415
    from llmaccel.sw.model.corpus import heldout_split  # noqa: PLC0415

    cfg = preset(args.config)
    _, q = load_model(args.checkpoint)
    prompt = [int(b) for b in heldout_split()[:args.prompt_len]]
    c = CompiledGPT(q, cfg)
    out: dict = {"config": cfg.name, "prompt_tokens": len(prompt), "new_tokens": args.tokens}

    be = get_backend("verilator", cfg)
    be.log = []
    ticks0 = be.ticks
    res = Generator(c, be).generate(prompt, args.tokens)
    ticks = be.ticks - ticks0
    log = be.log
    be.close()
    rtl_cycles = res.prefill_cycles + sum(res.decode_cycles)
    out["verilator"] = {"ticks": ticks, "seconds": res.wall_seconds,
                        "cycles_per_second": ticks / res.wall_seconds,
                        "accelerator_cycles": rtl_cycles}

    if "bare" not in args.skip:
        exe = build_verilator(be.verilog, main=True)
        with tempfile.TemporaryDirectory(prefix="llmaccel-simspeed-") as d:
            script, data = Path(d) / "script.txt", Path(d) / "data.bin"
            write_replay(log, script, data)
            t0 = time.perf_counter()
            p = subprocess.run([str(exe), str(script), str(data)], capture_output=True,
                               text=True, check=True)
            wall = time.perf_counter() - t0
        fields = p.stdout.split()
        bare_ticks, bare_secs = int(fields[1]), float(fields[3])
        out["bare"] = {"ticks": bare_ticks, "seconds": bare_secs, "process_seconds": wall,
                       "cycles_per_second": bare_ticks / bare_secs}
        out["verilator"]["share_of_bare"] = \
            out["verilator"]["cycles_per_second"] / out["bare"]["cycles_per_second"]

    if "golden" not in args.skip:
        t0 = time.perf_counter()
        Generator(c, GoldenBackend(cfg)).generate(prompt, args.tokens)
        secs = time.perf_counter() - t0
        out["golden"] = {"seconds": secs, "accelerator_cycles": rtl_cycles,
                         "cycles_per_second": rtl_cycles / secs}

    for name in ("icarus", "amaranth"):
        if name in args.skip:
            continue
        try:
            out[name] = _slice(name, cfg, c, prompt, args.slice_cycles)
        except Exception as e:   # a missing simulator is reported, not fatal
            out[name] = {"error": str(e)}
    return out


def report(r: dict) -> str:
    v = r["verilator"]
    lines = [f"Simulation speed, config {r['config']}: {r['prompt_tokens']} prompt + "
             f"{r['new_tokens']} new tokens ({v['accelerator_cycles']} accelerator cycles, "
             f"{v['ticks']} clock cycles with host transfers)", ""]
    lines.append(f"  verilator (Python backend) {v['cycles_per_second']:>12,.0f} cycles/s  "
                 f"({v['seconds']:.2f} s)")
    if "bare" in r:
        b = r["bare"]
        lines.append(f"  verilator (bare C++ main)  {b['cycles_per_second']:>12,.0f} cycles/s  "
                     f"({b['seconds']:.2f} s)  → backend at {100 * v['share_of_bare']:.0f} %")
    for name in ("icarus", "amaranth"):
        s = r.get(name)
        if not s:
            continue
        if "error" in s:
            lines.append(f"  {name:26} not measured: {s['error']}")
            continue
        lines.append(f"  {name:26} {s['cycles_per_second']:>12,.0f} cycles/s  (image load "
                     f"{s['load_ticks']} cycles in {s['load_seconds']:.1f} s, then "
                     f"{s['run_ticks']} cycles of prefill in {s['run_seconds']:.1f} s; "
                     f"setup {s['setup_seconds']:.1f} s)")
    if "golden" in r:
        g = r["golden"]
        lines.append(f"  golden model               {g['cycles_per_second']:>12,.0f} "
                     f"accelerator cycles/s  ({g['seconds']:.2f} s for the same generation)")
    return "\n".join(lines)
