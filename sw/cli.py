"""``llmaccel`` command line.

Every subcommand has ``--help``. Errors a user can cause are printed as one line
(``llmaccel: error: …``) without a traceback, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from llmaccel.hw.config import PRESETS, preset
from llmaccel.hw.errors import LlmaccelError

__all__ = ["main"]


#: The simulation backends (llmaccel.sim.backends.BACKENDS, spelled out so that `--help` does not
#: import Amaranth; tests/e2e/test_generate.py checks the two agree).
BACKENDS = ("golden", "amaranth", "verilator", "icarus")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default", metavar="NAME",
                   help=f"accelerator preset: {', '.join(PRESETS)} (default: %(default)s)")


def _int(text: str) -> int:
    return int(text, 0)


# -------------------------------------------------------------------------------------------
def cmd_asm(args) -> int:
    from llmaccel.sw.asm import assemble, to_binary

    prog = assemble(Path(args.source).read_text())
    out = Path(args.output) if args.output else Path(args.source).with_suffix(".bin")
    out.write_bytes(to_binary(prog))
    print(f"{len(prog)} instructions, {out.stat().st_size} bytes → {out}")
    return 0


def cmd_disasm(args) -> int:
    from llmaccel.sw.asm import disassemble

    blob = Path(args.binary).read_bytes()
    sys.stdout.write(disassemble(blob, base=args.base if args.addresses else None))
    return 0


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def cmd_run_program(args) -> int:
    from llmaccel.sw.asm import read_program, to_binary

    cfg = preset(args.config)
    prog = read_program(args.program)
    binary = to_binary(prog)
    image = Path(args.dram).read_bytes() if args.dram else None
    if args.backend == "golden":
        summary, state, ok = _run_program_golden(cfg, args, binary, image)
    else:
        summary, state, ok = _run_program_rtl(cfg, args, binary, image)
    if state is not None:
        summary["digests"] = {k: _digest(v) for k, v in state.items()}
        if args.dump:
            np.savez(args.dump, **state)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if ok else 1
    print(f"status        {summary['status']}" + (
        f" ({summary['error']} at pc {summary['error_pc']:#x}: {summary['message']})"
        if not ok else ""))
    print(f"instructions  {summary['instructions']}  "
          + "  ".join(f"{k}={v}" for k, v in summary["per_unit"].items() if v))
    print(f"MACs          GEMM {summary['gemm_macs']}  PIM {summary['pim_macs']}")
    print(f"DRAM bytes    read {summary['dram_read_bytes']}  "
          f"written {summary['dram_write_bytes']}")
    if "cycles" in summary:
        print(f"cycles (RTL)  {summary['cycles']}  busy: "
              + "  ".join(f"{k}={v}" for k, v in summary["busy_cycles"].items() if v))
    else:
        print(f"cycles (est.) {summary['cycles_estimate']}  busy: "
              + "  ".join(f"{k}={v}" for k, v in summary["busy_cycles"].items() if v))
    if "digests" in summary:
        print("state digests " + "  ".join(f"{k}={v}" for k, v in summary["digests"].items()))
    return 0 if ok else 1


def _run_program_golden(cfg, args, binary: bytes, image: bytes | None):
    from llmaccel.sim.golden.cycle_model import CycleModel
    from llmaccel.sim.golden.isa_sim import GoldenMachine

    if args.trace:
        raise LlmaccelError("--trace needs an RTL backend (verilator, icarus or amaranth)")
    m = GoldenMachine(cfg, check_races=not args.no_race_check)
    if image:
        m.load_dram(0, image)
    m.load_dram(args.base, binary)
    res = m.run(args.base, max_instructions=args.max_instructions, trace=True)
    # The cycle model times complete runs; a run that stopped early is timed up to its end.
    trace = res.trace if res.ok else res.trace[:-1]
    cyc = CycleModel(cfg).run(trace, res.gather_bases)
    summary = {
        "backend": "golden", "status": res.status, "error": res.error.name,
        "error_pc": res.error_pc, "message": res.message,
        "instructions": res.stats.instructions, "per_unit": res.stats.per_unit,
        "gemm_macs": res.stats.gemm_macs, "pim_macs": res.stats.pim_macs,
        "dram_read_bytes": res.stats.dram_read_bytes,
        "dram_write_bytes": res.stats.dram_write_bytes,
        "cycles_estimate": cyc.cycles, "busy_cycles": cyc.busy, "dram_commands": cyc.dram,
    }
    return summary, m.state(), res.ok


def _run_program_rtl(cfg, args, binary: bytes, image: bytes | None):
    from llmaccel.sim.backends import get_backend

    kw = {"trace": args.trace} if args.trace else {}
    backend = get_backend(args.backend, cfg, **kw)
    try:
        if image:
            backend.load_dram(0, image)
        backend.load_dram(args.base, binary)
        run = backend.run(args.base, max_cycles=args.max_cycles)
        state = backend.state() if (args.dump or args.digests) else None
    finally:
        backend.close()
    c = run.counters
    summary = {
        "backend": args.backend, "status": run.status, "error": run.error.name,
        "error_pc": run.error_pc, "message": run.message,
        "instructions": c["instructions"], "per_unit": c["per_unit"],
        "gemm_macs": c["gemm_macs"], "pim_macs": c["pim_macs"],
        "dram_read_bytes": c["dram_read_bytes"], "dram_write_bytes": c["dram_write_bytes"],
        "cycles": run.cycles, "busy_cycles": c["busy"], "stall_cycles": c["stall"],
        "dram_commands": c["dram_commands"],
    }
    return summary, state, run.ok


def _progress(total: int, enabled: bool):
    """A progress bar (on stderr) that appears only when a run lasts more than two seconds."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="tok", delay=2.0, disable=not enabled, file=sys.stderr,
               leave=False)
    return bar


