"""sim/golden/system_model.py without RTL: speed, the controller's rules as invariants of the
predicted schedule, and CycleModel's delegation. (Exactness against the RTL is tested in
tests/hw/test_accelerator.py and tests/hw/test_controller.py.)"""

from __future__ import annotations

import time

import numpy as np
import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.controller import UNITS
from llmaccel.hw.isa import Opcode, Unit
from llmaccel.hw.regs import COUNTERS
from llmaccel.sim.golden.cycle_model import CycleModel
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sim.golden.system_model import SystemModel
from llmaccel.sw.asm import assemble, to_binary


def _long_program(blocks: int) -> str:
    """DMA in, GEMM, vector work and DMA out per block, double-buffered through waits."""
    lines = []
    for b in range(blocks):
        sp = 8192 * (b % 2)
        acc = 4096 * (b % 2)
        dram = 0x10000 + (b % 16) * 0x2000
        lines += [
            f"dma_load space=sp dram_addr={dram:#x} dram_stride=512 sram_addr={sp} "
            f"sram_stride=512 rows=8 len=512 wait=gemm|vec",
            f"gemm m=64 n=64 k=64 a_addr={sp} a_stride=512 b_addr={sp + 4096} b_stride=512 "
            f"c_addr={acc} c_stride=512 wait=load",
            f"vmul dst=sp:{sp + 16384}:8 src1=acc:{acc}:8 src2=imm imm=3 rows=64 shift=4 "
            f"wait=gemm|store",
            f"dma_store space=sp dram_addr={0x60000 + (b % 8) * 0x1000:#x} dram_stride=512 "
            f"sram_addr={sp + 16384} sram_stride=512 rows=1 len=512 wait=vec",
        ]
    return "\n".join([*lines, "halt"])


def test_a_long_program_is_modelled_fast():
    cfg = preset("default")
    g = GoldenMachine(cfg, check_races=False)
    g.load_dram(0, to_binary(assemble(_long_program(64))))
    res = g.run(0, trace=True)
    assert res.ok, res.message
    t = time.perf_counter()
    rep = SystemModel(cfg).run(res, start_cycle=0)
    wall = time.perf_counter() - t
    print(f"{rep.cycles} cycles, {len(res.trace)} instructions, {wall:.2f} s, "
          f"{rep.cycles / wall:.0f} cycles/s")
    assert rep.cycles > 300_000
    assert wall < 10


@pytest.fixture(scope="module")
def compiled_runs():
    from llmaccel.sw.compiler import CompiledGPT
    from llmaccel.sw.model.corpus import train_split
    from llmaccel.sw.model.gpt import GPTConfig, init_params
    from llmaccel.sw.model.int8 import quantize_model

    cfg = preset("default")
    mcfg = GPTConfig(vocab_size=64, n_ctx=16, d_model=16, n_layer=1, n_head=2)
    q = quantize_model(init_params(mcfg, seed=5, std=0.2), mcfg,
                       bytes(b % 64 for b in train_split()[:4000]))
    c = CompiledGPT(q, cfg)
    prompt = [3, 60, 7, 11, 42]
    image = bytearray(c.image)
    image[c.r_prompt.addr:c.r_prompt.addr + 4 * len(prompt)] = \
        np.asarray(prompt, "<i4").tobytes()
    programs = [*c.prefill_programs(len(prompt)), c.decode(len(prompt))]
    for info in programs:
        image[info.base:info.base + len(info.binary)] = info.binary
    g = GoldenMachine(cfg)
    g.load_dram(0, bytes(image))
    model = SystemModel(cfg)
    out, start = [], 5
    for info in programs:
        res = g.run(info.base, trace=True)
        assert res.ok, res.message
        rep = model.run(res, start_cycle=start, base=info.base, program=bytes(image))
        out.append((cfg, res, rep))
        start = rep.end + 40
    return out


