"""The FPGA subcommands of ``llmaccel``: ``verilog``, ``synth`` and ``board``.

:func:`add_commands` adds them to the CLI's subparsers; the work is done in
:mod:`llmaccel.sw.fpga` (Verilog, synthesis) and :mod:`llmaccel.sw.board` (the serial host).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable

from llmaccel.hw.config import PRESETS, preset
from llmaccel.hw.errors import LlmaccelError

__all__ = ["add_commands"]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_verilog(args) -> int:
    from llmaccel.sw.fpga import write_verilog  # noqa: PLC0415 (Amaranth is a heavy import)

    cfg = preset(args.config)
    t0 = time.perf_counter()
    files = write_verilog(args.output, cfg, lint=not args.no_lint, units=args.unit or None,
                          progress=_say)
    for f in files:
        print(f"{f.path}  {f.lines:7d} lines  lint {f.lint}")
    print(f"{len(files)} files for config {cfg.name!r} in {time.perf_counter() - t0:.0f} s")
    return 0


def _table(r) -> str:
    rows = [("target", f"{r.target}: {r.device}"), ("config", r.config), ("top", r.top)]
    for k, v in r.resources.items():
        cap = r.capacity.get(k)
        rows.append((k, f"{v}" + (f" / {cap} ({100 * v / cap:.0f} %)" if cap else "")))
    if r.fmax_mhz is not None:
        rows.append(("Fmax (core clock)", f"{r.fmax_mhz:.1f} MHz (constraint "
                                          f"{r.target_mhz:.1f} MHz: "
                                          f"{'PASS' if r.timing_met else 'FAIL'})"))
    if r.floorplan:
        rows.append(("floorplan", r.floorplan.removeprefix("floorplan: ")))
    if r.bitstream:
        rows.append(("bitstream", f"{r.bitstream} ({r.bitstream_bytes} bytes)"
                     + ("; timing FAILED: it may not work on the board"
                        if r.timing_met is False else "")))
    if r.pnr_error:
        rows.append(("note", r.pnr_error))
    if r.abc9_stopped:
        rows.append(("LUT mapping", "classic ABC: ABC9 stopped without a message (YoWASP "
                                    "Yosys 0.70, docs/fpga.md)"))
    elif r.lut_mapper == "abc":
        rows.append(("LUT mapping", "classic ABC (--lut-mapper abc)"))
    mems = {}
    for m in r.memories.values():
        kind = m.get("mapped_to", "?")
        mems[kind] = mems.get(kind, 0) + 1
    rows.append(("memories", ", ".join(f"{n} → {k}" for k, n in sorted(mems.items()))))
    rows.append(("outputs", r.out_dir))
    rows.append(("seconds", ", ".join(f"{k} {v}" for k, v in r.seconds.items())))
    out = [f"{k:20} {v}" for k, v in rows]
    if r.critical_path:
        out.append("critical path (nextpnr):")
        out.extend(f"  {ln}" for ln in r.critical_path[-12:])
    elif r.deep_paths:
        out.append("deepest paths (estimate before placement: cell delays + 1.5 ns per net):")
        out.extend(f"  {p['ns']:5.1f} ns, {p['cells']:3d} cells: {p['start']} → {p['end']} "
                   f"(through {' → '.join(p['through'])})" for p in r.deep_paths)
    return "\n".join(out)


def _check_pll(mhz: float) -> None:
    """``--core-mhz`` must be a frequency the ECP5 PLL makes exactly from the ULX3S's 25 MHz;
    checked before anything is built (hw/board_top.py's error names the nearest it makes)."""
    from llmaccel.hw.board_top import ecp5_pll_params  # noqa: PLC0415
    from llmaccel.sw.fpga import BOARDS, board_clock_hz  # noqa: PLC0415

    clk = board_clock_hz(BOARDS["ecp5"])
    if mhz <= 0:
        raise LlmaccelError(f"--core-mhz must be positive, not {mhz:g}")
    if round(mhz * 1e6) != clk:
        try:
            ecp5_pll_params(clk, round(mhz * 1e6))
        except ValueError as e:
            raise LlmaccelError(f"--core-mhz {mhz:g}: {e}") from None


def cmd_synth(args) -> int:
    from llmaccel.sw.fpga import place_route_unit, synthesize  # noqa: PLC0415

    cfg = preset(args.config)
    cmd = "llmaccel " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    progress = None if args.json else _say
    if args.unit and args.target != "ecp5":
        raise LlmaccelError(f"--unit places and routes one unit with nextpnr-ecp5, so it needs "
                            f"--target ecp5, not {args.target}")
    if args.unit and args.no_pnr:
        raise LlmaccelError("--unit always places and routes; leave out --no-pnr")
    for opt, value in (("placer", args.placer), ("router", args.router)):
        if value and (args.target != "ecp5" or args.no_pnr):
            raise LlmaccelError(f"--{opt} chooses nextpnr-ecp5's {opt}; it needs --target "
                                f"ecp5 without --no-pnr")
    for flag, on in (("--no-timing-driven", args.no_timing_driven),
                     ("--timing-driven", args.timing_driven)):
        if on and (args.target != "ecp5" or args.no_pnr):
            raise LlmaccelError(f"{flag} changes nextpnr-ecp5's placement; it needs "
                                f"--target ecp5 without --no-pnr")
    if args.timing_driven and args.no_timing_driven:
        raise LlmaccelError("--timing-driven and --no-timing-driven contradict each other")
    router: tuple[str, ...] = ("--router", args.router) if args.router else ()
    if args.no_floorplan and (args.target != "ecp5" or args.no_pnr or args.unit):
        raise LlmaccelError("--no-floorplan leaves the whole design's block RAMs to nextpnr's "
                            "placer; it needs --target ecp5 without --no-pnr or --unit")
    if args.no_bitstream and (args.target != "ecp5" or args.no_pnr or args.unit):
        raise LlmaccelError("--no-bitstream skips packing the routed whole design; it needs "
                            "--target ecp5 without --no-pnr or --unit")
    if args.lut_mapper != "auto" and args.target != "ecp5":
        raise LlmaccelError(f"--lut-mapper chooses how Yosys maps LUTs for the ECP5; it "
                            f"needs --target ecp5, not {args.target}")
    if args.core_mhz is not None and not args.unit and args.target == "ecp5":
        _check_pll(args.core_mhz)
    if args.unit:
        # A unit keeps nextpnr's own placement defaults (timing-driven HeAP).
        pnr_args = ((("--placer", args.placer) if args.placer else ()) + router
                    + (("--no-tmdriv",) if args.no_timing_driven else ()))
        r = place_route_unit(cfg, args.unit, args.output, mhz=args.core_mhz or 100.0,
                             seed=args.seed, command=cmd, soft_wide_mul=not args.dsp_all,
                             pnr_args=pnr_args, lut_mapper=args.lut_mapper,
                             progress=progress)
    else:
        r = synthesize(cfg, args.target, out_dir=args.output, pnr=not args.no_pnr,
                       core_mhz=args.core_mhz, seed=args.seed, command=cmd,
                       soft_wide_mul=not args.dsp_all,
                       **({"placer": args.placer} if args.placer else {}),
                       timing_driven=args.timing_driven, pnr_args=router,
                       floorplan=not args.no_floorplan, lut_mapper=args.lut_mapper,
                       bitstream=not args.no_bitstream, progress=progress)
    if args.json:
        print(json.dumps(r.as_json(), indent=2, default=str))
    else:
        print(_table(r))
    return 0 if (r.placed or args.no_pnr or args.target != "ecp5") and r.fits else 1


def cmd_board(args) -> int:
    from llmaccel.sw.board import BoardBackend, SerialTransport  # noqa: PLC0415
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator, load_model  # noqa: PLC0415

    cfg = preset(args.config)
    backend = BoardBackend(cfg, SerialTransport(args.port, args.baud, timeout=args.timeout),
                           clock_hz=args.clock_mhz * 1e6)
    try:
        _params, qm = load_model(args.checkpoint)
        compiled = CompiledGPT.fitting(qm, cfg, prefill_mode=args.prefill)
        _say(f"loading the {len(compiled.image)}-byte DRAM image over {args.port} at "
             f"{args.baud} baud")
        res = Generator(compiled, backend).generate(
            list(args.prompt.encode("utf-8")), args.tokens,
            progress=lambda n: _say(f"  token {n}/{args.tokens}"))
    finally:
        backend.close()
    if args.json:
        print(json.dumps(res.as_json(cfg) | {"clock_mhz": args.clock_mhz}))
        return 0
    print(args.prompt + res.text)
    per_tok = res.decode_cycles_per_token
    print(f"\ndecode {per_tok:.0f} cycles/token = "
          f"{args.clock_mhz * 1e6 / per_tok if per_tok else 0:.0f} tokens/s at "
          f"{args.clock_mhz} MHz; prefill {res.prefill_cycles} cycles; host I/O "
          f"{backend.host_seconds:.1f} s")
    return 0


def _fpga_config_arg(p: argparse.ArgumentParser) -> None:
    default = "fpga" if "fpga" in PRESETS else "tiny"
    p.add_argument("--config", default=default, metavar="NAME",
                   help=f"accelerator preset: {', '.join(PRESETS)} (default: %(default)s)")


def add_commands(sub, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``verilog``, ``synth`` and ``board`` to the CLI's subparsers (``config_arg`` adds
    the CLI's usual ``--config`` option; synth and board default to the ``fpga`` preset)."""
    s = sub.add_parser("verilog", help="write the generated Verilog (top, board top, units)",
                       description="Write the accelerator's top level, the FPGA board top and "
                                   "one Verilog file per unit, each linted with "
                                   "`verilator --lint-only -Wall` (docs/verilog.md).")
    s.add_argument("-o", "--output", default="build/verilog", metavar="DIR",
                   help="output directory (default: %(default)s)")
    config_arg(s)
    s.add_argument("--unit", action="append", metavar="NAME",
                   help="only this file (repeatable): top, board, controller, dma_load, "
                        "dma_store, gemm_core, pim_unit, vector_unit, sram_sp, sram_acc, "
                        "dram_channel, wishbone, uart_bridge")
    s.add_argument("--no-lint", action="store_true", help="skip the Verilator lint")
    s.set_defaults(func=cmd_verilog)

    s = sub.add_parser("synth", help="synthesise for an FPGA and report resources and Fmax",
                       description="Synthesise the board top (accelerator + UART bridge) with "
                                   "YoWASP Yosys: --target ecp5 is the ULX3S (LFE5U-85F) with "
                                   "nextpnr-ecp5 place-and-route and constraints/ulx3s.lpf; "
                                   "--target xilinx is the Arty A7-100T, resources only. "
                                   "A routed ECP5 design is packed into board_top.bit. "
                                   "With --unit NAME (ECP5 only) one unit is synthesised and "
                                   "placed and routed on its own, out of context, every port "
                                   "registered, for its routed Fmax and critical path. "
                                   "Needs the fpga extra: pip install -e .[fpga] (make synth).")
    s.add_argument("--target", choices=("ecp5", "xilinx"), default="ecp5")
    _fpga_config_arg(s)
    s.add_argument("-o", "--output", metavar="DIR",
                   help="keep the outputs here (default: a new folder under build/synth)")
    s.add_argument("--core-mhz", type=float, metavar="MHZ",
                   help="ECP5: run the core from a PLL at this frequency (nextpnr then works "
                        "towards it); default: the board's 25 MHz clock. With --unit: the "
                        "unit's clock constraint (default 100)")
    s.add_argument("--unit", metavar="NAME",
                   help="ECP5: place and route only this unit, out of context: controller, "
                        "dma_load, dma_store, gemm_core, pim_unit, vector_unit, sram_sp, "
                        "sram_acc, dram_channel, wishbone, uart_bridge")
    s.add_argument("--no-pnr", action="store_true", help="ECP5: synthesis only (not with --unit)")
    s.add_argument("--dsp-all", action="store_true",
                   help="map every multiplier to DSP blocks (default: the DSP policy of "
                        "docs/fpga.md: the int8 products of the array and the PIM engines, "
                        "the controller's address products, VMUL and the load engine's "
                        "gather products on DSP blocks, every other product in LUT logic)")
    s.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    s.add_argument("--placer", choices=("heap", "static"),
                   help="ECP5: nextpnr's placer (default for the whole design: static, the "
                        "electrostatic placer, which leaves the fpga design much less "
                        "congested than HeAP; with --unit: nextpnr's, heap; docs/fpga.md)")
    s.add_argument("--router", choices=("router1", "router2"),
                   help="ECP5: nextpnr's router (default: nextpnr's, router1, which routes "
                        "the whole fpga design; router2 stalls on it, docs/fpga.md)")
    s.add_argument("--no-timing-driven", action="store_true",
                   help="ECP5 with --unit: place for wirelength alone (nextpnr --no-tmdriv; "
                        "the whole design's default)")
    s.add_argument("--timing-driven", action="store_true",
                   help="ECP5, whole design: timing-driven placement (nextpnr's default), "
                        "which packs the critical paths tight: the best clock (39.10 MHz "
                        "against 32.98 on one netlist) but router1 takes about three times "
                        "as long on the fpga design, 1.5 h (docs/fpga.md)")
    s.add_argument("--no-floorplan", action="store_true",
                   help="ECP5: leave every block RAM to nextpnr's placer (default: each DRAM "
                        "bank's block RAMs and its PIM engine's slot memory are pinned to one "
                        "block-RAM row, sw/floorplan.py, docs/fpga.md)")
    s.add_argument("--no-bitstream", action="store_true",
                   help="ECP5: stop after routing (default: pack nextpnr's board_top.config "
                        "into board_top.bit with ecppack --compress, from the same YoWASP "
                        "package, ready for openFPGALoader -b ulx3s or fujprog)")
    s.add_argument("--lut-mapper", choices=("auto", "abc9", "abc"), default="auto",
                   help="ECP5: how Yosys maps logic to LUTs. auto (default): ABC9, and "
                        "classic ABC when YoWASP Yosys 0.70 stops inside ABC9, as it does on "
                        "some netlists; abc9: ABC9 only (a stop is an error); abc: classic "
                        "ABC only, for comparing RTL changes with one mapper (docs/fpga.md)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("board", help="generate text on an FPGA board over its serial port",
                       description="Load the compiled model into a board running the "
                                   "`llmaccel synth` bitstream over the UART bridge "
                                   "(docs/fpga.md), then run prefill and decode there and "
                                   "read the tokens back.")
    s.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
    s.add_argument("--baud", type=int, default=1_000_000, help="(default: %(default)s)")
    s.add_argument("--prompt", default="def ", help="prompt text")
    s.add_argument("--tokens", type=int, default=32, help="new tokens to generate")
    s.add_argument("--clock-mhz", type=float, default=25.0,
                   help="the core clock of the bitstream (for tokens/s and time limits)")
    s.add_argument("--prefill", choices=("pim", "systolic"), default=None,
                   help="prefill mode the model is compiled for (default: systolic if its "
                        "image fits the config's DRAM, else pim, else pim with the compact "
                        "image of docs/compiler.md)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    s.add_argument("--checkpoint", help="model weights (default: the shipped tiny GPT)")
    _fpga_config_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_board)

