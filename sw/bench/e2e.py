"""``llmaccel bench e2e``: end-to-end generation cycles measured on the RTL.

For each config (``default`` and the 16×16 ``large`` preset unless ``--config`` picks one) the
tiny GPT generates ``--tokens`` tokens after a ``--prompt-len``-byte prompt from the held-out
text on Verilator. Reported: prefill cycles and GEMM utilisation, decode cycles per token, the
golden cycle model's prediction of both, and the decode lower bound of
:func:`llmaccel.sw.bench.model.decode_lower_bound` (in-bank MACs at full internal bandwidth plus
the vector unit's element work).

The peer comparison is tiny-NPU's published 5,453,250 cycles for 5 prompt + 10 generated tokens
of a GPT-2 with d 64, 4 layers and vocab 256 (~0.36 M cycles per token): the same workload
(5 prompt bytes, 10 new tokens) runs on ``large`` and its cycles per token and the ratio are
reported. Tokens are checked against the golden backend; a mismatch fails the benchmark.

Every program (each prefill chunk, each decode step) starts at the same DRAM refresh phase,
``tRFC + 64`` cycles after a refresh falls due (``--refresh-phase``), so the figures do not move
with how many cycles the host's loads before it took; ``--refresh-phase free`` starts each one
as soon as the host is ready, as ``llmaccel generate`` does.
"""

from __future__ import annotations

import argparse
import time

from . import add_refresh_phase_argument, refresh_phase

DESCRIPTION = ("tiny GPT end to end on Verilator: prefill/decode cycles vs the cycle model and "
               "the decode bound; the large preset against tiny-NPU")

#: tiny-NPU's published figure: 5 prompt + 10 generated tokens of a d64/4-layer/vocab-256 GPT-2.
TINY_NPU_CYCLES = 5_453_250
TINY_NPU_TOKENS = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", metavar="NAME",
                   help="preset(s) to measure (default: default and large)")
    p.add_argument("--checkpoint", help="weights (default: the shipped tiny GPT)")
    p.add_argument("--prompt-len", type=int, default=32, help="prompt bytes")
    p.add_argument("--tokens", type=int, default=8, help="new tokens")
    p.add_argument("--backend", default="verilator", help="RTL backend (default: %(default)s)")
    p.add_argument("--no-peer", action="store_true", help="skip the tiny-NPU workload")
    add_refresh_phase_argument(p)


def _isa_only(cfg):
    """The golden ISA simulator without the cycle model (cycles reported as 0)."""
    from llmaccel.sim.backends import BackendRun  # noqa: PLC0415
    from llmaccel.sim.backends.golden import GoldenBackend  # noqa: PLC0415

    class IsaOnly(GoldenBackend):
        def run(self, base, *, max_cycles=None):
            r = self.machine.run(base, max_instructions=self.max_instructions)
            return BackendRun(r.status, 0, r.error, r.error_pc, r.message, {},
                              cycles_source="model")
    return IsaOnly(cfg)


