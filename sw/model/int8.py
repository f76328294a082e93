"""The int8 quantised GPT: calibration, integer-only inference, quality measurement.

Quantisation scheme (every number the accelerator sees is an integer):

* weights int8, symmetric, per output channel; embeddings int8 per tensor (a separate per-row
  copy of ``wte`` is the LM head, so both uses get the scale that suits them);
* activations int8, symmetric, per tensor, calibrated on training text (the maximum absolute
  value seen, or a percentile of it — ``QuantOptions``);
* the residual stream is **int32** at one scale ``s_r`` for the whole model, so residual adds
  never lose precision to int8 rounding (LLM.int8()'s lesson: the residual carries the outliers);
* linear layers accumulate int32, add an int32 bias and requantise with an int multiplier per
  channel and one shift per layer (``numerics.linear_requant``);
* layer norm, softmax, GELU and the attention normalisation are the integer composites of
  ``sim.golden.numerics`` — the exact instruction sequences the compiler emits.

:func:`forward_int8` is therefore the bit-exact reference for the compiled programs: token ids
from the golden ISA simulator and the RTL must equal the ones it gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from llmaccel.sim.golden import numerics as nx

from .gpt import GPTConfig, evaluate, evaluate_logits_fn, forward

__all__ = [
    "HEAD_SHIFT",
    "Linear8",
    "QuantOptions",
    "QuantizedGPT",
    "calibration_windows",
    "compare_quality",
    "forward_int8",
    "generate_int8",
    "quantize_model",
]

#: Shift of the LM-head multiplier that brings every vocabulary row to one scale for argmax.
HEAD_SHIFT = 15


@dataclass(frozen=True)
class QuantOptions:
    """Knobs of the quantiser.

    ``percentile`` clips activation ranges at that percentile of |x| (100 = the maximum seen);
    ``exp_step`` is the softmax table's input step (index i stands for (i−128)·exp_step, so the
    table spans [−128·exp_step, 0]); ``resid_bits`` places the largest calibrated residual value
    at 2^resid_bits, leaving 31 − resid_bits bits of headroom; ``norm_frac`` is the fractional
    bits of the normalised layer-norm value.
    """

    percentile: float = 100.0
    exp_step: float = 6.0 / 128
    resid_bits: int = 22
    norm_frac: int = 12
    calib_windows: int = 24


@dataclass
class Linear8:
    """One linear layer: int8 weights (K, N), int32 bias, requantisation to the output domain."""

    w: np.ndarray          # int8 (K, N), per output channel
    s_w: np.ndarray        # float (N,)
    bias: np.ndarray       # int32 (N,), in units of s_in · s_w[n]
    m: np.ndarray          # int32 (N,) requantisation multiplier
    shift: int             # requantisation shift
    s_in: float
    s_out: np.ndarray      # float (N,): the scale of each output channel


@dataclass
class Layer8:
    ln1: nx.LayerNormParams
    s_ln1: float
    qkv: Linear8           # int8 out: q, k, v at s_q, s_k, s_v
    s_q: float
    s_k: float
    s_v: float
    softmax: nx.SoftmaxParams
    att_num: int           # attention_normalise numerator
    att_shift: int
    s_att: float
    proj: Linear8          # int32 out in residual units
    ln2: nx.LayerNormParams
    s_ln2: float
    fc: Linear8            # int8 out: GELU table input domain
    gelu_lut: np.ndarray   # int16[256]
    s_h: float
    proj2: Linear8         # int32 out in residual units


@dataclass
class QuantizedGPT:
    """Every integer the accelerator needs to run the model, plus the scales that made them."""

    cfg: GPTConfig
    options: QuantOptions
    s_r: float                      # residual scale
    wte_e: np.ndarray               # int8 (V, d) embedding lookup table, per tensor
    s_e: float
    emb_m: int                      # residual = wte_e·emb_m + wpe_e·pos_m
    wpe_e: np.ndarray               # int8 (n_ctx, d)
    s_p: float
    pos_m: int
    layers: list[Layer8]
    ln_f: nx.LayerNormParams
    s_f: float
    head_w: np.ndarray              # int8 (d, V), per vocabulary row of wte
    s_head: np.ndarray              # float (V,)
    head_m: np.ndarray              # int32 (V,): comparable logits = (acc·head_m) >> HEAD_SHIFT
    exp_lut: np.ndarray             # int16[256], shared by every layer
    logit_scale: float              # real logit = comparable logit · logit_scale
    calibration: dict = field(default_factory=dict)


# -------------------------------------------------------------------------------------------
def calibration_windows(data: bytes, cfg: GPTConfig, n: int) -> list[np.ndarray]:
    """``n`` full-context windows spread evenly over ``data`` (deterministic)."""
    arr = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    if arr.size < cfg.n_ctx:
        raise ValueError(f"calibration data needs at least {cfg.n_ctx} bytes")
    starts = np.linspace(0, arr.size - cfg.n_ctx, n).astype(int)
    return [arr[s:s + cfg.n_ctx] for s in starts]


def _absmax(values: list[np.ndarray], pct: float) -> float:
    a = np.abs(np.concatenate([np.ravel(v) for v in values]))
    m = float(np.percentile(a, pct)) if pct < 100 else float(a.max())
    return max(m, 1e-8)


def _per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights (K, N) with one scale per output column."""
    s = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    return nx.quantize(w, s[None, :]).astype(np.int8), s