def cmd_generate(args) -> int:
    from llmaccel.sim.backends import get_backend
    from llmaccel.sw.compiler import CompiledGPT
    from llmaccel.sw.driver import Generator, load_model

    cfg = preset(args.config)
    prompt = args.prompt.encode("utf-8")
    if args.trace and args.backend == "golden":
        raise LlmaccelError("--trace needs an RTL backend (verilator, icarus or amaranth)")
    _params, qm = load_model(args.checkpoint)
    compiled = CompiledGPT.fitting(qm, cfg)
    backend = get_backend(args.backend, cfg, **({"trace": args.trace} if args.trace else {}))
    try:
        gen = Generator(compiled, backend)
        bar = _progress(args.tokens, not args.json)
        res = gen.generate(list(prompt), args.tokens, progress=lambda n: bar.update(1))
        bar.close()
    finally:
        backend.close()
    if args.json:
        print(json.dumps(res.as_json(cfg)))
        return 0
    print(args.prompt + res.text)
    print()
    src = "golden cycle model" if res.cycles_source == "model" else "RTL counters"
    dec = res.decode_cycles
    rows = [
        ("backend", f"{res.backend} (config {cfg.name}, cycles from the {src})"),
        ("prompt / new tokens", f"{len(res.prompt_tokens)} / {len(res.tokens)}"),
        ("prefill cycles", f"{res.prefill_cycles}"),
        ("decode cycles/token", f"{res.decode_cycles_per_token:.0f}"
         + (f" (min {min(dec)}, max {max(dec)})" if dec else "")),
        ("prefill GEMM utilisation", f"{100 * res.mac_utilization(cfg):.1f} %"),
        ("GEMM MACs", f"{res._sum('gemm_macs')}"),
        ("PIM MACs", f"{res._sum('pim_macs')}"),
        ("DRAM bytes (DMA)", f"{res.dram_bytes}  (compulsory {res.compulsory_dram_bytes})"),
        ("busy share, prefill", "  ".join(f"{u} {100 * v:.0f}%"
                                           for u, v in res.busy_share('prefill').items() if v)),
        ("busy share, decode", "  ".join(f"{u} {100 * v:.0f}%"
                                          for u, v in res.busy_share('decode').items() if v)),
        ("wall time", f"{res.wall_seconds:.2f} s"),
    ]
    for k, v in rows:
        print(f"{k:26} {v}")
    return 0


