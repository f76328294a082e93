"""sim/golden/numerics.py against straightforward exact references (Python ints, floats)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmaccel.sim.golden import numerics as nx

I32 = st.integers(nx.INT32_MIN, nx.INT32_MAX)


def _round_half_up(num: int, s: int) -> int:
    return math.floor(Fraction(num, 1 << s) + Fraction(1, 2)) if s else num


@settings(max_examples=500, deadline=None)
@given(I32, I32, st.integers(0, 63))
def test_rshift_round_is_round_half_up_of_the_exact_product(a, b, s):
    assert int(nx.rshift_round(np.int64(a) * np.int64(b), s)) == _round_half_up(a * b, s)


@pytest.mark.parametrize("t", [-(1 << 62), (1 << 62), -(1 << 63), (1 << 63) - 1, -1, 1, 0])
@pytest.mark.parametrize("s", [0, 1, 31, 62, 63])
def test_rshift_round_extremes_do_not_overflow(t, s):
    assert int(nx.rshift_round(np.int64(t), s)) == _round_half_up(t, s)


def test_rounding_ties_go_up():
    assert nx.rshift_round(np.array([1, 3, -1, -3, 5]), 1).tolist() == [1, 2, 0, -1, 3]


def test_requant_saturates():
    acc = np.array([nx.INT32_MAX, nx.INT32_MIN, 1000, -1000, 0])
    assert nx.requant(acc, 1, 0).tolist() == [127, -128, 127, -128, 0]
    assert nx.requant(acc, 3, 5).tolist() == [127, -128, 94, -94, 0]
    assert nx.requant(np.array([nx.INT32_MIN]), nx.INT32_MIN, 0, 32).tolist() == [nx.INT32_MAX]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, nx.INT32_MAX), st.integers(nx.INT32_MIN, nx.INT32_MAX))
def test_recip_is_floor_division(num, a):
    got = int(nx.recip(np.int64(a), num))
    assert got == (num // a if a > 0 else nx.INT32_MAX)


@settings(max_examples=500, deadline=None)
@given(I32)
def test_isqrt_is_exact_floor(a):
    assert int(nx.isqrt(np.int64(a))) == (math.isqrt(a) if a > 0 else 0)


def test_isqrt_at_perfect_squares_and_neighbours():
    xs = np.array([k * k + d for k in (0, 1, 2, 46340, 46341) for d in (-1, 0, 1)
                   if 0 <= k * k + d <= nx.INT32_MAX])
    assert nx.isqrt(xs).tolist() == [math.isqrt(int(x)) for x in xs]


def test_lut_lookup_indexes_by_saturated_int8():
    table = np.arange(256, dtype=np.int16) - 100
    assert nx.lut_lookup(table, np.array([-128, -1000, 0, 127, 5000])).tolist() == \
        [-100, -100, 28, 155, 155]
    with pytest.raises(ValueError, match="256 entries"):
        nx.lut_lookup(np.zeros(10), np.array([0]))


def test_gelu_lut_matches_float_gelu_within_half_a_step():
    in_s, out_s = 1 / 16, 1 / 32
    lut = nx.build_gelu_lut(in_s, out_s)
    x = (np.arange(256) - 128) * in_s
    ref = np.clip(nx.gelu_float(x) / out_s, -128, 127)
    assert np.max(np.abs(lut - ref)) <= 0.5 + 1e-9
    assert lut.dtype == np.int16


def test_exp_lut_is_exp_of_non_positive_inputs_with_masked_entry_zero():
    lut = nx.build_exp_lut(1 / 16)
    assert lut[128] == 127              # input 0 → exp(0) · 127
    assert lut[0] == 0                  # −128: saturated / masked
    assert np.all(np.diff(lut[:129].astype(int)) >= 0)
    assert abs(int(lut[128 - 16]) - 127 * math.exp(-1)) <= 0.5


def test_softmax_all_equal_row_is_uniform():
    p = nx.SoftmaxParams(in_m=1, in_s=0, lut=nx.build_exp_lut(1 / 16))
    s = np.full((3, 10), 12345)
    e, z = nx.softmax_int(s, np.zeros_like(s, dtype=bool), p)
    assert (e == 127).all() and (z == 1270).all()


def test_softmax_masked_entries_get_zero_weight_and_match_float():
    rng = np.random.default_rng(3)
    scale = 1 / 64                       # score units per real unit, folded into in_m/in_s
    in_m, in_s = nx.requant_multiplier(scale * 16)
    p = nx.SoftmaxParams(in_m=in_m, in_s=in_s, lut=nx.build_exp_lut(1 / 16))
    s = rng.integers(-300, 300, (4, 16))
    masked = np.triu(np.ones((4, 16), dtype=bool), k=8)
    e, z = nx.softmax_int(s, masked, p)
    assert (e[masked] == 0).all()
    assert (z[:, 0] == e.sum(axis=1)).all()
    real = np.where(masked, -np.inf, s * scale)
    ref = np.exp(real - real.max(axis=1, keepdims=True))
    ref = ref / ref.sum(axis=1, keepdims=True)
    got = e / z
    assert np.max(np.abs(got - ref)) < 0.02


def test_softmax_fully_masked_row_does_not_divide_by_zero():
    p = nx.SoftmaxParams(in_m=1, in_s=0, lut=nx.build_exp_lut(1 / 16))
    _e, z = nx.softmax_int(np.zeros((1, 4)), np.ones((1, 4), dtype=bool), p)
    assert (z > 0).all()
    out = nx.attention_normalise(np.array([[100]]), z, 1 << 20, 10)
    assert np.isfinite(out).all()


def _ln_params(n, var_s=0, gamma=None, beta=None, out_scale=1 / 32, frac=10):
    # μ = s/n exactly when n is a power of two: mean_m = 1, mean_s = log2 n.
    mean_s = n.bit_length() - 1
    # Pick the shift that puts the numerator near 2^28 (it must stay below 2^31).
    norm_s = max(0, round(28 - math.log2(math.sqrt(n)) - frac + var_s / 2))
    # z = c·⌊num/r⌋ >> norm_s ≈ (c/σ)·2^frac with r = √(n·var·2^-var_s).
    num = round(math.sqrt(n) * 2 ** (frac - var_s / 2 + norm_s))
    gamma = np.ones(n) if gamma is None else gamma
    beta = np.zeros(n) if beta is None else beta
    out_s = 16
    g = np.round(gamma / out_scale * 2 ** (out_s - frac)).astype(np.int64)
    b = np.round(beta / out_scale * 2 ** out_s).astype(np.int64)
    return nx.LayerNormParams(mean_m=1, mean_s=mean_s, var_s=var_s, recip_num=num,
                              norm_s=norm_s, gamma_m=g, beta=b, out_s=out_s)


def test_layernorm_matches_float_layernorm():
    rng = np.random.default_rng(7)
    n = 64
    x = rng.normal(0, 1000, (5, n)).round().astype(np.int64)
    gamma, beta = rng.uniform(0.5, 1.5, n), rng.uniform(-0.5, 0.5, n)
    p = _ln_params(n, var_s=4, gamma=gamma, beta=beta)
    got = nx.layernorm_int(x, p) * (1 / 32)
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    ref = np.clip((x - mu) / sd * gamma + beta, -4, 127 / 32)
    assert np.max(np.abs(got - ref)) < 0.08


def test_layernorm_zero_variance_gives_beta():
    n = 16
    beta = np.linspace(-1, 1, n)
    p = _ln_params(n, beta=beta)
    x = np.full((2, n), 777)
    got = nx.layernorm_int(x, p)
    assert (got == np.round(beta * 32)).all()


def test_requant_multiplier_precision():
    for real in (1e-6, 0.0123, 0.5, 3.7, 1000.0):
        m, s = nx.requant_multiplier(real)
        assert m < 1 << 24
        assert abs(m / 2 ** s - real) / real < 2 ** -22
    assert nx.requant_multiplier(0.0) == (0, 0)
    with pytest.raises(ValueError):
        nx.requant_multiplier(float("nan"))


def test_quantize_rounds_half_up_and_saturates():
    assert nx.quantize([0.5, -0.5, 1.49, 300, -300], 1.0).tolist() == [1, 0, 1, 127, -128]