def test_schedule_obeys_the_controller_rules(compiled_runs):
    for cfg, res, rep in compiled_runs:
        evs = rep.events
        assert len(evs) == sum(ins.unit is not None for _pc, ins in res.trace)
        by_unit = {u: [ev for ev in evs if ev.unit is u] for u in UNITS}
        for ev in evs:
            assert rep.start <= ev.dispatch < ev.start <= ev.end <= ev.complete <= rep.end
            for v in UNITS:
                n = ev.targets[v]
                if v in ev.ins.wait and n:
                    # Waits: start after the awaited instruction has completed.
                    assert ev.start > by_unit[v][n - 1].complete
        disp = [ev.dispatch for ev in evs]
        assert disp == sorted(disp) and len(set(disp)) == len(disp), "in order, one a cycle"
        for u, lst in by_unit.items():
            starts = [ev.start for ev in lst]
            assert starts == sorted(starts), u
            for k in range(cfg.queue_depth, len(lst)):
                # Queue depth: dispatched only once the instruction queue_depth earlier left.
                assert lst[k].dispatch > lst[k - cfg.queue_depth].start
        c = rep.counters
        assert c["cycles"] == rep.end + 1 - rep.start
        for u in UNITS:
            n = u.name.lower()
            assert 0 < c[f"busy_{n}"] <= c["cycles"] or not by_unit[u]
            assert c[f"retired_{n}"] == res.stats.per_unit[u.name]
        assert c["retired_ctrl"] == res.stats.per_unit["CTRL"]
        st = res.stats
        assert (c["gemm_macs"], c["pim_macs"], c["dram_read_bytes"], c["dram_write_bytes"]) \
            == (st.gemm_macs, st.pim_macs, st.dram_read_bytes, st.dram_write_bytes)
        assert c["dram_row_hits"] + c["dram_row_misses"] > 0
        print(res.trace[-1][1].opcode, c["cycles"], "cycles")


def test_overlap_shortens_the_run():
    # Independent work on three units overlaps; the same work chained by waits does not.
    cfg = preset("tiny")
    body = ["dma_load space=sp dram_addr=0x2000 sram_addr=0 rows=16 len=64 dram_stride=64 "
            "sram_stride=64{w}",
            "vrecip dst=acc:0:4 src1=acc:256:4 rows=16 imm=99{w2}",
            "gemm m=16 n=16 k=16 a_addr=4096 a_stride=64 b_addr=8192 b_stride=64 "
            "c_addr=1024 c_stride=64{w3}"]
    free = "\n".join([*(x.format(w="", w2="", w3="") for x in body), "halt"])
    chained = "\n".join([*(x.format(w="", w2=" wait=load", w3=" wait=vec") for x in body),
                         "halt"])
    cycles = []
    for text in (free, chained):
        g = GoldenMachine(cfg)
        g.load_dram(0, to_binary(assemble(text)))
        res = g.run(0, trace=True)
        rep = SystemModel(cfg).run(res, start_cycle=0)
        cycles.append(rep.cycles)
        s = {ev.ins.opcode: ev for ev in rep.events}
        if text is chained:
            assert s[Opcode.VRECIP].start > s[Opcode.DMA_LOAD].end
            assert s[Opcode.GEMM].start > s[Opcode.VRECIP].end
            assert rep.counters["stall_vec"] > 0 and rep.counters["stall_gemm"] > 0
        else:
            assert s[Opcode.GEMM].start < s[Opcode.VRECIP].end
            assert rep.counters["stall_vec"] == rep.counters["stall_gemm"] == 0
    assert cycles[0] < cycles[1]


def test_cycle_model_delegates_to_the_system_model():
    cfg = preset("tiny")
    g = GoldenMachine(cfg)
    text = "\n".join(["dma_load space=sp dram_addr=0x2000 sram_addr=0 rows=4 len=16",
                      "vadd dst=sp:64:4 src1=sp:0:4 src2=imm imm=1 rows=16 wait=load",
                      "halt"])
    g.load_dram(0, to_binary(assemble(text)))
    res = g.run(0, trace=True)
    rep = SystemModel(cfg).run(res, start_cycle=7)
    old = CycleModel(cfg).run(res.trace, res.gather_bases, start_cycle=7)
    assert old.cycles == rep.cycles
    assert old.counters == rep.counters and set(old.counters) == set(COUNTERS)
    assert old.busy == {u.name: rep.counters[f"busy_{u.name.lower()}"] for u in UNITS}
    assert [t.start for t in old.timings] == [ev.start for ev in rep.events]
    assert rep.busy["VEC"] > 0 and Unit.VEC in {ev.unit for ev in rep.events}