def cmd_profile(args) -> int:
    from llmaccel.sw.driver import load_model
    from llmaccel.sw.profile import chrome_trace, profile_generation, report

    cfg = preset(args.config)
    _params, qm = load_model(args.checkpoint)
    prof = profile_generation(cfg, qm, list(args.prompt.encode("utf-8")), args.tokens,
                              step=args.step, index=args.index)
    if args.chrome_trace:
        chrome_trace(prof, args.chrome_trace)
    if args.json:
        print(json.dumps(prof.as_json()))
    else:
        print(report(prof, top=args.top))
        if args.chrome_trace:
            print(f"\nChrome trace written to {args.chrome_trace} (open it in "
                  f"https://ui.perfetto.dev; one microsecond = one cycle)")
    return 0


def cmd_demo(args) -> int:
    from llmaccel.sw.demo import run_demo

    r = run_demo(preset(args.config))
    m, k, n = r["shape"]
    print(f"Demo program ({m}×{k} · {k}×{n} GEMM, requantise, argmax) on the golden model:\n")
    print(r["program"])
    print(f"status {r['status']}  MACs {r['macs']}  cycle estimate {r['cycles']}")
    print(f"requantised product equals NumPy: {r['y_matches']}")
    print(f"argmax per row {r['argmax']} equals NumPy: {r['argmax_matches']}")
    return 0 if r["y_matches"] and r["argmax_matches"] and r["status"] == "done" else 1


def cmd_bench(args) -> int:
    from llmaccel.sw import bench

    mod = bench.load(args.name)
    result = mod.run(args)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(mod.report(result))
    return 0


def cmd_config(args) -> int:
    cfg = preset(args.config)
    d = cfg.summary()
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    else:
        for k, v in d.items():
            print(f"{k:18} {v}")
    return 0


def cmd_isadoc(args) -> int:
    from llmaccel.sw import isadoc

    text = isadoc.render()
    if args.write:
        isadoc.DOC_PATH.write_text(text)
        print(f"wrote {isadoc.DOC_PATH}")
        return 0
    if args.check:
        ok = isadoc.DOC_PATH.exists() and isadoc.DOC_PATH.read_text() == text
        print("docs/isa.md is up to date" if ok else
              "docs/isa.md differs from hw/isa.py; run: llmaccel isadoc --write")
        return 0 if ok else 1
    sys.stdout.write(text)
    return 0


