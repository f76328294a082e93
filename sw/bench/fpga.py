"""FPGA benchmark: ECP5 place-and-route of a config and decode tokens/s on the board.

``llmaccel bench fpga [--config fpga] [--core-mhz F] [--backend golden|verilator]`` runs
``llmaccel synth --target ecp5`` (whose defaults route the whole ``fpga`` design, docs/fpga.md;
about 40 minutes, the fpga extra must be installed), then
generates a few tokens of the tiny GPT compiled with PIM-only prefill on ``--backend`` to
measure decode cycles per token, and reports tokens/s = Fmax / cycles per token. Without a
routed design the tokens/s are given at the board's 25 MHz clock instead. Every program starts
at the same DRAM refresh phase (``--refresh-phase``, as in ``llmaccel bench e2e``).
"""

from __future__ import annotations

import argparse

from . import add_refresh_phase_argument, refresh_phase

DESCRIPTION = "ECP5 synthesis + place-and-route (resources, Fmax) and decode tokens/s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="fpga", help="preset (default: %(default)s)")
    parser.add_argument("--core-mhz", type=float, default=None,
                        help="PLL core clock nextpnr works towards (default: the board's "
                             "25 MHz clock, no PLL)")
    parser.add_argument("--backend", default="golden", choices=("golden", "verilator"),
                        help="where decode cycles are measured (default: %(default)s: the "
                             "golden cycle model)")
    parser.add_argument("--tokens", type=int, default=8, help="tokens to generate")
    parser.add_argument("--no-synth", action="store_true", help="only the cycle measurement")
    add_refresh_phase_argument(parser)


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.sim.backends import get_backend  # noqa: PLC0415
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator, load_model  # noqa: PLC0415
    from llmaccel.sw.fpga import synthesize  # noqa: PLC0415

    cfg = preset(args.config)
    phase = refresh_phase(args, cfg)
    out: dict = {"config": cfg.name}
    if not args.no_synth:
        r = synthesize(cfg, "ecp5", core_mhz=args.core_mhz)
        out["synth"] = r.as_json()
    _params, q = load_model()
    compiled = CompiledGPT.fitting(q, cfg, prefill_mode="pim")
    backend = get_backend(args.backend, cfg, refresh_phase=phase)
    try:
        res = Generator(compiled, backend).generate(list(b"def "), args.tokens)
    finally:
        backend.close()
    per_tok = res.decode_cycles_per_token
    fmax = out.get("synth", {}).get("fmax_mhz")
    clock = fmax if fmax else 25.0
    out |= {"backend": args.backend, "cycles_source": res.cycles_source,
            "dram_bytes_used": compiled.layout.bytes_used,
            "prefill_cycles": res.prefill_cycles, "decode_cycles_per_token": per_tok,
            "clock_mhz": clock, "clock_is_fmax": bool(fmax), "refresh_phase": phase,
            "tokens_per_s": clock * 1e6 / per_tok if per_tok else 0.0, "text": res.text}
    return out


def report(result: dict) -> str:
    rows = [("config", result["config"])]
    s = result.get("synth")
    if s:
        for k, v in s["resources"].items():
            cap = s["capacity"].get(k)
            rows.append((k, f"{v}" + (f" / {cap}" if cap else "")))
        rows.append(("Fmax", f"{s['fmax_mhz']} MHz" if s["fmax_mhz"] else
                     f"- ({s['pnr_error'][:160]})"))
    rows += [
        ("DRAM image (PIM prefill)", f"{result['dram_bytes_used']} bytes"),
        ("decode cycles/token", f"{result['decode_cycles_per_token']:.0f} "
                                f"({result['backend']}, {result['cycles_source']})"),
        ("runs start", "when the host is ready" if result.get("refresh_phase") is None
         else f"{result['refresh_phase']} cycles after a refresh falls due"),
        ("tokens/s", f"{result['tokens_per_s']:.0f} at {result['clock_mhz']} MHz"
                     + ("" if result["clock_is_fmax"] else " (board clock: not routed)")),
    ]
    return "\n".join(f"{k:26} {v}" for k, v in rows)