def _measure(cfg, q, prompt: list[int], n: int, backend_name: str,
             phase: int | None = None) -> dict:
    from llmaccel.sim.backends import get_backend  # noqa: PLC0415
    from llmaccel.sim.backends.golden import GoldenBackend  # noqa: PLC0415
    from llmaccel.sw.bench.model import decode_lower_bound  # noqa: PLC0415
    from llmaccel.sw.compiler import CompiledGPT  # noqa: PLC0415
    from llmaccel.sw.driver import Generator  # noqa: PLC0415

    c = CompiledGPT(q, cfg)
    t0 = time.perf_counter()
    be = get_backend(backend_name, cfg, refresh_phase=phase)
    build = time.perf_counter() - t0
    try:
        got = Generator(c, be).generate(prompt, n)
    finally:
        be.close()
    # The model replays the RTL's START cycles: refresh and open rows carry over between runs,
    # so the same START cycles give the same cycle counts (tests/e2e asserts equality).
    starts = [s.start_cycle for s in got.steps]
    try:
        want = Generator(c, GoldenBackend(cfg, start_cycles=starts)).generate(prompt, n)
        model_error = None
    except Exception as e:   # the cycle model; the tokens come from the ISA simulator alone
        model_error = f"{type(e).__name__}: {e}"
        want = Generator(c, _isa_only(cfg)).generate(prompt, n)
    if got.tokens != want.tokens:
        raise AssertionError(f"{cfg.name}: RTL tokens {got.tokens} differ from the golden "
                             f"backend's {want.tokens}")
    bound = decode_lower_bound(cfg, c.decode(len(prompt) + n - 1).binary) if n > 1 else None
    return {
        "config": cfg.name, "array": f"{cfg.array_rows}x{cfg.array_cols}",
        "prompt_tokens": len(prompt), "new_tokens": n, "tokens": got.tokens,
        "prefill_cycles": got.prefill_cycles, "prefill_cycles_model": want.prefill_cycles,
        "prefill_gemm_utilization": got.mac_utilization(cfg),
        "decode_cycles": got.decode_cycles, "decode_cycles_model": want.decode_cycles,
        "decode_cycles_per_token": got.decode_cycles_per_token,
        "decode_cycles_per_token_model": want.decode_cycles_per_token,
        "decode_bound": bound,
        "decode_vs_bound": (got.decode_cycles_per_token / bound["bound"]) if bound else None,
        "total_cycles": got.prefill_cycles + sum(got.decode_cycles),
        "busy_share_prefill": got.busy_share("prefill"),
        "busy_share_decode": got.busy_share("decode"),
        "build_seconds": build, "run_seconds": got.wall_seconds,
        "cycle_model_error": model_error, "refresh_phase": phase,
    }


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.sw.driver import load_model  # noqa: PLC0415
    from llmaccel.sw.model.corpus import heldout_split  # noqa: PLC0415

    names = args.config or ["default", "large"]
    _, q = load_model(args.checkpoint)
    text = heldout_split()
    prompt = [int(b) for b in text[:args.prompt_len]]
    out = {"backend": args.backend, "configs": []}
    for name in names:
        cfg = preset(name)
        out["configs"].append(_measure(cfg, q, prompt, args.tokens, args.backend,
                                       refresh_phase(args, cfg)))
    if not args.no_peer:
        cfg = preset("large")
        peer = _measure(cfg, q, [int(b) for b in text[:5]], 10, args.backend,
                        refresh_phase(args, cfg))
        per_token = peer["total_cycles"] / TINY_NPU_TOKENS
        theirs = TINY_NPU_CYCLES / TINY_NPU_TOKENS
        out["peer"] = {
            "workload": "5 prompt + 10 generated tokens on large (16x16)",
            "our_total_cycles": peer["total_cycles"],
            "our_cycles_per_token": per_token,
            "our_decode_cycles_per_token": peer["decode_cycles_per_token"],
            "tiny_npu_total_cycles": TINY_NPU_CYCLES, "tiny_npu_cycles_per_token": theirs,
            "speedup_total": TINY_NPU_CYCLES / peer["total_cycles"],
            "speedup_per_decoded_token": theirs / peer["decode_cycles_per_token"],
        }
    return out


def report(r: dict) -> str:
    lines = [f"Tiny GPT end to end on {r['backend']} (cycles from the RTL counters)", ""]
    for c in r["configs"]:
        b = c["decode_bound"]
        lines += [
            f"config {c['config']} ({c['array']} array), {c['prompt_tokens']} prompt + "
            f"{c['new_tokens']} new tokens:",
            f"  prefill        {c['prefill_cycles']:>9} cycles (model {c['prefill_cycles_model']})"
            f", GEMM utilisation {100 * c['prefill_gemm_utilization']:.1f} %",
            f"  decode/token   {c['decode_cycles_per_token']:>9.0f} cycles (model "
            f"{c['decode_cycles_per_token_model']:.0f})",
        ]
        if b:
            lines.append(f"  decode bound   {b['bound']:>9} cycles (in-bank MACs "
                         f"{b['pim_cycles']} + vector {b['vector_cycles']}); decode is "
                         f"{c['decode_vs_bound']:.2f}x the bound")
        lines.append("  busy share     prefill " + "  ".join(
            f"{u} {100 * v:.0f}%" for u, v in c["busy_share_prefill"].items() if v)
            + " | decode " + "  ".join(f"{u} {100 * v:.0f}%"
                                       for u, v in c["busy_share_decode"].items() if v))
        phase = c.get("refresh_phase")
        lines.append("  runs start     " + ("when the host is ready" if phase is None else
                                          f"{phase} cycles after a refresh falls due"))
        lines.append(f"  wall           build {c['build_seconds']:.1f} s, run "
                     f"{c['run_seconds']:.1f} s")
        if c["cycle_model_error"]:
            lines.append(f"  (model figures unavailable: {c['cycle_model_error']})")
        lines.append("")
    p = r.get("peer")
    if p:
        lines += [
            f"peer: {p['workload']}",
            f"  ours      {p['our_total_cycles']:>9} cycles, {p['our_cycles_per_token']:.0f} per "
            f"token, {p['our_decode_cycles_per_token']:.0f} per decoded token",
            f"  tiny-NPU  {p['tiny_npu_total_cycles']:>9} cycles, "
            f"{p['tiny_npu_cycles_per_token']:.0f} per token",
            f"  ratio     {p['speedup_total']:.1f}x fewer cycles in total, "
            f"{p['speedup_per_decoded_token']:.1f}x per decoded token",
        ]
    return "\n".join(lines)