def _multipliers(real: np.ndarray, mbits: int = 24) -> tuple[np.ndarray, int]:
    """Per-channel multipliers with one shared shift: M[n] / 2^S ≈ real[n], M < 2^mbits."""
    top = float(np.max(real))
    if top <= 0:
        return np.zeros_like(real, dtype=np.int64), 0
    s = math.floor(math.log2(((1 << mbits) - 1) / top))
    s = max(0, min(s, 62))
    m = np.floor(real * (1 << s) + 0.5).astype(np.int64)
    return m, s


def _linear(w: np.ndarray, b: np.ndarray, s_in: float, s_out: np.ndarray) -> Linear8:
    wq, s_w = _per_channel(w)
    acc_scale = s_in * s_w
    bias = nx.quantize(b, acc_scale, bits=32).astype(np.int64)
    m, shift = _multipliers(acc_scale / s_out)
    return Linear8(w=wq, s_w=s_w, bias=bias, m=m, shift=shift, s_in=s_in, s_out=s_out)


def _layernorm(gamma: np.ndarray, beta: np.ndarray, s_out: float, calib_x: list[np.ndarray],
               opts: QuantOptions) -> nx.LayerNormParams:
    """Integer layer-norm constants for int32 inputs like ``calib_x`` (in integer units)."""
    n = gamma.shape[0]
    mean_m, mean_s = (1, n.bit_length() - 1) if n & (n - 1) == 0 else \
        nx.requant_multiplier(1.0 / n, mbits=16)
    # Keep Σ (c² >> var_s) below 2^29 for the largest calibrated token (saturation guards the
    # rest), which leaves √ of it ~15 bits of precision.
    sumsq = max(float(np.max(np.sum((x - x.mean(axis=-1, keepdims=True)) ** 2, axis=-1)))
                for x in calib_x)
    var_s = max(0, math.ceil(math.log2(max(sumsq, 1.0))) - 29)
    frac = opts.norm_frac
    # z = c·⌊N/r⌋ >> norm_s ≈ (c/σ)·2^frac, with r = √(Σc² / 2^var_s) = σ·√n / 2^(var_s/2).
    norm_s = max(0, round(30 - math.log2(math.sqrt(n)) - frac + var_s / 2))
    while True:
        num = round(math.sqrt(n) * 2.0 ** (frac - var_s / 2 + norm_s))
        if num <= nx.INT32_MAX or norm_s == 0:
            break
        norm_s -= 1
    g_real = np.asarray(gamma, np.float64) / s_out
    gmax = max(float(np.max(np.abs(g_real))), 1e-12)
    # out = (z·G + B) >> out_s; G ≈ γ/s_out · 2^(out_s − frac) with ~15 bits of precision.
    out_s = max(0, min(40, frac + 15 - math.ceil(math.log2(gmax))))
    g = np.floor(g_real * 2.0 ** (out_s - frac) + 0.5).astype(np.int64)
    b = np.floor(np.asarray(beta, np.float64) / s_out * 2.0 ** out_s + 0.5).astype(np.int64)
    return nx.LayerNormParams(mean_m=mean_m, mean_s=mean_s, var_s=var_s, recip_num=num,
                              norm_s=norm_s, gamma_m=g, beta=nx.sat(b, 32), out_s=out_s)


