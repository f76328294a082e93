"""Integer arithmetic of the accelerator: the specification the RTL matches bit for bit.

All functions take and return NumPy integer arrays (``int64`` intermediates, so every product of
two int32 values is exact) and never touch floats, except the quantisation helpers and LUT
builders that turn float scales into integer tables at compile time.

The primitives (``rshift_round``, ``sat``, ``valu``, ``reduce_*``, ``recip``, ``isqrt``,
``lut_lookup``) are exactly what one vector instruction computes per element. The composites
(``layernorm_int``, ``softmax_int``, ``linear_requant`` …) are the instruction sequences the
compiler emits, written as calls of the primitives in the same order, so the int8 reference model
and a compiled program agree by construction — and a test checks that they do.

Rounding is round-half-up: ``rshift_round(t, s) = ⌊(t + 2^(s-1)) / 2^s⌋`` for ``s > 0``.
Saturation clamps to the destination type. Requantisation is
``sat((acc · M + 2^(S-1)) >> S)`` — ``valu("mul", acc, M, S, bits)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INT8_MAX",
    "INT8_MIN",
    "INT16_MAX",
    "INT16_MIN",
    "INT32_MAX",
    "INT32_MIN",
    "LayerNormParams",
    "SoftmaxParams",
    "attention_normalise",
    "build_exp_lut",
    "build_gelu_lut",
    "dequantize",
    "gelu_float",
    "gelu_int",
    "isqrt",
    "layernorm_int",
    "linear_requant",
    "lut_lookup",
    "mask_affine",
    "quantize",
    "recip",
    "reduce_argmax",
    "reduce_max",
    "reduce_sum",
    "requant",
    "requant_multiplier",
    "rshift_round",
    "sat",
    "softmax_int",
    "valu",
]

INT8_MIN, INT8_MAX = -(1 << 7), (1 << 7) - 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def sat(x, bits: int) -> np.ndarray:
    """Clamp to the signed ``bits``-bit range (int64 result)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(_i64(x), lo, hi)


def rshift_round(t, s: int) -> np.ndarray:
    """``⌊(t + 2^(s-1)) / 2^s⌋`` (round half up) for ``0 ≤ s ≤ 63``; ``t`` when ``s == 0``.

    Computed as ``(t >> s) + ((t >> (s-1)) & 1)`` so that it cannot overflow int64; the RTL uses
    the same form.
    """
    t = _i64(t)
    if not 0 <= s <= 63:
        raise ValueError(f"shift must be in 0..63, not {s!r}")
    if s == 0:
        return t
    return (t >> s) + ((t >> (s - 1)) & 1)


def requant(acc, m, s: int, bits: int = 8) -> np.ndarray:
    """Requantise: ``sat_bits(rshift_round(acc · m, s))`` (``m`` scalar or broadcastable)."""
    return valu("mul", acc, m, s, bits)


_ALU = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "max": np.maximum,
    "min": np.minimum,
}


def valu(op: str, a, b, shift: int, bits: int) -> np.ndarray:
    """One element-wise vector ALU operation followed by the requantisation stage.

    ``t = a (op) b`` exactly, then ``sat_bits(rshift_round(t, shift))``. ``a`` and ``b`` are
    int32-range values (int8 values are sign-extended first by the caller's dtype).
    """
    return sat(rshift_round(_ALU[op](_i64(a), _i64(b)), shift), bits)


def lut_lookup(table, a) -> np.ndarray:
    """``table[sat8(a) + 128]`` with the int16 entry sign-extended."""
    table = np.asarray(table, dtype=np.int16)
    if table.shape != (256,):
        raise ValueError(f"a lookup table has 256 entries, not {table.shape}")
    return table.astype(np.int64)[sat(a, 8) + 128]


