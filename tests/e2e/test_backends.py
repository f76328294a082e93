"""The RTL backends' host plumbing, on a stand-in top level with the accelerator's bus ports:
loads and reads through the memory window (aligned or not, before and after a run), runs,
counters, errors, the watchdog and the harness's own hang limit, waveforms, and the errors a
user sees when a simulator is missing. The real accelerator is exercised by test_e2e.py and
test_fuzz.py."""

import numpy as np
import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.isa import ErrorCode
from llmaccel.hw.regs import Reg, Status
from llmaccel.sim.backends import get_backend
from llmaccel.sim.backends.rtl import (
    IcarusBackend,
    RtlError,
    bus_ports,
    fst_supported,
    top_ports,
    top_verilog,
)
from llmaccel.sim.backends.standin import StandinTop
from llmaccel.sim.tools import SimulatorMissingError, available_simulators
from llmaccel.sw.asm import assemble, to_binary

# A small machine: 8 KiB of DRAM keeps the stand-in's builds and full reads to seconds.
CFG = preset("tiny").replace(name="standin", bank_rows=2, sp_bytes=1024, acc_elems=256)
BACKENDS = [*available_simulators(), "amaranth"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    # With a waveform: one Verilator build of the stand-in serves every test here.
    trace = tmp_path_factory.mktemp("waves") / f"{request.param}.vcd"
    be = get_backend(request.param, CFG, top=StandinTop, trace=trace)
    yield be
    be.close()


def _program(n: int) -> np.ndarray:
    return np.array([n, 0], "<u4")


def test_dram_loads_and_reads_round_trip_at_any_alignment(backend, seed):
    rng = np.random.default_rng(seed)
    model = np.zeros(CFG.dram_bytes, np.uint8)     # the module's first test: DRAM from reset
    for _ in range(12):
        n = int(rng.integers(1, 700))
        addr = int(rng.integers(0, CFG.dram_bytes - n))
        data = rng.integers(0, 256, n, dtype=np.uint8)
        data[rng.random(n) < 0.5] = 0          # zero runs exercise the sparse first load
        backend.load_dram(addr, data)
        model[addr:addr + n] = data
        lo = max(0, addr - 5)
        got = np.frombuffer(backend.read_dram(lo, n + 10), np.uint8)
        np.testing.assert_array_equal(got, model[lo:lo + n + 10])
    np.testing.assert_array_equal(backend.state()["dram"], model)


def test_sram_windows_round_trip(backend, seed):
    rng = np.random.default_rng(seed)
    sp = rng.integers(-128, 128, 64, dtype=np.int8)
    acc = rng.integers(-2**31, 2**31, 40, dtype=np.int64).astype(np.int32)
    backend.load_sp(32, sp)
    backend.load_acc(7, acc)
    np.testing.assert_array_equal(backend.read_sp(32, 64), sp)
    np.testing.assert_array_equal(backend.read_sp(33, 5), sp[1:6])
    np.testing.assert_array_equal(backend.read_acc(7, 40), acc)
    st = backend.state()
    np.testing.assert_array_equal(st["sp"][32:96], sp)
    np.testing.assert_array_equal(st["acc"][7:47], acc)
    assert st["sp"].size == CFG.sp_bytes and st["acc"].size == CFG.acc_elems


def test_run_reports_the_rtl_cycle_counter(backend):
    backend.load_dram(0x400, _program(300))
    runs = [backend.run(0x400) for _ in range(2)]
    for run in runs:
        assert run.ok and run.error is ErrorCode.NONE
        assert run.cycles_source == "rtl"
        # The stand-in writes its cycle count next to the program: the counter and DRAM agree.
        assert run.cycles == int(np.frombuffer(backend.read_dram(0x404, 4), "<u4")[0])
        assert 300 <= run.cycles <= 305
        assert run.counters["per_unit"]["CTRL"] == 1      # counters cleared between runs
        assert run.counters["raw"]["cycles"] == run.cycles
        assert set(run.counters) >= {"instructions", "per_unit", "gemm_macs", "pim_macs",
                                     "dram_read_bytes", "dram_write_bytes", "busy"}
    assert runs[0].cycles == runs[1].cycles


def test_error_status_code_and_pc(backend):
    backend.load_dram(0x600, np.array([0xFFFF0000 | ErrorCode.SRAM_RANGE.value], "<u4"))
    run = backend.run(0x600)
    assert (run.status, run.error, run.error_pc) == ("error", ErrorCode.SRAM_RANGE, 0x600)
    assert not run.ok


def test_watchdog_ends_a_long_run(backend):
    backend.load_dram(0x800, _program(10**8))
    run = backend.run(0x800, max_cycles=700)
    assert (run.status, run.error) == ("error", ErrorCode.WATCHDOG)
    assert 700 <= run.cycles <= 710


def test_a_model_that_ignores_its_watchdog_is_reported_not_waited_for(backend):
    backend.load_dram(0x800, _program(10**8))
    backend.reg_write(Reg.PROG_BASE, 0x800)
    backend.reg_write(Reg.WATCHDOG, 0)          # the stand-in's watchdog off
    assert backend._start_and_wait(2000) == -1
    # Let the pretend run end so the next test starts from an idle machine.
    backend.reg_write(Reg.WATCHDOG, 1)
    for _ in range(100):
        if backend.reg_read(Reg.STATUS) != Status.RUNNING:
            break
    assert backend.reg_read(Reg.STATUS) == Status.ERROR


def test_waveforms(tmp_path):
    cases = [(name, ".vcd") for name in BACKENDS]
    cases += [("verilator", ".fst")] if fst_supported() else []
    for name, suffix in cases:
        path = tmp_path / f"{name}{suffix}"
        be = get_backend(name, CFG, top=StandinTop, trace=path)
        be.load_dram(0x40, _program(20))
        assert be.run(0x40).ok
        be.close()
        assert path.stat().st_size > 200, name
        if suffix == ".vcd":
            text = path.read_bytes()
            assert b"$enddefinitions" in text and b"o_irq" in text, name


@pytest.mark.skipif(fst_supported(), reason="the FST headers are installed here")
def test_fst_without_its_headers_names_the_packages(tmp_path):
    with pytest.raises(Exception, match="liblz4-dev"):
        get_backend("verilator", CFG, top=StandinTop, trace=tmp_path / "w.fst")


def test_bad_waveform_suffix_is_a_clear_error():
    with pytest.raises(Exception, match=r"must end in \.fst or \.vcd"):
        get_backend("verilator", CFG, top=StandinTop, trace="waves.txt")


def test_missing_iverilog_names_the_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SimulatorMissingError, match="apt-get install iverilog"):
        get_backend("icarus", CFG, top=StandinTop)