# -------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmaccel",
        description="Cycle-accurate RTL model of a GPT accelerator: systolic GEMM, PIM GEMV in "
                    "DRAM banks, vector unit; bit-exact NumPy golden model.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("asm", help="assemble a text program to binary",
                       description="Assemble a .s text program (syntax: docs/isa.md and "
                                   "sw/asm.py) into 32-byte little-endian instruction words.")
    s.add_argument("source", help="assembly text file")
    s.add_argument("-o", "--output", help="binary output (default: SOURCE with .bin)")
    s.set_defaults(func=cmd_asm)

    s = sub.add_parser("disasm", help="disassemble a binary program",
                       description="Print a binary program as assembly text.")
    s.add_argument("binary", help="binary program file")
    s.add_argument("--addresses", action="store_true", help="prefix each line with its address")
    s.add_argument("--base", type=_int, default=0, help="address of the first instruction")
    s.set_defaults(func=cmd_disasm)

    s = sub.add_parser("run-program", help="run a program and print the final state",
                       description="Load a program (.s text or binary) into DRAM at --base, "
                                   "run it to HALT and print status, counters, the cycle "
                                   "estimate and digests of every memory. Exit status 1 when "
                                   "the machine stops with an error.")
    s.add_argument("program", help="program file (.s/.asm text, anything else binary)")
    _config_arg(s)
    s.add_argument("--backend", default="golden", choices=list(BACKENDS),
                   help="simulation backend (default: %(default)s)")
    s.add_argument("--base", type=_int, default=0, help="DRAM address of the program")
    s.add_argument("--dram", metavar="IMAGE", help="raw DRAM image loaded at address 0 first")
    s.add_argument("--max-instructions", type=int, default=1_000_000,
                   help="golden watchdog: stop with WATCHDOG after this many instructions")
    s.add_argument("--max-cycles", type=int, default=50_000_000,
                   help="RTL watchdog: stop with WATCHDOG after this many cycles")
    s.add_argument("--no-race-check", action="store_true",
                   help="do not check that wait masks order every cross-unit dependency")
    s.add_argument("--digests", action="store_true",
                   help="print digests of every memory (always on for golden; RTL backends "
                        "read every memory through the bus for them)")
    s.add_argument("--dump", metavar="FILE.npz", help="save every memory to an .npz file")
    s.add_argument("--trace", metavar="FILE", help="write a waveform (.fst or .vcd; RTL backends)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_run_program)

    s = sub.add_parser("generate", help="generate text with the tiny GPT on a backend",
                       description="Quantise the model, compile it for the accelerator and "
                                   "generate text: prefill on the systolic array, decode in the "
                                   "DRAM banks (PIM). Prints the text and a stats table, or one "
                                   "JSON object with --json.")
    s.add_argument("--prompt", default="def ", help="prompt text (UTF-8 bytes are the tokens)")
    s.add_argument("--tokens", type=int, default=32, help="new tokens to generate")
    s.add_argument("--backend", default="verilator", choices=list(BACKENDS),
                   help="simulation backend (default: %(default)s; golden is the NumPy model "
                        "with cycles from the cycle model)")
    s.add_argument("--trace", metavar="FILE",
                   help="write a waveform of the whole run (.fst or .vcd; RTL backends; slow)")
    s.add_argument("--checkpoint", help="model weights (.npz/.safetensors; default: the "
                                        "shipped tiny GPT)")
    _config_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("profile", help="where the cycles of one program of a generation go",
                       description="Generate on the golden backend and break one program's "
                                   "cycles down by compiler op (h.0.attention, h.0.mlp, …) and "
                                   "unit, with the DRAM commands. The golden system model's "
                                   "cycles equal the RTL's (tests/e2e), so this is the RTL's "
                                   "timeline; --chrome-trace writes it for Perfetto.")
    s.add_argument("--prompt", default="def ", help="prompt text (UTF-8 bytes are the tokens)")
    s.add_argument("--tokens", type=int, default=8, help="new tokens to generate")
    s.add_argument("--step", choices=("decode", "prefill"), default="decode",
                   help="which kind of program to profile (default: %(default)s)")
    s.add_argument("--index", type=int, default=-1,
                   help="which program of that kind, in run order (default: the last)")
    s.add_argument("--top", type=int, metavar="N", help="list only the N longest ops")
    s.add_argument("--chrome-trace", metavar="FILE",
                   help="write the timeline as Chrome trace-event JSON (units, ops, DRAM banks)")
    s.add_argument("--checkpoint", help="model weights (default: the shipped tiny GPT)")
    _config_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("demo", help="run a small GEMM/requantise/argmax program (golden)",
                       description="Build, run and check a small program on the golden model.")
    _config_arg(s)
    s.set_defaults(func=cmd_demo)

    from llmaccel.sw import bench

    s = sub.add_parser("bench", help="run a benchmark and print its figures",
                       description="Run a benchmark; figures are recorded in "
                                   "docs/performance.md. `llmaccel bench NAME --help` shows a "
                                   "benchmark's options.")
    bsub = s.add_subparsers(dest="name", metavar="NAME", required=True)
    for name in bench.available():
        mod = bench.load(name)
        b = bsub.add_parser(name, help=mod.DESCRIPTION, description=mod.DESCRIPTION)
        b.add_argument("--json", action="store_true", help="print one JSON object")
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(b)
        else:
            _config_arg(b)
        b.set_defaults(func=cmd_bench)

    from llmaccel.sw.fpga_cli import add_commands as add_fpga_commands

    add_fpga_commands(sub, _config_arg)

    s = sub.add_parser("config", help="show a preset's parameters",
                       description="Print every parameter of an accelerator preset.")
    _config_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("isadoc", help="render docs/isa.md from hw/isa.py",
                       description="Print, write (--write) or check (--check) the generated ISA "
                                   "reference.")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="write docs/isa.md")
    g.add_argument("--check", action="store_true", help="exit 1 if docs/isa.md is stale")
    s.set_defaults(func=cmd_isadoc)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LlmaccelError as e:
        print(f"llmaccel: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"llmaccel: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmaccel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
