"""``llmaccel bench model``: int8 quality, cycle-model prefill/decode cycles, DRAM traffic.

Quality: float vs int8 bits per byte and top-1 agreement on the held-out split. Cycles: the
golden cycle model on the compiled programs (the RTL benches report measured cycles). The decode
lower bound is the time the in-bank MACs need at full internal bandwidth (every PIM_MAC column
at one per tCCD_L) plus the vector unit's element work at one row per beat, with no latency and
no overlap: what no schedule on this machine can beat.
"""

from __future__ import annotations

import argparse
import time

from llmaccel.hw.config import AccelConfig, preset
from llmaccel.hw.isa import Opcode, Unit
from llmaccel.sim.backends import get_backend
from llmaccel.sw.asm import from_binary

DESCRIPTION = "tiny GPT: float vs int8 quality, cycle-model cycles, DRAM traffic, decode bound"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default", help="accelerator preset")
    p.add_argument("--checkpoint", help="weights (default: the shipped tiny GPT)")
    p.add_argument("--prompt-len", type=int, default=32, help="prompt tokens for the cycle run")
    p.add_argument("--tokens", type=int, default=8, help="decode steps for the cycle run")
    p.add_argument("--heldout-bytes", type=int, default=0,
                   help="limit the quality measurement to this many held-out bytes (0: all)")


def decode_lower_bound(cfg: AccelConfig, binary: bytes) -> dict:
    """In-bank MAC time at full bandwidth + vector element work, for one decode program."""
    mac_cols = vec_beats = 0
    beats = cfg.row_width // cfg.vector_lanes
    for ins in from_binary(binary):
        if ins.opcode is Opcode.PIM_MAC:
            mac_cols += ins.ncols
        elif ins.unit is Unit.VEC:
            vec_beats += (256 // cfg.vector_lanes) if ins.opcode is Opcode.VLUTLD \
                else ins.rows * beats
    pim = mac_cols * cfg.timing.tCCD_L
    return {"pim_cycles": pim, "vector_cycles": vec_beats, "bound": pim + vec_beats,
            "weight_bytes_in_banks": mac_cols * cfg.col_bytes * cfg.dram_banks}


def run(args: argparse.Namespace) -> dict:
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator, load_model  # noqa: PLC0415
    from llmaccel.sw.model.corpus import heldout_split  # noqa: PLC0415
    from llmaccel.sw.model.int8 import compare_quality  # noqa: PLC0415

    cfg = preset(args.config)
    t0 = time.perf_counter()
    params, q = load_model(args.checkpoint)
    data = heldout_split()
    if args.heldout_bytes:
        data = data[:args.heldout_bytes]
    quality = compare_quality(params, q, data)
    c = CompiledGPT(q, cfg)
    gen = Generator(c, get_backend("golden", cfg))
    prompt = list(data[:args.prompt_len])
    res = gen.generate(prompt, args.tokens)
    dec = c.decode(len(prompt) + args.tokens - 1)
    bound = decode_lower_bound(cfg, dec.binary)
    pre = c.prefill(len(prompt))
    return {
        "config": cfg.name,
        "quality": quality,
        "prompt_tokens": len(prompt),
        "prefill_cycles": res.prefill_cycles,
        "prefill_gemm_utilization": res.mac_utilization(cfg),
        "decode_cycles": res.decode_cycles,
        "decode_cycles_per_token": res.decode_cycles_per_token,
        "decode_bound": bound,
        "decode_vs_bound": res.decode_cycles[-1] / bound["bound"] if res.decode_cycles else None,
        "prefill_traffic": {"compulsory": pre.traffic.compulsory,
                            "non_compulsory": pre.traffic.non_compulsory,
                            "peak_sp_bytes": pre.plan.peak_sp,
                            "peak_acc_bytes": 4 * pre.plan.peak_acc},
        "decode_traffic": {"compulsory": dec.traffic.compulsory,
                           "non_compulsory": dec.traffic.non_compulsory},
        "prefill_instructions": pre.n_instructions,
        "decode_instructions": dec.n_instructions,
        "wall_seconds": time.perf_counter() - t0,
    }


def report(r: dict) -> str:
    q = r["quality"]
    b = r["decode_bound"]
    lines = [
        f"Tiny GPT on config {r['config']} (cycles from the golden cycle model)",
        "",
        "quality on the held-out split ({} bytes)".format(q["bytes"]),
        f"  float  {q['float_bpb']:.4f} bits/byte   top-1 {100 * q['float_top1']:.2f} %",
        f"  int8   {q['int8_bpb']:.4f} bits/byte   top-1 {100 * q['int8_top1']:.2f} %",
        f"  int8 vs float: bits/byte {100 * q['bpb_increase']:+.2f} %, top-1 agreement "
        f"{100 * q['top1_agreement']:.2f} %",
        "",
        f"prefill ({r['prompt_tokens']} tokens): {r['prefill_cycles']} cycles, GEMM utilisation "
        f"{100 * r['prefill_gemm_utilization']:.1f} %, {r['prefill_instructions']} instructions",
        f"decode: {r['decode_cycles_per_token']:.0f} cycles/token "
        f"({r['decode_instructions']} instructions)",
        f"decode lower bound: {b['bound']} cycles = in-bank MACs {b['pim_cycles']} + vector "
        f"work {b['vector_cycles']}  → decode is {r['decode_vs_bound']:.2f}× the bound",
        f"DRAM traffic, prefill: {r['prefill_traffic']['compulsory']} B compulsory, "
        f"{r['prefill_traffic']['non_compulsory']} B non-compulsory (peak SP "
        f"{r['prefill_traffic']['peak_sp_bytes']} B, ACC {r['prefill_traffic']['peak_acc_bytes']}"
        " B)",
        f"DRAM traffic, decode: {r['decode_traffic']['compulsory']} B compulsory, "
        f"{r['decode_traffic']['non_compulsory']} B non-compulsory; weights read in the banks: "
        f"{b['weight_bytes_in_banks']} B",
        f"wall time {r['wall_seconds']:.1f} s",
    ]
    return "\n".join(lines)
