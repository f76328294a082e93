"""PIM GEMV benchmark: the tiny GPT's decode GEMVs measured on the RTL (Verilator).

Each GEMV y = W·x is laid out bank-interleaved and row-hit-first (output o in bank o%B, slot
o//B, its ⌈K/32⌉ columns consecutive; ``sim/cocotb/dram.gemv_layout``) and run as PIM_WRGB, the
PIM_MACs (one per opened row) and PIM_READ on the DramChannel + PimUnit Verilog. Reported per
GEMV: cycles of the MAC phase (first MAC handshake to last MAC ``o_done``) and of the whole
GEMV, internal bandwidth (weight bytes per MAC-phase cycle), its fraction of the peak
B × 32 B / tCCD_L, the row-switch bound n·tCCD_L / (n·tCCD_L + tRCD + tRP) for n columns per
opened row, the ratio to that bound, and the model's prediction (sim/golden/dram_model.py), which
must equal the RTL. Refresh runs as on real DRAM (tRFC / tREFI ≈ 9 % on HBM2 timing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DESCRIPTION = "PIM GEMV internal bandwidth on the RTL (Verilator) vs the row-switch bound"

#: (name, K, N): the tiny GPT's decode GEMVs and a large one.
SHAPES = [
    ("attn.qkv 64x192", 64, 192),
    ("attn.proj 64x64", 64, 64),
    ("mlp.fc 64x256", 64, 256),
    ("mlp.proj 256x64", 256, 64),
    ("lm_head 64x256", 64, 256),
    ("large 1024x1024", 1024, 1024),
]

try:  # The RTL measurement runs inside cocotb; the CLI only needs the functions below.
    import cocotb
except ImportError:  # pragma: no cover
    cocotb = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="accelerator preset (default: "
                        "default, 16 banks with HBM2 timing)")
    parser.add_argument("--shapes", default="all",
                        help="comma-separated GEMV names to run (substring match), or all")


def _cases(cfg, names: str = "all"):
    from llmaccel.sim.cocotb.dram import gemv_layout  # noqa: PLC0415

    rng = np.random.default_rng(2024)
    image = np.zeros(cfg.dram_bytes, dtype=np.uint8)
    out = []
    row, sp_addr, acc_addr = 0, 0, 0
    W, B = cfg.row_width, cfg.dram_banks
    for name, K, N in SHAPES:
        if names != "all" and not any(s.strip() in name for s in names.split(",")):
            continue
        case = gemv_layout(cfg, K, N, rng=rng, row0=row, sp_addr=sp_addr, acc_addr=acc_addr,
                           image=image)
        image = np.frombuffer(case.image, dtype=np.uint8).copy()
        rows = case.mac_count
        out.append((name, case))
        row += rows
        sp_addr += -(-K // W) * W
        acc_addr += -(-(-(-N // B) * B) // W) * W
    if row > cfg.bank_rows:
        raise ValueError(f"the GEMVs need {row} rows per bank, the config has {cfg.bank_rows}")
    sp = np.zeros(sp_addr, dtype=np.int8)
    for _, c in out:
        a = c.program[0].sram_addr
        sp[a:a + c.K] = c.x
    return out, image.tobytes(), sp, row


def _harness_name(cfg) -> str:
    return f"pim_bench_{cfg.name}"


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.sim.cocotb.dram import PimHarness  # noqa: PLC0415
    from llmaccel.sim.cocotb.runner import run_cocotb  # noqa: PLC0415

    cfg = preset(args.config)
    _cases(cfg, args.shapes)              # fail early if it does not fit
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "pim_bench.json"
        # The simulator's log goes to stderr so that stdout carries only the report / JSON.
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            run_cocotb(PimHarness(cfg, n_ports=1), name=_harness_name(cfg),
                       test_module="llmaccel.sw.bench.pim", simulator="verilator",
                       extra_env={"LLMACCEL_BENCH_CONFIG": args.config,
                                  "LLMACCEL_BENCH_SHAPES": args.shapes,
                                  "LLMACCEL_BENCH_OUT": str(out)})
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        result = json.loads(out.read_text())
    result["wall_seconds"] = round(time.time() - t0, 1)
    return result


def report(result: dict) -> str:
    t = result["timing"]
    lines = [
        f"PIM GEMV on {result['config']} ({result['banks']} banks, tCCD_L {t['tCCD_L']}, "
        f"tRCD {t['tRCD']}, tRP {t['tRP']}, tREFI {t['tREFI']}, tRFC {t['tRFC']}); "
        f"peak {result['peak_bytes_per_cycle']:.0f} B/cycle; RTL = Verilator",
        "",
        f"{'GEMV':18} {'MACs':>4} {'n':>3} {'MAC cyc RTL':>11} {'model':>6} {'total RTL':>9} "
        f"{'model':>6} {'B/cyc':>6} {'of peak':>7} {'bound':>6} {'/bound':>7}",
    ]
    for g in result["gemvs"]:
        lines.append(
            f"{g['name']:18} {g['macs']:>4} {g['n']:>3} {g['mac_cycles']:>11} "
            f"{g['mac_cycles_model']:>6} {g['total_cycles']:>9} {g['total_cycles_model']:>6} "
            f"{g['bytes_per_cycle']:>6.1f} {g['fraction_of_peak']:>7.1%} "
            f"{g['row_switch_bound']:>6.1%} {g['ratio_to_bound']:>7.1%}")
    lines.append("")
    lines.append("MAC cyc: first PIM_MAC handshake to last MAC o_done; total: PIM_WRGB handshake "
                 "to PIM_READ o_done. n: columns per opened row per bank.")
    lines.append(f"model == RTL for every figure: {result['model_equals_rtl']}; results equal "
                 f"the golden model: {result['results_equal_golden']}")
    return "\n".join(lines)


if cocotb is not None:

    @cocotb.test()
    async def pim_bench(dut):
        """Runs inside the Verilator simulation launched by :func:`run`."""
        from llmaccel.hw.config import preset  # noqa: PLC0415
        from llmaccel.sim.cocotb.dram import (  # noqa: PLC0415
            CmdMonitor,
            CocotbBench,
            PimDriver,
            golden_pim,
        )
        from llmaccel.sim.golden.dram_model import DramModel  # noqa: PLC0415
        from llmaccel.sim.golden.dram_monitor import check_trace  # noqa: PLC0415

        cfg = preset(os.environ["LLMACCEL_BENCH_CONFIG"])
        t = cfg.timing
        cases, image, sp, rows = _cases(cfg, os.environ.get("LLMACCEL_BENCH_SHAPES", "all"))
        bench = CocotbBench(dut, cfg, 1)
        await bench.start()
        await bench.load_dram(image[:rows * cfg.dram_banks * cfg.row_bytes])
        await bench.load_sp(sp)
        mon = CmdMonitor(bench)
        cocotb.start_soon(mon.run())
        program = [ins for _, c in cases for ins in c.program]
        drv = PimDriver(bench)
        await drv.send(program)
        while len(mon.done) < len(program):
            await bench.tick()
        await bench.tick(4)
        end = bench.cycle
        gm = golden_pim(cfg, image, sp, program)
        ok = True
        for _, c in cases:
            n_out = -(-c.N // cfg.dram_banks) * cfg.dram_banks
            got = await bench.read_acc(c.acc_addr, n_out)
            ok &= bool(np.array_equal(got, gm.acc[c.acc_addr:c.acc_addr + n_out]))
        check_trace(cfg, mon.trace)
        dm = DramModel(cfg, 1)
        for ins, cyc in zip(program, drv.presented, strict=True):
            dm.pim(cyc, ins)
        dm.run(to_cycle=end)
        same = (drv.accepted == [op.accept for op in dm.pim_ops]
                and mon.done == [op.done for op in dm.pim_ops]
                and sorted(mon.trace) == sorted(x for x in dm.trace
                                                if mon.first <= x[0] < end - 1))
        peak = cfg.dram_banks * cfg.col_bytes / t.tCCD_L
        gemvs = []
        i = 0
        for name, c in cases:
            k = len(c.program)
            acc_, done = drv.accepted[i:i + k], mon.done[i:i + k]
            m_acc = [op.accept for op in dm.pim_ops[i:i + k]]
            m_done = [op.done for op in dm.pim_ops[i:i + k]]
            i += k
            mac_cycles = done[-2] - acc_[1]
            n = c.cols_per_row_used
            bound = n * t.tCCD_L / (n * t.tCCD_L + t.tRCD + t.tRP)
            bw = c.weight_bytes / mac_cycles
            gemvs.append({
                "name": name, "K": c.K, "N": c.N, "macs": c.mac_count, "n": n,
                "weight_bytes": c.weight_bytes,
                "mac_cycles": mac_cycles, "mac_cycles_model": m_done[-2] - m_acc[1],
                "total_cycles": done[-1] - acc_[0],
                "total_cycles_model": m_done[-1] - m_acc[0],
                "bytes_per_cycle": bw, "fraction_of_peak": bw / peak,
                "row_switch_bound": bound, "ratio_to_bound": bw / peak / bound,
            })
        result = {
            "config": cfg.name, "banks": cfg.dram_banks,
            "timing": {k: getattr(t, k) for k in ("tCCD_L", "tRCD", "tRP", "tREFI", "tRFC")},
            "peak_bytes_per_cycle": peak, "gemvs": gemvs, "model_equals_rtl": same,
            "results_equal_golden": ok, "refreshes": sum(1 for x in mon.trace
                                                         if x[1] == "REF"),
        }
        Path(os.environ["LLMACCEL_BENCH_OUT"]).write_text(json.dumps(result, indent=1))
        assert same and ok