def test_bus_ports_of_the_stand_in_match_the_accelerator_contract():
    ports = bus_ports(top_ports(top_verilog(CFG, StandinTop)))
    assert ports["adr"].name == "bus__adr" and ports["dat_r"].direction == "output"
    assert ports["done_pulse"].name == "o_irq"


def test_amaranth_takes_the_first_image_at_construction(seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, 3000, dtype=np.uint8)
    be = get_backend("amaranth", CFG, top=StandinTop)
    be.load_dram(123, data)
    be.load_dram(0x1800, _program(10))
    assert be.ticks == 0                  # nothing simulated yet: the image is the init
    assert be.run(0x1800).ok
    assert be.read_dram(123, 3000) == data.tobytes()


def test_icarus_reports_a_dead_simulator():
    if "icarus" not in available_simulators():
        pytest.skip("iverilog is not installed")
    be = IcarusBackend(CFG, top=StandinTop)
    be._proc.kill()
    be._proc.wait()
    with pytest.raises(RtlError, match="vvp exited"):
        be.reg_read(Reg.ID)
    be.close()


@pytest.mark.parametrize(("bank_rows", "memories"), [(2, 1), (3, 2)])
def test_icarus_puts_the_first_image_straight_into_the_accelerators_banks(seed, bank_rows,
                                                                           memories):
    """Before the first run the Icarus backend loads DRAM with ``$readmemh`` into the banks'
    storage (no clock cycles); reads go through the bus, so the round trip checks the address
    mapping. After a run, loads go through the bus again. At 3 rows (96 columns) each bank is
    two memories, of 64 and 32 columns (hw/dram_bank.py)."""
    if "icarus" not in available_simulators():
        pytest.skip("iverilog is not installed")
    rng = np.random.default_rng(seed)
    cfg = CFG.replace(bank_rows=bank_rows)
    be = IcarusBackend(cfg)                       # the accelerator, not the stand-in
    try:
        assert len(be._backdoor) == cfg.dram_banks * memories
        model = np.zeros(cfg.dram_bytes, np.uint8)
        ticks = be.ticks
        spans = [(5, 100), (1000, 2100), (cfg.dram_bytes - 37, 37)]
        for addr, n in spans:                     # no column shared: no cycles at all
            model[addr:addr + n] = rng.integers(0, 256, n, dtype=np.uint8)
            be.load_dram(addr, model[addr:addr + n])
        assert be.ticks == ticks
        for addr, n in [(60, 10), (1040, 3)]:     # inside loaded columns: read, merge, write
            model[addr:addr + n] = rng.integers(0, 256, n, dtype=np.uint8)
            be.load_dram(addr, model[addr:addr + n])
        for addr, n in [*spans, (0, 256)]:
            got = np.frombuffer(be.read_dram(addr, n), np.uint8)
            np.testing.assert_array_equal(got, model[addr:addr + n])
        prog = to_binary(assemble("HALT"))
        be.load_dram(0x1000, prog)
        model[0x1000:0x1000 + len(prog)] = np.frombuffer(prog, np.uint8)
        assert be.run(0x1000).ok
        ticks = be.ticks
        be.load_dram(7, b"\x5a" * 9)              # after a run: through the bus
        model[7:16] = 0x5A
        assert be.ticks > ticks
        np.testing.assert_array_equal(np.frombuffer(be.read_dram(0, 64), np.uint8), model[:64])
    finally:
        be.close()


