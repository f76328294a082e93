"""``llmaccel bench gemm``: the GEMM core's cycles and MAC utilisation, measured on the RTL.

For each array size (8×8 and 16×16 unless ``--config`` picks one preset's size) the benchmark
builds the GEMM test harness (``llmaccel.sim.cocotb.gemm.GemmHarness``) with Verilator and runs
64×64×64 and the tiny GPT's prefill GEMMs (prompt 64, plus QKV at prompt 128) once with fold
overlap and once without, each instruction alone on an idle array with random operands. Every
run is checked against the golden model (results) and the timing model (handshake and done
cycles); a mismatch fails the benchmark.

Reported per shape: the measured cycles (``o_done`` − handshake − ``gemm_latency``, i.e. first
MAC to last MAC as SCALE-Sim counts), the timing model's prediction, the MAC utilisation
``M·N·K / (R·C·cycles)``, and SCALE-Sim's output- and weight-stationary counts. The
Verilator builds are shared with tests/cocotb/test_gemm_core.py (same Verilog, same cache).

Inside the simulator this module is also the cocotb test module (the ``gemm_bench`` test is
defined only when ``LLMACCEL_GEMM_BENCH_OUT`` is set, so importing it elsewhere needs no
cocotb).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["DESCRIPTION", "add_arguments", "fits", "report", "run", "shapes"]

DESCRIPTION = ("GEMM core on the RTL (Verilator): cycles and MAC utilisation with and without "
               "fold overlap, against the timing model and SCALE-Sim")

_OUT_ENV = "LLMACCEL_GEMM_BENCH_OUT"
_SIZE_ENV = "LLMACCEL_GEMM_SIZE"


def shapes() -> list[tuple[str, int, int, int]]:
    """``(name, M, K, N)`` of the benchmark: 64³ and the tiny GPT's prefill GEMMs."""
    from llmaccel.sim.cocotb.gemm import gpt_shapes  # noqa: PLC0415

    out = [("64x64x64", 64, 64, 64)]
    out += [(name if name == "lm_head" else f"{name} P=64", m, k, n)
            for name, m, k, n in gpt_shapes(64)]
    out += [(f"{name} P=128", m, k, n) for name, m, k, n in gpt_shapes(128) if name == "qkv"]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="NAME",
                        help="measure only the array size of this preset (default: 8×8 and "
                             "16×16)")
    parser.add_argument("--seed", type=int, default=1, help="operand seed (default: 1)")