def quantize_model(params: dict, cfg: GPTConfig, calib_data: bytes,
                   opts: QuantOptions | None = None) -> QuantizedGPT:
    """Calibrate activation scales on ``calib_data`` and quantise every tensor."""
    opts = opts or QuantOptions()
    pct = opts.percentile
    records = []
    for win in calibration_windows(calib_data, cfg, opts.calib_windows):
        rec: dict = {}
        forward(params, cfg, win, record=rec)
        records.append(rec)

    def amax(name: str) -> float:
        return _absmax([r[name] for r in records], pct)

    P = {k: np.asarray(v, np.float64) for k, v in params.items()}
    d, hd = cfg.d_model, cfg.head_dim
    resid_names = ["embed"] + [f"h.{i}.{n}" for i in range(cfg.n_layer)
                               for n in ("resid_mid", "resid_out")]
    r_max = max(_absmax([r[n] for r in records], 100.0) for n in resid_names)
    s_r = r_max / float(1 << opts.resid_bits)

    wte, wpe = P["wte.weight"], P["wpe.weight"]
    s_e = float(np.abs(wte).max()) / 127.0
    s_p = float(np.abs(wpe).max()) / 127.0
    wte_e = nx.quantize(wte, s_e).astype(np.int8)
    wpe_e = nx.quantize(wpe, s_p).astype(np.int8)

    layers = []
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        s_ln1 = amax(p + "ln_1") / 127
        ln1 = _layernorm(P[p + "ln_1.weight"], P[p + "ln_1.bias"], s_ln1,
                         [r["embed" if i == 0 else f"h.{i - 1}.resid_out"] / s_r
                          for r in records], opts)
        s_q, s_k, s_v = amax(p + "q") / 127, amax(p + "k") / 127, amax(p + "v") / 127
        s_qkv = np.concatenate([np.full(d, s_q), np.full(d, s_k), np.full(d, s_v)])
        qkv = _linear(P[p + "attn.c_attn.weight"], P[p + "attn.c_attn.bias"], s_ln1, s_qkv)
        in_m, in_s = nx.requant_multiplier(s_q * s_k / math.sqrt(hd) / opts.exp_step)
        sm = nx.SoftmaxParams(in_m=in_m, in_s=in_s, lut=None)
        s_att = amax(p + "attn") / 127
        ratio = s_v / s_att
        att_shift = max(0, min(62, math.floor(30 - math.log2(ratio))))
        att_num = min(nx.INT32_MAX, round(ratio * 2.0 ** att_shift))
        proj = _linear(P[p + "attn.c_proj.weight"], P[p + "attn.c_proj.bias"], s_att,
                       np.full(d, s_r))
        s_ln2 = amax(p + "ln_2") / 127
        ln2 = _layernorm(P[p + "ln_2.weight"], P[p + "ln_2.bias"], s_ln2,
                         [r[p + "resid_mid"] / s_r for r in records], opts)
        s_g = amax(p + "fc") / 127
        fc = _linear(P[p + "mlp.c_fc.weight"], P[p + "mlp.c_fc.bias"], s_ln2,
                     np.full(cfg.d_ff, s_g))
        s_h = amax(p + "gelu") / 127
        gelu_lut = nx.build_gelu_lut(s_g, s_h)
        proj2 = _linear(P[p + "mlp.c_proj.weight"], P[p + "mlp.c_proj.bias"], s_h,
                        np.full(d, s_r))
        layers.append(Layer8(ln1=ln1, s_ln1=s_ln1, qkv=qkv, s_q=s_q, s_k=s_k, s_v=s_v,
                             softmax=sm, att_num=att_num, att_shift=att_shift, s_att=s_att,
                             proj=proj, ln2=ln2, s_ln2=s_ln2, fc=fc, gelu_lut=gelu_lut,
                             s_h=s_h, proj2=proj2))
    exp_lut = nx.build_exp_lut(opts.exp_step)
    for lay in layers:
        lay.softmax = nx.SoftmaxParams(lay.softmax.in_m, lay.softmax.in_s, exp_lut)

    s_f = amax("ln_f") / 127
    ln_f = _layernorm(P["ln_f.weight"], P["ln_f.bias"], s_f,
                      [r[f"h.{cfg.n_layer - 1}.resid_out"] / s_r for r in records], opts)
    head_w, s_head = _per_channel(wte.T)                       # (d, V), scale per token
    top = float(s_head.max())
    head_m = np.floor(s_head / top * (1 << HEAD_SHIFT) + 0.5).astype(np.int64)
    return QuantizedGPT(
        cfg=cfg, options=opts, s_r=s_r, wte_e=wte_e, s_e=s_e, emb_m=round(s_e / s_r),
        wpe_e=wpe_e, s_p=s_p, pos_m=round(s_p / s_r), layers=layers, ln_f=ln_f, s_f=s_f,
        head_w=head_w, s_head=s_head, head_m=head_m, exp_lut=exp_lut,
        logit_scale=s_f * top,
        calibration={"windows": opts.calib_windows, "percentile": pct, "resid_max": r_max})


