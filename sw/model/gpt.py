"""The tiny GPT: configuration, canonical parameters and the float NumPy reference forward pass.

This module is the *quality* reference of the project. The int8 golden model and the RTL are
bit-exact to each other, not to this file; this float model is what they are measured against
(held-out bits per byte, top-1 agreement). It is therefore written for clarity and numerical
safety: plain NumPy, float64 throughout, no caching.

Architecture (GPT-2, pre-LayerNorm)::

    x = wte[tokens] + wpe[0:T]                                   "embed"
    for each block i:
        a = ln_1(x)                                              "h.i.ln_1"
        q, k, v = split(a @ c_attn.W + c_attn.b)                 "h.i.q/k/v"
        s = q_h @ k_h.T / sqrt(head_dim)   (per head)            "h.i.scores"  (before masking)
        p = softmax(causal_mask(s))
        o = concat_h(p @ v_h)                                    "h.i.attn"
        x = x + (o @ c_proj.W + c_proj.b)                        "h.i.attn_out", "h.i.resid_mid"
        m = ln_2(x)                                              "h.i.ln_2"
        f = m @ c_fc.W + c_fc.b                                  "h.i.fc"
        g = gelu_tanh(f)                                         "h.i.gelu"
        x = x + (g @ mlp.c_proj.W + mlp.c_proj.b)                "h.i.mlp_out", "h.i.resid_out"
    logits = ln_f(x) @ wte.T                                     "ln_f", "logits"

Weights use the Hugging Face GPT-2 ``Conv1D`` orientation, ``y = x @ W + b`` with ``W`` of shape
``(in, out)``, and the GPT-2 tensor names (without the ``transformer.`` prefix). The vocabulary is
bytes: token ``t`` is the byte value ``t``, so there is no tokenizer.

Speed: one 128-token window costs about 9 ms with single-threaded BLAS. The matrices are so
small that OpenBLAS's extra threads only add synchronisation; on a busy machine their
spin-waiting made evaluation 10-20x slower, so run long evaluations with
``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LN_EPS",
    "EvalResult",
    "EvalWindow",
    "GPTConfig",
    "bits_per_byte",
    "eval_windows",
    "evaluate",
    "evaluate_logits_fn",
    "expected_shapes",
    "forward",
    "gelu_tanh",
    "generate",
    "init_params",
    "layer_norm",
    "top1_predictions",
]

#: LayerNorm epsilon, as in GPT-2.
LN_EPS = 1e-5

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2-style model.

    Parameters
    ----------
    vocab_size:
        Number of token ids. 256 for the byte-level tiny GPT.
    n_ctx:
        Maximum sequence length (rows of the position embedding).
    d_model:
        Width of the residual stream.
    n_layer:
        Number of transformer blocks.
    n_head:
        Number of attention heads; must divide ``d_model``.
    """

    vocab_size: int = 256
    n_ctx: int = 128
    d_model: int = 64
    n_layer: int = 4
    n_head: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_ctx", "d_model", "n_layer", "n_head"):
            value = getattr(self, name)
            # bool is an int subclass; GPTConfig(n_layer=True) is certainly a mistake.
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"d_model must be a multiple of n_head, not d_model={self.d_model!r} "
                f"with n_head={self.n_head!r}"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``d_model // n_head``."""
        return self.d_model // self.n_head

    @property
    def d_ff(self) -> int:
        """Hidden width of the MLP, ``4 * d_model`` as in GPT-2."""
        return 4 * self.d_model

    def to_dict(self) -> dict[str, int]:
        """The five fields as plain ints (for JSON sidecars and metadata)."""
        return {
            "vocab_size": int(self.vocab_size),
            "n_ctx": int(self.n_ctx),
            "d_model": int(self.d_model),
            "n_layer": int(self.n_layer),
            "n_head": int(self.n_head),
        }


