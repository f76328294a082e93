"""The board top (UART bridge + accelerator) in Amaranth's simulator, driven by the same host code
as a real board (sw/board.py) over the simulated serial transport: loads through the memory
window, runs, counters and errors — first on the backends' stand-in top level, then a short
program on the real accelerator checked against the golden model."""

import numpy as np
import pytest

from llmaccel.hw.board_top import BoardTop
from llmaccel.hw.config import preset
from llmaccel.hw.isa import ErrorCode, Opcode, Space, Src2Mode, Unit
from llmaccel.sim.backends.standin import StandinTop
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sw.asm import instr, to_binary
from llmaccel.sw.board import BoardBackend, BoardError, SimTransport

CLK_HZ, BAUD = 4_000_000, 1_000_000          # 4 cycles per bit keeps the simulation short
STANDIN_CFG = preset("tiny").replace(name="standin", bank_rows=8, sp_bytes=1024, acc_elems=256)


def _board(cfg, top=None):
    board = BoardTop(cfg, clk_hz=CLK_HZ, baud=BAUD, por_bits=4, top=top)
    t = SimTransport(board, board.divisor, start_cycles=64)
    return BoardBackend(cfg, t, poll=lambda: t.advance(64), max_cycles=100_000), t


def test_standin_load_run_and_read_back_over_uart(seed):
    rng = np.random.default_rng(seed)
    be, _t = _board(STANDIN_CFG, StandinTop)
    data = rng.integers(0, 256, 37, dtype=np.uint8).tobytes()
    be.load_dram(0x123, data)                 # unaligned: partial words at both ends
    assert be.read_dram(0x123, len(data)) == data
    assert be.read_dram(0x120, 3) == b"\0\0\0"
    be.load_dram(0x400, np.array([150, 0], "<u4"))
    run = be.run(0x400)
    assert run.ok and 150 <= run.cycles <= 155
    assert run.cycles == int(np.frombuffer(be.read_dram(0x404, 4), "<u4")[0])
    be.load_dram(0x600, np.array([0xFFFF0000 | ErrorCode.SRAM_RANGE.value], "<u4"))
    run = be.run(0x600)
    assert (run.status, run.error, run.error_pc) == ("error", ErrorCode.SRAM_RANGE, 0x600)


def test_wrong_config_is_refused():
    board = BoardTop(STANDIN_CFG, clk_hz=CLK_HZ, baud=BAUD, por_bits=4, top=StandinTop)
    t = SimTransport(board, board.divisor, start_cycles=64)
    with pytest.raises(BoardError, match="another config"):
        BoardBackend(preset("default"), t)


@pytest.mark.slow
def test_board_runs_a_program_on_the_accelerator(seed):
    """DMA in two int8 rows, add them (requantised), DMA the sum out; the result read back over
    the UART equals the golden model's. Slow (minutes): the whole accelerator in Amaranth's
    Python simulator, every host byte sent bit by bit; part of `make soak`."""
    cfg = preset("tiny")
    W = cfg.row_width
    rng = np.random.default_rng(seed)
    x = rng.integers(-60, 60, 2 * W, dtype=np.int8)
    prog = [
        instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=0x1000, dram_stride=W, sram_addr=0,
              sram_stride=W, rows=2, len=W),
        instr(Opcode.VADD, wait=Unit.LOAD, dst={"space": Space.SP, "addr": 2 * W, "stride": W},
              src1={"space": Space.SP, "addr": 0, "stride": W},
              src2={"mode": Src2Mode.VEC, "addr": W, "stride": W}, rows=1, shift=0),
        instr(Opcode.DMA_STORE, wait=Unit.VEC, space=Space.SP, dram_addr=0x2000, dram_stride=W,
              sram_addr=2 * W, sram_stride=W, rows=1, len=W),
        instr(Opcode.HALT, wait=Unit.STORE),
    ]
    binary = to_binary(prog)
    gold = GoldenMachine(cfg)
    gold.load_dram(0x1000, x.tobytes())
    gold.load_dram(0x400, binary)
    assert gold.run(0x400).ok
    want = bytes(gold.state()["dram"][0x2000:0x2000 + W])

    be, _t = _board(cfg)
    be.load_dram(0x1000, x.tobytes())
    be.load_dram(0x400, binary)
    run = be.run(0x400)
    assert run.ok, run.message
    assert be.read_dram(0x2000, W) == want
    assert be.read_dram(0x2000 + W, 4) == b"\0" * 4        # nothing written past the row
    assert run.counters["per_unit"]["VEC"] == 1
