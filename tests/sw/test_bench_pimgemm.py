"""``llmaccel bench pimgemm``: both GEMV programs are bit-exact and PIM is the faster one."""

from __future__ import annotations

import numpy as np

from llmaccel.hw.config import preset
from llmaccel.sw.bench import pimgemm


def test_smallest_gemv_bit_exact_and_pim_faster_on_tiny_golden():
    cfg = preset("tiny")
    result = pimgemm.measure(cfg, [("attn.proj 64x64", 64, 64)], backend="golden", chunk=2)
    assert [r["x_in"] for r in result["rows"]] == ["sp", "dram"]
    for r in result["rows"]:
        # measure() asserts y == NumPy for both paths; the flag records that it got that far.
        assert r["bit_exact"]
        assert r["pim_cycles"] < r["gemm_cycles"], r
        assert r["pim_in_bank_bytes"] == 64 * 64
        assert r["gemm_dram_bytes"] >= 64 * 64


def test_paths_agree_with_numpy_on_tiny_golden():
    cfg = preset("tiny")
    w, x = pimgemm._operands(64, 64)
    want = w.astype(np.int64).T @ x.astype(np.int64)
    pim = pimgemm.run_case(cfg, pimgemm.pim_case(cfg, "g", w, x))
    gemm = pimgemm.run_case(cfg, pimgemm.gemm_case(cfg, "g", w, x, chunk=1))
    np.testing.assert_array_equal(pim["y"], want)
    np.testing.assert_array_equal(gemm["y"], want)
    assert pim["pim_macs"] == 64 * 64 and gemm["gemm_macs"] == 64 * 64