def expected_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Canonical tensor names and their shapes, in a stable order (embeddings, blocks, ln_f)."""
    d, ff = cfg.d_model, cfg.d_ff
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (cfg.vocab_size, d),
        "wpe.weight": (cfg.n_ctx, d),
    }
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        shapes[p + "ln_1.weight"] = (d,)
        shapes[p + "ln_1.bias"] = (d,)
        shapes[p + "attn.c_attn.weight"] = (d, 3 * d)
        shapes[p + "attn.c_attn.bias"] = (3 * d,)
        shapes[p + "attn.c_proj.weight"] = (d, d)
        shapes[p + "attn.c_proj.bias"] = (d,)
        shapes[p + "ln_2.weight"] = (d,)
        shapes[p + "ln_2.bias"] = (d,)
        shapes[p + "mlp.c_fc.weight"] = (d, ff)
        shapes[p + "mlp.c_fc.bias"] = (ff,)
        shapes[p + "mlp.c_proj.weight"] = (ff, d)
        shapes[p + "mlp.c_proj.bias"] = (d,)
    shapes["ln_f.weight"] = (d,)
    shapes["ln_f.bias"] = (d,)
    return shapes


def init_params(cfg: GPTConfig, seed: int = 0, std: float = 0.02) -> Params:
    """Random GPT-2-style parameters (normal weights, unit LayerNorm gains, zero biases).

    Useful for tests and as a shape template; the training script initialises in torch.
    """
    rng = np.random.default_rng(seed)
    params: Params = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
            params[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, np.float32)
        else:
            params[name] = rng.normal(0.0, std, shape).astype(np.float32)
    return params


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis with biased variance and ``eps = 1e-5`` (torch semantics)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * weight + bias


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU with GPT-2's tanh approximation (torch ``approximate="tanh"``)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _check_tokens(tokens: np.ndarray | list[int], cfg: GPTConfig) -> np.ndarray:
    tok = np.asarray(tokens)
    if tok.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence, not an array of shape {tok.shape}")
    if not 1 <= tok.shape[0] <= cfg.n_ctx:
        raise ValueError(f"tokens must have length 1..{cfg.n_ctx} (n_ctx), not {tok.shape[0]}")
    if tok.dtype.kind not in "iu":
        raise ValueError(f"tokens must be integers, not dtype {tok.dtype}")
    if tok.min() < 0 or tok.max() >= cfg.vocab_size:
        raise ValueError(
            f"token ids must lie in 0..{cfg.vocab_size - 1}, found {tok.min()}..{tok.max()}"
        )
    return tok.astype(np.int64)


def forward(
    params: Params,
    cfg: GPTConfig,
    tokens: np.ndarray | list[int],
    record: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Logits of shape ``(T, vocab_size)`` in float64 for a 1-D token sequence of length T ≤ n_ctx.

    Row ``t`` of the result is the model's prediction for token ``t + 1``; it depends only on
    ``tokens[: t + 1]`` (causal attention).

    If ``record`` is a dict, the intermediates named in the module docstring are stored in it
    (float64 copies) so that the int8 quantiser can calibrate activation scales on exactly the
    tensors its instructions produce.
    """
    tok = _check_tokens(tokens, cfg)
    batch_record: dict[str, np.ndarray] | None = {} if record is not None else None
    logits = _forward_batch(_as_float64(params), cfg, tok[None, :], batch_record)
    if record is not None and batch_record is not None:
        record.update({name: value[0] for name, value in batch_record.items()})
    return logits[0]