def test_stand_in_closes_its_dram_window_while_running():
    # As the accelerator's Wishbone slave does (docs/host.md): while STATUS is RUNNING a DRAM
    # window read returns zero and a write is dropped, MEM_ADDR still advancing; SP stays open.
    from amaranth.sim import Simulator

    from llmaccel.hw.regs import HostMem

    dut = StandinTop(CFG)
    seen = {}

    async def bench(ctx):
        bus = dut.bus

        async def access(addr, we, value=0):
            ctx.set(bus.adr, addr >> 2)
            ctx.set(bus.we, we)
            ctx.set(bus.dat_w, value)
            ctx.set(bus.sel, 0xF)
            ctx.set(bus.cyc, 1)
            ctx.set(bus.stb, 1)
            await ctx.tick()
            while not ctx.get(bus.ack):
                await ctx.tick()
            data = ctx.get(bus.dat_r)
            ctx.set(bus.cyc, 0)
            ctx.set(bus.stb, 0)
            await ctx.tick()
            return data

        async def window(mem, addr, values=None):
            await access(Reg.MEM_SEL, 1, mem)
            await access(Reg.MEM_ADDR, 1, addr)
            if values is None:
                return await access(Reg.MEM_DATA, 0)
            for v in values:
                await access(Reg.MEM_DATA, 1, v)
            return None

        await window(HostMem.DRAM, 0x40, [500, 0, 0x12345678])   # a 500-cycle "program"
        await access(Reg.PROG_BASE, 1, 0x40)
        await access(Reg.CTRL, 1, 1)
        seen["running"] = await access(Reg.STATUS, 0)
        await window(HostMem.DRAM, 0x48, [0xDEADBEEF])
        seen["addr"] = await access(Reg.MEM_ADDR, 0)
        seen["read_running"] = await window(HostMem.DRAM, 0x48)
        await window(HostMem.SP, 0, [0x01020304])
        seen["sp_running"] = await window(HostMem.SP, 0)
        while await access(Reg.STATUS, 0) == Status.RUNNING:
            pass
        seen["read_done"] = await window(HostMem.DRAM, 0x48)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["running"] == Status.RUNNING
    assert seen["addr"] == 0x4C
    assert seen["read_running"] == 0 and seen["sp_running"] == 0x01020304
    assert seen["read_done"] == 0x12345678


def test_refresh_phase_starts_every_run_at_the_same_point_of_the_refresh_interval(backend):
    tm = CFG.timing
    phase = tm.tRFC + 5
    backend.load_dram(0xA00, _program(40))
    starts = []
    backend.refresh_phase = phase
    try:
        for junk in (0, 300, 7):
            # Host work of different lengths before each run (window writes take cycles).
            backend.load_dram(0xC00, np.arange(junk, dtype=np.uint8))
            before = backend.ticks - backend.RESET_TICKS
            run = backend.run(0xA00)
            assert run.ok
            starts.append(run.start_cycle)
            assert run.start_cycle >= before
    finally:
        backend.refresh_phase = None
    # The host waits for the phase, then writes PROG_BASE, WATCHDOG and CTRL: the same number
    # of cycles after the phase every time, fewer than 64.
    offsets = [(s - phase) % tm.tREFI for s in starts]
    assert len(set(offsets)) == 1 and offsets[0] < 64, (starts, offsets)


def test_refresh_phase_is_checked_against_trefi():
    with pytest.raises(ValueError, match="tREFI"):
        get_backend("golden", CFG, refresh_phase=CFG.timing.tREFI)
    with pytest.raises(ValueError, match="tREFI"):
        get_backend("golden", CFG, refresh_phase=-1)


def test_golden_backend_starts_its_runs_at_the_refresh_phase():
    tm = CFG.timing
    phase = tm.tRFC + 64
    be = get_backend("golden", CFG, refresh_phase=phase)
    be.load_dram(0x400, to_binary(assemble("HALT")))
    starts = [be.run(0x400).start_cycle for _ in range(3)]
    assert [s % tm.tREFI for s in starts] == [phase] * 3
    assert starts[0] == phase and starts[1] == phase + tm.tREFI    # the next one, not later
    free = get_backend("golden", CFG)
    free.load_dram(0x400, to_binary(assemble("HALT")))
    assert free.run(0x400).start_cycle == 16                       # HOST_GAP after reset
