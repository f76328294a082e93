"""A small end-to-end program on the golden model: DMA in, GEMM, requantise, argmax, DMA out.

Used by ``llmaccel demo`` and its test; it shows the data layouts every real program uses and
checks the machine's result against plain NumPy.
"""

from __future__ import annotations

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.hw.isa import Opcode, Space, Src2Mode, Unit
from llmaccel.sim.golden import numerics as nx
from llmaccel.sim.golden.cycle_model import CycleModel
from llmaccel.sim.golden.isa_sim import GoldenMachine
from llmaccel.sw.asm import disassemble, instr, to_binary

__all__ = ["run_demo"]


def _to_blocks(mat: np.ndarray, block: int, width: int) -> np.ndarray:
    """(rows, cols) → column blocks of ``block`` columns, each (rows, width) zero-padded: the SP
    layout of a GEMM's B operand (and, applied to Aᵀ, of its A operand)."""
    rows, cols = mat.shape
    nb = -(-cols // block)
    out = np.zeros((nb, rows, width), dtype=mat.dtype)
    for q in range(nb):
        part = mat[:, q * block:(q + 1) * block]
        out[q, :, :part.shape[1]] = part
    return out


def run_demo(cfg: AccelConfig, m: int = 16, k: int = 32, n: int = 24, seed: int = 1) -> dict:
    """Y = requant(A·B); t = argmax(Y[0]). Returns the program text, results and checks."""
    if not cfg.gemm_core:
        raise LlmaccelError(f"the demo runs a GEMM, and config {cfg.name!r} has no GEMM core "
                            f"(gemm_core=False)")
    rng = np.random.default_rng(seed)
    R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
    a = rng.integers(-128, 128, (m, k), dtype=np.int64)
    b = rng.integers(-128, 128, (k, n), dtype=np.int64)
    mult, shift = 77, 16

    a_img = _to_blocks(a.T, R, W).astype(np.int8).tobytes()     # per block of R rows: k × W
    b_img = _to_blocks(b, C, W).astype(np.int8).tobytes()       # per block of C cols: k × W
    a_base, b_base, out_base = 0x10000, 0x20000, 0x30000
    mb, nb = -(-m // R), -(-n // C)
    sp_a, sp_b, sp_y = 0, mb * k * W, mb * k * W + nb * k * W
    acc_c, acc_t = 0, mb * n * W
    prog = [
        instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=a_base, dram_stride=W, sram_addr=sp_a,
              sram_stride=W, rows=mb * k, len=W),
        instr(Opcode.DMA_LOAD, space=Space.SP, dram_addr=b_base, dram_stride=W, sram_addr=sp_b,
              sram_stride=W, rows=nb * k, len=W),
        instr(Opcode.GEMM, wait=Unit.LOAD, m=m, n=n, k=k, a_addr=sp_a, a_stride=k * W,
              b_addr=sp_b, b_stride=k * W, c_addr=acc_c, c_stride=n * W),
        instr(Opcode.VMUL, wait=Unit.GEMM, dst={"space": Space.SP, "addr": sp_y, "stride": W},
              src1={"space": Space.ACC, "addr": acc_c, "stride": W},
              src2={"mode": Src2Mode.IMM}, imm=mult, rows=mb * n, shift=shift),
        # Row j of block 0 holds Y[0..R-1, j]; lane-wise argmax over the n rows gives, in lane
        # i, the argmax of row i of Y.
        instr(Opcode.VARGMAX, dst={"space": Space.ACC, "addr": acc_t, "stride": 0},
              src1={"space": Space.SP, "addr": sp_y, "stride": W}, rows=n),
        instr(Opcode.DMA_STORE, wait=Unit.VEC, space=Space.ACC, dram_addr=out_base,
              dram_stride=0, sram_addr=acc_t, sram_stride=0, rows=1, len=min(R, m)),
        instr(Opcode.HALT),
    ]
    machine = GoldenMachine(cfg)
    machine.load_dram(a_base, a_img)
    machine.load_dram(b_base, b_img)
    machine.load_dram(0, to_binary(prog))
    res = machine.run(0, trace=True)
    cycles = CycleModel(cfg).run(res.trace, res.gather_bases)
    expect_y = nx.requant(a @ b, mult, shift)
    expect_t = np.argmax(expect_y[:min(R, m)], axis=1)
    got_t = np.frombuffer(machine.read_dram(out_base, 4 * min(R, m)), dtype="<i4")
    got_y = machine.sp[sp_y:sp_y + mb * n * W].reshape(mb, n, W)
    got_y = np.concatenate([got_y[q, :, :].T for q in range(mb)], axis=0)[:m]
    return {
        "program": disassemble(prog, base=0),
        "status": res.status,
        "error": res.message,
        "cycles": cycles.cycles,
        "macs": res.stats.gemm_macs,
        "y_matches": bool(np.array_equal(got_y, expect_y)),
        "argmax": got_t.tolist(),
        "argmax_matches": bool(np.array_equal(got_t, expect_t)),
        "shape": (m, k, n),
    }