def _as_float64(params: Params) -> Params:
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def _forward_batch(
    P: Params, cfg: GPTConfig, tok: np.ndarray, record: dict[str, np.ndarray] | None
) -> np.ndarray:
    """:func:`forward` on a ``(B, T)`` batch of checked tokens with float64 params ``P``.

    Batching only stacks independent sequences (every operation is per row or per sequence),
    so row ``b`` of the result is ``forward`` of ``tok[b]``; it exists to make evaluation over
    hundreds of windows fast.
    """
    B, T = tok.shape
    d, H, hd = cfg.d_model, cfg.n_head, cfg.head_dim

    def keep(name: str, value: np.ndarray) -> None:
        if record is not None:
            record[name] = value.copy()

    def heads(t: np.ndarray) -> np.ndarray:
        # (B, T, d) -> (B, H, T, hd): head h owns columns h*hd:(h+1)*hd of q, k and v.
        return t.reshape(B, T, H, hd).transpose(0, 2, 1, 3)

    x = P["wte.weight"][tok] + P["wpe.weight"][:T]
    keep("embed", x)
    # Entries above the diagonal are future positions; -inf makes their softmax weight exactly 0.
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        a = layer_norm(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        keep(p + "ln_1", a)
        qkv = a @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        keep(p + "q", q)
        keep(p + "k", k)
        keep(p + "v", v)
        scores = heads(q) @ heads(k).transpose(0, 1, 3, 2) / math.sqrt(hd)
        keep(p + "scores", scores)
        probs = _softmax(np.where(future, -np.inf, scores))
        o = (probs @ heads(v)).transpose(0, 2, 1, 3).reshape(B, T, d)
        keep(p + "attn", o)
        attn_out = o @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        keep(p + "attn_out", attn_out)
        x = x + attn_out
        keep(p + "resid_mid", x)
        m = layer_norm(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        keep(p + "ln_2", m)
        f = m @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"]
        keep(p + "fc", f)
        g = gelu_tanh(f)
        keep(p + "gelu", g)
        mlp_out = g @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
        keep(p + "mlp_out", mlp_out)
        x = x + mlp_out
        keep(p + "resid_out", x)
    y = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])
    keep("ln_f", y)
    logits = y @ P["wte.weight"].T
    keep("logits", logits)
    return logits


def generate(
    params: Params, cfg: GPTConfig, prompt_tokens: np.ndarray | list[int], n_new: int
) -> list[int]:
    """Greedy decoding: append ``n_new`` tokens, each the argmax of the last row of logits.

    Ties go to the lowest token id (``np.argmax`` returns the first maximum). When the sequence
    is longer than ``n_ctx``, the model sees only its last ``n_ctx`` tokens (a sliding window;
    positions restart at 0 for the window's first token). Returns prompt + new tokens.
    """
    if n_new < 0:
        raise ValueError(f"n_new must be non-negative, not {n_new!r}")
    seq = [int(t) for t in np.asarray(prompt_tokens).reshape(-1)]
    if not seq:
        raise ValueError("prompt_tokens must hold at least one token")
    for _ in range(n_new):
        window = np.asarray(seq[-cfg.n_ctx :], dtype=np.int64)
        logits = forward(params, cfg, window)
        seq.append(int(np.argmax(logits[-1])))
    return seq


# --------------------------------------------------------------------------------------------
# Evaluation on byte strings


@dataclass(frozen=True)
class EvalWindow:
    """One evaluation window.

    ``inputs`` are fed to the model; ``targets[t]`` is the byte that follows ``inputs[t]``.
    Only positions ``t >= first_scored`` are counted, so that with overlapping windows every
    byte of the data is scored exactly once.
    """

    inputs: np.ndarray
    targets: np.ndarray
    first_scored: int