def recip(a, num: int) -> np.ndarray:
    """Reciprocal step: ``⌊num / a⌋`` for ``a > 0``; ``INT32_MAX`` for ``a ≤ 0``."""
    if not 0 <= num <= INT32_MAX:
        raise ValueError(f"reciprocal numerator must be in 0..{INT32_MAX}, not {num!r}")
    a = _i64(a)
    safe = np.where(a > 0, a, 1)
    return np.where(a > 0, np.int64(num) // safe, np.int64(INT32_MAX))


def isqrt(a) -> np.ndarray:
    """Integer square-root step: ``⌊√max(a, 0)⌋`` exactly, for int32-range inputs."""
    a = np.maximum(_i64(a), 0)
    r = np.floor(np.sqrt(a.astype(np.float64))).astype(np.int64)
    # float64 is exact to within one here; correct it so the result is the true floor.
    r = np.where(r * r > a, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= a, r + 1, r)
    return r


def reduce_sum(a, axis) -> np.ndarray:
    """Exact sum (the RTL's accumulator is wide enough); the caller saturates to its type."""
    return _i64(a).sum(axis=axis)


def reduce_max(a, axis) -> np.ndarray:
    return _i64(a).max(axis=axis)


def reduce_argmax(a, axis) -> np.ndarray:
    """Index of the first maximum along ``axis`` (NumPy's argmax is first-occurrence)."""
    return np.argmax(_i64(a), axis=axis).astype(np.int64)


def mask_affine(a, rows_idx, lanes_idx, mask_a: int, mask_b: int, imm: int, bits: int):
    """VMASK: replace elements where ``r·mask_a + l·mask_b + imm > 0`` with the type minimum."""
    cond = (_i64(rows_idx) * mask_a + _i64(lanes_idx) * mask_b + imm) > 0
    return np.where(cond, np.int64(-(1 << (bits - 1))), sat(a, bits))


# -------------------------------------------------------------------------------------------
# Quantisation helpers (compile time: floats in, integers out)

def quantize(x, scale, bits: int = 8) -> np.ndarray:
    """Symmetric quantisation ``sat(⌊x/scale + ½⌋)``; ``scale`` scalar or broadcastable."""
    q = np.floor(np.asarray(x, dtype=np.float64) / np.asarray(scale, dtype=np.float64) + 0.5)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(q, lo, hi).astype(np.int64)


def dequantize(q, scale) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * np.asarray(scale, dtype=np.float64)


def requant_multiplier(real: float, mbits: int = 24, max_shift: int = 62) -> tuple[int, int]:
    """Integer ``(M, S)`` with ``M / 2^S ≈ real`` and ``M < 2^mbits`` (``real ≥ 0``).

    Chooses the largest shift that keeps M inside ``mbits`` bits, so the relative error is below
    ``2^-(mbits-1)``.
    """
    if not real >= 0 or not math.isfinite(real):
        raise ValueError(f"a requantisation scale must be finite and non-negative, not {real!r}")
    if real == 0:
        return 0, 0
    s = 0
    while s < max_shift and round(real * (1 << (s + 1))) < (1 << mbits):
        s += 1
    m = round(real * (1 << s))
    if m >= 1 << mbits:
        raise ValueError(f"scale {real!r} is too large for a {mbits}-bit multiplier")
    return int(m), s


def gelu_float(x):
    """GPT-2's GELU (tanh approximation)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def build_gelu_lut(in_scale: float, out_scale: float) -> np.ndarray:
    """int16[256]: entry ``i`` is ``quantize(gelu((i-128)·in_scale), out_scale)`` (int8 range)."""
    x = (np.arange(256) - 128) * in_scale
    return quantize(gelu_float(x), out_scale, bits=8).astype(np.int16)


def build_exp_lut(in_scale: float, out_max: int = INT8_MAX) -> np.ndarray:
    """int16[256] for softmax: entry ``i`` is ``⌊out_max · exp((i-128)·in_scale) + ½⌋`` for
    inputs ≤ 0 (0 above, which never occurs after subtracting the maximum). Entry 0 (input −128,
    where every masked or saturated score lands) is 0, so masked keys get exactly zero weight."""
    x = (np.arange(256) - 128) * in_scale
    e = np.where(x <= 0, np.floor(out_max * np.exp(np.minimum(x, 0.0)) + 0.5), 0)
    e[0] = 0
    return e.astype(np.int16)


# -------------------------------------------------------------------------------------------
# Composites: the instruction sequences the compiler emits, one primitive per instruction.

@dataclass(frozen=True)
class LayerNormParams:
    """Integer layer norm constants (see :func:`layernorm_int`). ``gamma_m`` and ``beta`` are
    int32 per feature; the rest are scalars."""

    mean_m: int
    mean_s: int
    var_s: int
    recip_num: int
    norm_s: int
    gamma_m: np.ndarray
    beta: np.ndarray
    out_s: int


def layernorm_int(x, p: LayerNormParams) -> np.ndarray:
    """Integer layer norm over the last axis of int32 ``x``; returns int8 values (int64 array).

    One line per vector instruction (destination type in brackets)::

        s   = Σ x                                VREDSUM              [ACC]
        μ   = rshift_round(s · mean_m, mean_s)   VMUL imm             [ACC]
        c   = x − μ                              VSUB                 [ACC]
        q   = rshift_round(c · c, var_s)         VMUL                 [ACC]
        v   = Σ q                                VREDSUM              [ACC]
        r   = ⌊√v⌋                               VISQRT               [ACC]
        inv = ⌊recip_num / r⌋                    VRECIP               [ACC]
        z   = rshift_round(c · inv, norm_s)      VMUL                 [ACC]
        y   = z · gamma_m                        VMUL (per feature)   [ACC]
        out = rshift_round(y + beta, out_s)      VADD (per feature)   [SP]
    """
    x = _i64(x)
    s = sat(reduce_sum(x, -1), 32)[..., None]
    mu = valu("mul", s, p.mean_m, p.mean_s, 32)
    c = valu("sub", x, mu, 0, 32)
    q = valu("mul", c, c, p.var_s, 32)
    v = sat(reduce_sum(q, -1), 32)[..., None]
    r = sat(isqrt(v), 32)
    inv = sat(recip(r, p.recip_num), 32)
    z = valu("mul", c, inv, p.norm_s, 32)
    y = valu("mul", z, _i64(p.gamma_m), 0, 32)
    return valu("add", y, _i64(p.beta), p.out_s, 8)


@dataclass(frozen=True)
class SoftmaxParams:
    """Integer softmax constants: scores are scaled into the exp table's index domain by
    ``rshift_round(d · in_m, in_s)`` and looked up in ``lut`` (see :func:`build_exp_lut`)."""

    in_m: int
    in_s: int
    lut: np.ndarray


def softmax_int(scores, masked, p: SoftmaxParams, axis: int = -1):
    """Unnormalised integer softmax along ``axis``. Returns ``(e, z)``: int8 weights
    ``e ∈ [0, 127]`` (127 for the maximum) and their int32 sum ``z`` (keepdims).

    Normalisation is deferred to after the P·V product (see :func:`attention_normalise`)::

        x   = mask(scores)                       VMASK                [ACC]
        m   = max x                              VREDMAX              [ACC]
        d   = x − m                              VSUB                 [ACC]
        i   = rshift_round(d · in_m, in_s)       VMUL imm             [SP]
        e   = LUT[i]                             VLUT                 [SP]
        z   = Σ e                                VREDSUM              [ACC]
    """
    x = np.where(masked, np.int64(INT32_MIN), sat(scores, 32))
    m = reduce_max(x, axis)
    d = valu("sub", x, np.expand_dims(m, axis), 0, 32)
    i = valu("mul", d, p.in_m, p.in_s, 8)
    e = sat(lut_lookup(p.lut, i), 8)
    z = sat(reduce_sum(e, axis), 32)
    return e, np.expand_dims(z, axis)


def attention_normalise(o_acc, z, num: int, shift: int) -> np.ndarray:
    """``sat8(rshift_round(o_acc · ⌊num / z⌋, shift))``: VRECIP [ACC] then VMUL [SP]."""
    inv = sat(recip(z, num), 32)
    return valu("mul", o_acc, inv, shift, 8)


def linear_requant(acc, bias, m, s: int, bits: int = 8) -> np.ndarray:
    """Bias add then per-channel requantisation: VADD [ACC] then VMUL [SP or ACC]."""
    t = valu("add", acc, bias, 0, 32)
    return valu("mul", t, m, s, bits)


def gelu_int(acc, bias, m, s: int, lut) -> np.ndarray:
    """GELU on a linear layer's int32 output: requantise to the table's int8 input domain
    (VADD, VMUL [SP]) and look up (VLUT [SP])."""
    i = linear_requant(acc, bias, m, s, 8)
    return sat(lut_lookup(lut, i), 8)