# -------------------------------------------------------------------------------------------
def _matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int8 × int8 → exact integer sums (the array and the PIM units accumulate in int32,
    which cannot overflow at these sizes; wrapping is applied to match them anyway)."""
    acc = a.astype(np.int64) @ w.astype(np.int64)
    return ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)


def forward_int8(q: QuantizedGPT, tokens, positions=None, *, record: dict | None = None
                 ) -> np.ndarray:
    """Comparable int32 logits ``(T, V)`` of a token sequence (causal), integer arithmetic only.

    ``argmax`` of a row is the next token; ``logits · q.logit_scale`` approximates the float
    logits (for bits-per-byte).
    """
    cfg = q.cfg
    tok = np.asarray(tokens, dtype=np.int64)
    T = tok.shape[0]
    pos = np.arange(T) if positions is None else np.asarray(positions)
    d, H, hd = cfg.d_model, cfg.n_head, cfg.head_dim

    def keep(name, v):
        if record is not None:
            record[name] = v

    x = nx.valu("add", nx.valu("mul", q.wte_e[tok], q.emb_m, 0, 32),
                nx.valu("mul", q.wpe_e[pos], q.pos_m, 0, 32), 0, 32)
    keep("embed", x)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    for i, L in enumerate(q.layers):
        a = nx.layernorm_int(x, L.ln1)
        qkv = nx.linear_requant(_matmul(a, L.qkv.w), L.qkv.bias, L.qkv.m, L.qkv.shift, 8)
        qq, kk, vv = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
        att = np.zeros((T, d), dtype=np.int64)
        for h in range(H):
            sl = slice(h * hd, (h + 1) * hd)
            scores = _matmul(qq[:, sl], kk[:, sl].T)
            e, z = nx.softmax_int(scores, future, L.softmax, axis=-1)
            o_acc = _matmul(e, vv[:, sl])
            att[:, sl] = nx.attention_normalise(o_acc, z, L.att_num, L.att_shift)
        t = nx.linear_requant(_matmul(att, L.proj.w), L.proj.bias, L.proj.m, L.proj.shift, 32)
        x = nx.valu("add", x, t, 0, 32)
        a2 = nx.layernorm_int(x, L.ln2)
        hid = nx.gelu_int(_matmul(a2, L.fc.w), L.fc.bias, L.fc.m, L.fc.shift, L.gelu_lut)
        t = nx.linear_requant(_matmul(hid, L.proj2.w), L.proj2.bias, L.proj2.m, L.proj2.shift,
                              32)
        x = nx.valu("add", x, t, 0, 32)
        keep(f"h.{i}.resid_out", x)
        keep(f"h.{i}.qkv", qkv)
    f = nx.layernorm_int(x, q.ln_f)
    acc = _matmul(f, q.head_w)
    return nx.valu("mul", acc, q.head_m, HEAD_SHIFT, 32)


def generate_int8(q: QuantizedGPT, prompt_tokens, n_new: int) -> list[int]:
    """Greedy decoding with the integer model and the float model's sliding-window rule."""
    seq = [int(t) for t in prompt_tokens]
    if not seq:
        raise ValueError("the prompt must hold at least one token")
    n = q.cfg.n_ctx
    for _ in range(n_new):
        window = np.asarray(seq[-n:], dtype=np.int64)
        seq.append(int(np.argmax(forward_int8(q, window)[-1])))
    return seq


def compare_quality(params: dict, q: QuantizedGPT, data: bytes) -> dict:
    """Float vs int8 on ``data``: bits per byte, top-1 accuracy, top-1 agreement."""
    cfg = q.cfg
    fl = evaluate(params, cfg, data)
    i8 = evaluate_logits_fn(lambda tok: forward_int8(q, tok) * q.logit_scale, data, cfg)
    agree = float(np.mean(fl.predictions == i8.predictions))
    return {
        "float_bpb": fl.bits_per_byte,
        "int8_bpb": i8.bits_per_byte,
        "bpb_increase": i8.bits_per_byte / fl.bits_per_byte - 1.0,
        "float_top1": fl.top1_accuracy,
        "int8_top1": i8.top1_accuracy,
        "top1_agreement": agree,
        "bytes": int(fl.targets.shape[0]),
    }