@contextlib.contextmanager
def _stdout_to(path: Path):
    """Redirect file descriptor 1 (the simulator subprocess inherits it) to ``path``."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(path, "w") as f:
        os.dup2(f.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def fits(cfg, m: int, n: int, k: int) -> bool:
    """Whether a GEMM's operands and result fit the harness memories of ``cfg``."""
    R, C = cfg.array_rows, cfg.array_cols
    mb, nb = -(-m // R), -(-n // C)
    return mb * k <= cfg.sp_rows and nb * k <= cfg.sp_rows and mb * n <= cfg.acc_rows


def _sizes(config: str | None) -> list[tuple[int, int]]:
    if config is None:
        return [(8, 8), (16, 16)]
    from llmaccel.hw.config import preset  # noqa: PLC0415

    cfg = preset(config)
    if not cfg.gemm_core:
        from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

        raise LlmaccelError(f"config {config!r} has no GEMM core (gemm_core=False): "
                            f"nothing to benchmark")
    return [(cfg.array_rows, cfg.array_cols)]


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415
    from llmaccel.sim.cocotb.gemm import (  # noqa: PLC0415
        GemmHarness,
        harness_config,
        harness_name,
    )
    from llmaccel.sim.cocotb.runner import run_cocotb  # noqa: PLC0415
    from llmaccel.sim.golden.timing_gemm import gemm_cycles, scalesim_cycles  # noqa: PLC0415
    from llmaccel.sim.tools import BUILD_ROOT  # noqa: PLC0415

    rows = []
    skipped = []
    t0 = time.time()
    for R, C in _sizes(getattr(args, "config", None)):
        cfg = harness_config((R, C))
        log = BUILD_ROOT / "bench" / f"gemm-{R}x{C}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "gemm_bench.json"
            # The simulator writes its log to stdout; keep stdout for the report (--json).
            with _stdout_to(log):
                try:
                    run_cocotb(GemmHarness(cfg), name=harness_name(cfg), test_module=__name__,
                               simulator="verilator", seed=getattr(args, "seed", 1),
                               extra_env={_OUT_ENV: str(out), _SIZE_ENV: f"{R}x{C}"})
                except AssertionError as e:
                    raise LlmaccelError(f"the GEMM benchmark failed on {R}x{C} ({e}); "
                                        f"simulator log: {log}") from None
            measured = json.loads(out.read_text())
        skipped += [f"{name} on {R}x{C}" for name, m, k, n in shapes()
                    if not fits(cfg, m, n, k)]
        for row in measured:
            m, n, k, overlap = row["m"], row["n"], row["k"], row["overlap"]
            model = gemm_cycles(cfg, m, n, k, overlap=overlap)
            row.update({
                "array": f"{R}x{C}",
                "model_cycles": model,
                "match": row["cycles"] == model,
                "utilisation": m * n * k / (R * C * row["cycles"]),
                "scalesim_os": scalesim_cycles("os", R, C, m, n, k),
                "scalesim_ws": scalesim_cycles("ws", R, C, m, n, k),
            })
            row["scalesim_os_utilisation"] = m * n * k / (R * C * row["scalesim_os"])
            row["scalesim_ws_utilisation"] = m * n * k / (R * C * row["scalesim_ws"])
            rows.append(row)
    return {
        "benchmark": "gemm",
        "simulator": "verilator",
        "date": datetime.date.today().isoformat(),
        "wall_seconds": round(time.time() - t0, 1),
        "all_match": all(r["match"] for r in rows),
        "rows": rows,
        "skipped": skipped,
    }


def report(result: dict) -> str:
    head = (f"{'array':6} {'shape (M K N)':31} {'overlap':7} {'RTL cycles':>10} {'model':>8} "
            f"{'util':>6} {'hs→done':>8} {'SCALE-Sim OS':>13} {'util':>6} {'WS':>7} "
            f"{'util':>6}")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        shape = f"{r['name']} ({r['m']} {r['k']} {r['n']})"
        lines.append(
            f"{r['array']:6} {shape:31} {'on' if r['overlap'] else 'off':7} {r['cycles']:>10} "
            f"{r['model_cycles']:>8} {r['utilisation']:>6.1%} {r['port_cycles']:>8} "
            f"{r['scalesim_os']:>13} "
            f"{r['scalesim_os_utilisation']:>6.1%} {r['scalesim_ws']:>7} "
            f"{r['scalesim_ws_utilisation']:>6.1%}")
    lines.append("")
    if result.get("skipped"):
        lines.append(f"skipped (too big for the harness memories): "
                     f"{', '.join(result['skipped'])}")
    lines.append(f"RTL cycles = o_done − handshake − gemm_latency (first MAC to last MAC); "
                 f"model = sim/golden/timing_gemm.gemm_cycles; all match: "
                 f"{result['all_match']}; {result['date']}, {result['wall_seconds']} s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Inside the simulator (cocotb test module)


def _define_cocotb_test():
    import random  # noqa: PLC0415

    import cocotb  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from cocotb.clock import Clock  # noqa: PLC0415
    from cocotb.triggers import ClockCycles, RisingEdge  # noqa: PLC0415

    from llmaccel.sim.cocotb.gemm import (  # noqa: PLC0415
        GemmJob,
        harness_config,
        random_gemm,
        random_state,
        run_job,
    )

    @cocotb.test()
    async def gemm_bench(dut):
        """Every benchmark shape alone on an idle array, overlap on and off; checked against
        the golden and timing models by run_job."""
        R, C = (int(x) for x in os.environ[_SIZE_ENV].split("x"))
        cfg = harness_config((R, C))
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        dut.i_cmd__valid.value = 0
        dut.host_sp_wen.value = 0
        dut.host_acc_wen.value = 0
        dut.host_acc_raddr.value = 0
        dut.i_overlap.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        r = random.Random(cocotb.RANDOM_SEED)
        rng = np.random.default_rng(cocotb.RANDOM_SEED)
        sp, acc = random_state(rng, cfg)
        out = []
        for name, m, k, n in shapes():
            if not fits(cfg, m, n, k):
                cocotb.log.info(f"{name}: does not fit the {R}x{C} harness memories, skipped")
                continue
            for overlap in (True, False):
                ins = random_gemm(r, cfg, m, n, k, pad=0)
                res = await run_job(dut, GemmJob(cfg, sp, acc, [ins], overlap=overlap))
                out.append({"name": name, "m": m, "n": n, "k": k, "overlap": overlap,
                            "cycles": res["cycles"][0],
                            "port_cycles": res["dones"][0] - res["handshakes"][0]})
                cocotb.log.info(f"{name} overlap={overlap}: {res['cycles'][0]} cycles")
        Path(os.environ[_OUT_ENV]).write_text(json.dumps(out))

    return gemm_bench


if os.environ.get(_OUT_ENV):
    gemm_bench = _define_cocotb_test()