def eval_windows(data: bytes, cfg: GPTConfig, stride: int | None = None) -> Iterator[EvalWindow]:
    """Windows that score every byte of ``data`` except the first exactly once.

    With ``stride=None`` (the default, ``stride = n_ctx``) the scored positions of the windows
    do not overlap: window ``j`` holds inputs ``data[j*n_ctx : (j+1)*n_ctx]`` and predicts the
    byte after each, so a byte's context ranges from 1 to ``n_ctx`` bytes depending on where
    the window boundary falls. A final partial chunk is scored with a window reaching back a
    full ``n_ctx`` bytes (``first_scored > 0``), so every window but a too-short input's is
    ``n_ctx`` long. A smaller stride gives every byte after the first window more than
    ``n_ctx - stride`` bytes of context, at about ``n_ctx / stride`` times the cost: each later
    window ends ``stride`` bytes after the previous one, reaches back ``n_ctx`` bytes, and only
    its last ``stride`` targets are scored. The final window may score fewer.
    """
    n = cfg.n_ctx
    stride = n if stride is None else stride
    if not 1 <= stride <= n:
        raise ValueError(f"stride must lie in 1..{n} (n_ctx), not {stride!r}")
    arr = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    last = arr.shape[0] - 1  # input positions 0..last-1 each predict the byte after them
    if last < 1:
        raise ValueError("data must hold at least 2 bytes to score a prediction")
    # Score input positions [a, b) in chunks: the first chunk fills a whole window, later chunks
    # are `stride` long and each sits at the end of a window reaching back n_ctx positions.
    a, b = 0, min(n, last)
    while a < last:
        lo = max(0, b - n)
        yield EvalWindow(arr[lo:b], arr[lo + 1 : b + 1], a - lo)
        a, b = b, min(b + stride, last)


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`: mean cross-entropy in bits and top-1 predictions.

    ``predictions`` and ``targets`` list the scored positions in data order.
    """

    bits_per_byte: float
    predictions: np.ndarray
    targets: np.ndarray

    @property
    def top1_accuracy(self) -> float:
        """Fraction of scored bytes the model predicted exactly."""
        return float(np.mean(self.predictions == self.targets))


class _Scorer:
    """Accumulates cross-entropy and argmax over the scored rows of successive windows."""

    def __init__(self) -> None:
        self.nats = 0.0
        self.preds: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, window: EvalWindow, logits: np.ndarray) -> None:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != (window.inputs.shape[0], logits.shape[-1]):
            raise ValueError(
                f"logits must have shape ({window.inputs.shape[0]}, vocab), not {logits.shape}"
            )
        logits = logits[window.first_scored :]
        t = window.targets[window.first_scored :]
        mx = logits.max(axis=-1, keepdims=True)
        logz = mx[:, 0] + np.log(np.exp(logits - mx).sum(axis=-1))
        self.nats += float(np.sum(logz - logits[np.arange(t.shape[0]), t]))
        self.preds.append(np.argmax(logits, axis=-1))
        self.targets.append(t)

    def result(self) -> EvalResult:
        targets = np.concatenate(self.targets)
        return EvalResult(
            bits_per_byte=self.nats / targets.shape[0] / math.log(2.0),
            predictions=np.concatenate(self.preds),
            targets=targets,
        )


def evaluate_logits_fn(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    data: bytes,
    cfg: GPTConfig,
    stride: int | None = None,
) -> EvalResult:
    """Evaluate any model given as ``logits_fn(tokens) -> (T, vocab) logits`` on ``data``.

    The float model, the int8 golden model and the hardware backends all go through the same
    windows and scoring, so their bits-per-byte and top-1 figures are measured on identical
    positions. Logits are converted to float64 before the log-softmax.
    """
    scorer = _Scorer()
    for w in eval_windows(data, cfg, stride):
        scorer.add(w, logits_fn(w.inputs))
    return scorer.result()


def evaluate(
    params: Params, cfg: GPTConfig, data: bytes, stride: int | None = None, batch: int = 32
) -> EvalResult:
    """Bits per byte and top-1 predictions of the float model over :func:`eval_windows`.

    Equal to ``evaluate_logits_fn(lambda t: forward(params, cfg, t), ...)``, but runs up to
    ``batch`` equal-length windows per NumPy call, which is several times faster.
    """
    P = _as_float64(params)
    scorer = _Scorer()
    pending: list[EvalWindow] = []

    def flush() -> None:
        logits = _forward_batch(P, cfg, np.stack([w.inputs for w in pending]), None)
        for w, rows in zip(pending, logits, strict=True):
            scorer.add(w, rows)
        pending.clear()

    for w in eval_windows(data, cfg, stride):
        if pending and (len(pending) == batch or pending[0].inputs.shape != w.inputs.shape):
            flush()
        pending.append(w)
    flush()
    return scorer.result()


def bits_per_byte(params: Params, cfg: GPTConfig, data: bytes, stride: int | None = None) -> float:
    """Mean next-byte cross-entropy in bits over ``data`` (windows as in :func:`eval_windows`)."""
    return evaluate(params, cfg, data, stride).bits_per_byte


def top1_predictions(
    params: Params, cfg: GPTConfig, data: bytes, stride: int | None = None
) -> np.ndarray:
    """Argmax predictions at every scored position of :func:`eval_windows`, in data order."""
    return evaluate(params, cfg, data, stride).predictions
