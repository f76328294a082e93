"""cocotb bench of the DRAM channel's Verilog (inside PimHarness): random traffic of two ports.

Driver (ReqDriver), monitors (RspMonitor, CmdMonitor), model (ByteModel for data, DramModel for
cycles) and scoreboard (the asserts below) come from ``llmaccel.sim.cocotb.dram``. The seed is
cocotb's ``RANDOM_SEED`` (set and logged by the launcher)."""

import os
import random

import cocotb

from llmaccel.sim.cocotb.dram import (
    ByteModel,
    CmdMonitor,
    CocotbBench,
    ReqDriver,
    RspMonitor,
    cocotb_config,
    model_requests,
    random_traffic,
)
from llmaccel.sim.golden.dram_model import starvation_bound
from llmaccel.sim.golden.dram_monitor import check_trace

N_PORTS = 2
SMALL = os.environ.get("LLMACCEL_DRAM_SCALE") == "small"


def _rng(tag: str) -> random.Random:
    seed = (cocotb.RANDOM_SEED * 1000003 + sum(map(ord, tag))) & 0xFFFFFFFF
    cocotb.log.info(f"{tag}: seed {seed}")
    return random.Random(seed)


@cocotb.test()
@cocotb.parametrize(stalls=[False, True])
async def random_traffic_two_ports(dut, stalls):
    cfg = cocotb_config()
    rng = _rng(f"traffic-{stalls}")
    bench = CocotbBench(dut, cfg, N_PORTS)
    await bench.start()
    image = bytes(rng.randrange(256) for _ in range(cfg.dram_bytes // 4))
    await bench.load_dram(image)
    n = 12 if SMALL else 60
    traffic = random_traffic(cfg, rng, N_PORTS, n, rows=3, gap=4 if stalls else 1)
    mon = CmdMonitor(bench)
    cocotb.start_soon(mon.run())
    drivers = [ReqDriver(bench, p) for p in range(N_PORTS)]
    rsps = [RspMonitor(bench, p, rng, 0.5 if stalls else 0.0) for p in range(N_PORTS)]
    tasks = [cocotb.start_soon(d.send(traffic[p])) for p, d in enumerate(drivers)]
    tasks += [cocotb.start_soon(r.run(sum(not q.write for q in traffic[p])))
              for p, r in enumerate(rsps)]
    for t in tasks:
        await t
    await bench.tick(starvation_bound(cfg, N_PORTS))
    end = bench.cycle
    # Scoreboard: data, timing rules, whole-DRAM contents (guard bands), exact cycles.
    model = ByteModel(cfg, image)
    expected = model.expected(traffic)
    for p in range(N_PORTS):
        assert [d for _, d in rsps[p].got] == expected[p], f"port {p} read data"
    check_trace(cfg, mon.trace)
    assert await bench.read_dram(cfg.dram_bytes // cfg.col_bytes) == model.mem.tobytes()
    if not stalls:
        dm = model_requests(cfg, traffic, [d.presented for d in drivers], to_cycle=end)
        rtl = [c for c in mon.trace if c[0] < end - 1]
        assert rtl == [c for c in dm.trace if mon.first <= c[0] < end - 1]
        for p in range(N_PORTS):
            assert drivers[p].accepted == [r.accept for r in dm.requests[p]]
            assert [c for c, _ in rsps[p].got] == [r.done for r in dm.requests[p]
                                                    if not r.write]
    cocotb.log.info(f"{len(mon.trace)} commands, {sum(1 for c in mon.trace if c[1] == 'REF')} "
                    f"refreshes, {end} cycles")
