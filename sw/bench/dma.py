"""``llmaccel bench dma``: DMA load and store bandwidth measured on the RTL.

The harness is ``llmaccel.sim.cocotb.dma.DmaSystem`` without memories (timing does not depend
on data): DmaLoad and DmaStore, each on its own port of the behavioural DRAM
(hw/dram_responder.py) that accepts one 32-byte column per ``tBURST`` cycles — the default HBM2
data-bus rate, 16 B/cycle — and answers reads ``--latency`` cycles later (default tCL + tBURST,
a row hit). Each transfer runs alone on an idle engine; its cycles (``i_cmd`` handshake to
``o_done``) are printed next to sim/golden/timing_dma.py's prediction for the same responder,
with the bytes per cycle and the fraction of the 16 B/cycle external bound.

Transfers: long contiguous loads and stores into SP and ACC, and the tiny GPT's typical
transfers — a 64×192 int8 weight tile (QKV of d_model 64) both as 64 rows of 192 bytes and as
one 8-column block (64 rows of W bytes, stride 192), a 1 KiB row, an embedding-row gather, and
a strided 64-row column of 1 byte per row (load and store).

Inside the simulator this module is also the cocotb test module (the ``dma_bench`` test is
defined only when ``LLMACCEL_DMA_BENCH_OUT`` is set, so importing it elsewhere needs no cocotb).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["DESCRIPTION", "add_arguments", "report", "run", "transfers"]

DESCRIPTION = ("DMA load/store bandwidth on the RTL (Verilator) with a behavioural DRAM at the "
               "channel's data-bus rate, against the timing model and the 16 B/cycle bound")

_IN_ENV = "LLMACCEL_DMA_BENCH_IN"
_OUT_ENV = "LLMACCEL_DMA_BENCH_OUT"


def transfers(cfg, long_kib: int = 16) -> list[tuple[str, object]]:
    """``(name, Instruction)`` of every measured transfer for ``cfg``; the long contiguous ones
    move ``long_kib`` KiB (at most the SRAM)."""
    from llmaccel.hw.isa import Opcode, Space  # noqa: PLC0415
    from llmaccel.sw.asm import instr  # noqa: PLC0415

    W = cfg.row_width
    base = 0x8000
    long_sp = min(long_kib * 1024, cfg.sp_bytes)
    long_acc = min(long_kib * 256, cfg.acc_elems)
    load, store, gather = Opcode.DMA_LOAD, Opcode.DMA_STORE, Opcode.DMA_GATHER
    sp, acc = Space.SP, Space.ACC
    return [
        (f"load SP contiguous {long_sp // 1024} KiB",
         instr(load, space=sp, dram_addr=base, sram_addr=0, rows=1, len=long_sp)),
        (f"load ACC contiguous {long_acc * 4 // 1024} KiB",
         instr(load, space=acc, dram_addr=base, sram_addr=0, rows=1, len=long_acc)),
        (f"store SP contiguous {long_sp // 1024} KiB",
         instr(store, space=sp, dram_addr=base, sram_addr=0, rows=1, len=long_sp)),
        (f"store ACC contiguous {long_acc * 4 // 1024} KiB",
         instr(store, space=acc, dram_addr=base, sram_addr=0, rows=1, len=long_acc)),
        ("load SP weight tile 64x192 (64 rows of 192 B)",
         instr(load, space=sp, dram_addr=base, dram_stride=192, sram_addr=0, sram_stride=192,
               rows=64, len=192)),
        (f"load SP tile block 64x{W} (stride 192)",
         instr(load, space=sp, dram_addr=base, dram_stride=192, sram_addr=0, sram_stride=W,
               rows=64, len=W)),
        ("load SP 1 KiB row",
         instr(load, space=sp, dram_addr=base, sram_addr=0, rows=1, len=1024)),
        ("load ACC 1 KiB row",
         instr(load, space=acc, dram_addr=base, sram_addr=0, rows=1, len=256)),
        ("store SP 1 KiB row",
         instr(store, space=sp, dram_addr=base, sram_addr=0, rows=1, len=1024)),
        ("gather SP embedding row 64 B",
         instr(gather, space=sp, dram_addr=base, sram_addr=0, rows=1, len=64, idx_addr=0,
               idx_scale=64)),
        ("load SP column 64x1 B (stride 64)",
         instr(load, space=sp, dram_addr=base, dram_stride=64, sram_addr=0, sram_stride=1,
               rows=64, len=1)),
        ("store SP column 64x1 B (stride 64)",
         instr(store, space=sp, dram_addr=base, dram_stride=64, sram_addr=0, sram_stride=1,
               rows=64, len=1)),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", metavar="NAME",
                        help="accelerator preset (default: %(default)s)")
    parser.add_argument("--latency", type=int, default=None,
                        help="read latency of the behavioural DRAM in cycles (default: "
                             "tCL + tBURST of the config, a row hit)")
    parser.add_argument("--long-kib", type=int, default=16, metavar="N",
                        help="size of the long contiguous transfers in KiB (default: "
                             "%(default)s)")
    parser.add_argument("--simulator", default="verilator",
                        choices=["verilator", "icarus", "amaranth"],
                        help="where to run the RTL (default: %(default)s)")


def _measure_cocotb(cfg, harness, cases, simulator: str) -> list[dict]:
    from llmaccel.sim.cocotb.runner import run_cocotb  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as d:
        spec, out = Path(d) / "in.json", Path(d) / "out.json"
        spec.write_text(json.dumps([
            {"word": ins.encode(), "store": ins.opcode.name == "DMA_STORE"} for _, ins in cases]))
        # The simulator's log goes to stderr, so that stdout carries only the report (or
        # the JSON object of --json).
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            run_cocotb(harness, name=f"dma_bench_{cfg.name}", test_module=__name__,
                       simulator=simulator, extra_env={_IN_ENV: str(spec), _OUT_ENV: str(out)})
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        return json.loads(out.read_text())


def _measure_amaranth(cfg, latency: int, interval: int, cases) -> list[dict]:
    import numpy as np  # noqa: PLC0415

    from llmaccel.sim.cocotb.dma import Images, run_amaranth  # noqa: PLC0415

    empty = Images(np.zeros(0, np.uint8), np.zeros(0, np.int8), np.zeros(0, np.int32))
    rec = run_amaranth(cfg, [ins for _, ins in cases], empty, latency=latency,
                       interval=interval, storage=False)
    return [{"start": s, "end": e} for s, e in zip(rec.starts, rec.ends, strict=True)]


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.hw.isa import Opcode, Space  # noqa: PLC0415
    from llmaccel.sim.cocotb.dma import DmaSystem  # noqa: PLC0415
    from llmaccel.sim.golden.timing_dma import FixedLatencyDram, dma_timing  # noqa: PLC0415

    cfg = preset(getattr(args, "config", None) or "default")
    t = cfg.timing
    latency = getattr(args, "latency", None) or t.tCL + t.tBURST
    interval = t.tBURST
    simulator = getattr(args, "simulator", None) or "verilator"
    bound = cfg.col_bytes / interval
    cases = transfers(cfg, getattr(args, "long_kib", None) or 16)
    t0 = time.time()
    if simulator == "amaranth":
        measured = _measure_amaranth(cfg, latency, interval, cases)
    else:
        harness = DmaSystem(cfg, latency=latency, interval=interval, storage=False)
        measured = _measure_cocotb(cfg, harness, cases, simulator)
    ports = {"load": FixedLatencyDram(latency, interval),
             "store": FixedLatencyDram(latency, interval)}
    rows = []
    for (name, ins), m in zip(cases, measured, strict=True):
        unit = "store" if ins.opcode is Opcode.DMA_STORE else "load"
        # The memory-less harness reads every gather index as 0: the base is dram_addr.
        base = ins.dram_addr if ins.opcode is Opcode.DMA_GATHER else None
        model = dma_timing(cfg, ins, m["start"], ports[unit], gather_base=base)
        size = 4 if ins.space is Space.ACC else 1
        nbytes = ins.rows * ins.len * size
        cycles = m["end"] - m["start"]
        rows.append({
            "name": name, "opcode": ins.opcode.name, "space": ins.space.name,
            "rows": ins.rows, "len": ins.len, "bytes": nbytes, "requests": model.requests,
            "cycles": cycles, "model_cycles": model.cycles, "match": cycles == model.cycles,
            "bytes_per_cycle": nbytes / cycles, "fraction_of_bound": nbytes / cycles / bound,
        })
    return {
        "benchmark": "dma",
        "config": cfg.name,
        "simulator": simulator,
        "dram": {"latency": latency, "interval": interval, "bound_bytes_per_cycle": bound},
        "sram_row_bytes": {"SP": cfg.row_width, "ACC": 4 * cfg.row_width},
        "date": datetime.date.today().isoformat(),
        "wall_seconds": round(time.time() - t0, 1),
        "all_match": all(r["match"] for r in rows),
        "rows": rows,
    }


def report(result: dict) -> str:
    d = result["dram"]
    head = (f"{'transfer':46} {'bytes':>6} {'reqs':>5} {'RTL cycles':>10} {'model':>6} "
            f"{'B/cycle':>8} {'of bound':>8}")
    lines = [f"DMA on the RTL ({result['simulator']}), config {result['config']}: behavioural "
             f"DRAM, read latency {d['latency']}, one column per {d['interval']} cycles "
             f"(bound {d['bound_bytes_per_cycle']:g} B/cycle); SRAM rows of "
             f"{result['sram_row_bytes']['SP']} B (SP) / {result['sram_row_bytes']['ACC']} B "
             f"(ACC) per cycle", "", head, "-" * len(head)]
    for r in result["rows"]:
        lines.append(f"{r['name']:46} {r['bytes']:>6} {r['requests']:>5} {r['cycles']:>10} "
                     f"{r['model_cycles']:>6} {r['bytes_per_cycle']:>8.2f} "
                     f"{r['fraction_of_bound']:>8.1%}")
    lines.append("")
    lines.append(f"cycles = i_cmd handshake to o_done; model = sim/golden/timing_dma.py; "
                 f"all match: {result['all_match']}; {result['date']}, "
                 f"{result['wall_seconds']} s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Inside the simulator (cocotb test module)
def _define_cocotb_test():
    import cocotb  # noqa: PLC0415
    from cocotb.clock import Clock  # noqa: PLC0415
    from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge  # noqa: PLC0415

    @cocotb.test()
    async def dma_bench(dut):
        """Each transfer alone on an idle engine: handshake and o_done cycles from the
        harness's cycle counter. Python waits on o_done, not on every clock."""
        cases = json.loads(Path(os.environ[_IN_ENV]).read_text())
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        for unit in ("i_load", "i_store"):
            getattr(dut, f"{unit}__valid").value = 0
            getattr(dut, f"{unit}__payload").value = 0
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        out = []
        for case in cases:
            unit = "i_store" if case["store"] else "i_load"
            done = dut.o_store_done if case["store"] else dut.o_load_done
            getattr(dut, f"{unit}__payload").value = case["word"]
            getattr(dut, f"{unit}__valid").value = 1
            await ReadOnly()
            assert int(getattr(dut, f"{unit}__ready").value) == 1, "engine not idle"
            start = dut.o_cycle.value.to_unsigned()
            await RisingEdge(dut.clk)
            getattr(dut, f"{unit}__valid").value = 0
            await RisingEdge(done)
            await ReadOnly()
            out.append({"start": start, "end": dut.o_cycle.value.to_unsigned()})
            await RisingEdge(dut.clk)
        Path(os.environ[_OUT_ENV]).write_text(json.dumps(out))

    return dma_bench


if os.environ.get(_OUT_ENV):
    dma_bench = _define_cocotb_test()
