"""Train the tiny GPT on the pydoc corpus with PyTorch on CPU and ship the weights.

Run ``python -m llmaccel.sw.model.train --help``. The defaults are exactly the run that produced
``sw/model/weights/tiny_gpt.npz``; its metadata (command line, seed, loss log, held-out bits per
byte measured with the NumPy forward of :mod:`llmaccel.sw.model.gpt`, torch and Python
versions, corpus SHA-256, wall time) is written next to it as ``tiny_gpt.json``.

The torch module here is the same architecture as the NumPy reference, with the same parameter
names and the ``Conv1D`` ``(in, out)`` weight orientation, so its ``state_dict`` *is* the
canonical parameter dict. ``tests/sw/test_model.py`` checks the two forwards agree.

Threads: the default is one torch thread although the machine has two cores. The matrices are
small (batch 32 × 128 tokens × width 64), so a second intra-op thread buys at most ~1.7x when
the machine is idle, and when anything else runs (CI, a simulator, another training) the two
threads spin at every barrier: while the shipped run was made, other jobs kept the load at 4-8
and a 2-thread run managed under 1.1 steps/s against 2.7-5 steps/s for one thread.
``--threads 2`` is there for an idle machine; its weights differ from the shipped ones by float
rounding (summation order), so they are not bit-identical.

Training needs the ``train`` extra (``torch``); nothing else in the project imports this file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch convention)

from llmaccel.sw.model import corpus
from llmaccel.sw.model.checkpoint import save_npz
from llmaccel.sw.model.gpt import LN_EPS, GPTConfig, eval_windows, evaluate, expected_shapes

__all__ = ["TorchGPT", "main", "to_numpy_params", "train"]

DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "tiny_gpt.npz"


class Conv1D(nn.Module):
    """GPT-2's linear layer: ``y = x @ weight + bias`` with ``weight`` of shape ``(in, out)``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], self.weight.shape[1]
        )


class Attention(nn.Module):
    """Causal multi-head self-attention; c_attn columns are [q | k | v], heads contiguous.

    ``dropout`` (on the output, training only) is a regulariser; in eval mode the module
    computes exactly the NumPy reference. The attention weights are not dropped: dropout inside
    ``scaled_dot_product_attention`` forces its slow path and made a training step 2.3x slower.
    """

    def __init__(self, cfg: GPTConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_attn = Conv1D(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = Conv1D(cfg.d_model, cfg.d_model)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        H, hd = self.cfg.n_head, self.cfg.head_dim
        q, k, v = self.c_attn(x).split(d, dim=-1)
        q, k, v = (t.view(B, T, H, hd).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(hd)
        return self.resid_drop(self.c_proj(o.transpose(1, 2).reshape(B, T, d)))


class MLP(nn.Module):
    """c_fc → GELU (tanh approximation) → c_proj."""

    def __init__(self, cfg: GPTConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.c_fc = Conv1D(cfg.d_model, cfg.d_ff)
        self.c_proj = Conv1D(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: GPTConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.attn = Attention(cfg, dropout)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=LN_EPS)
        self.mlp = MLP(cfg, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    """The tiny GPT in torch; ``state_dict()`` keys and shapes equal ``expected_shapes(cfg)``.

    ``dropout`` applies in training mode only, to the embeddings and both residual branches
    (GPT-2 also drops attention weights; see :class:`Attention` for why this does not);
    ``model.eval()`` is the exact float reference architecture.
    """

    def __init__(self, cfg: GPTConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(cfg, dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=LN_EPS)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2·n_layer)."""
        for name, p in self.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight")) or name == "ln_f.weight":
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                std = 0.02
                if name.endswith("c_proj.weight"):
                    std /= math.sqrt(2 * self.cfg.n_layer)
                with torch.no_grad():
                    p.normal_(0.0, std, generator=generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab)`` for int64 tokens ``(B, T)``; the LM head is tied to wte."""
        T = tokens.shape[1]
        x = self.drop(self.wte(tokens) + self.wpe(torch.arange(T, device=tokens.device)))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T

    def load_numpy(self, params: dict[str, np.ndarray]) -> None:
        """Copy canonical NumPy params into this module (used by the equivalence test)."""
        self.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()})


def to_numpy_params(model: TorchGPT) -> dict[str, np.ndarray]:
    """The canonical float32 parameter dict of a :class:`TorchGPT`."""
    state = model.state_dict()
    shapes = expected_shapes(model.cfg)
    if set(state) != set(shapes):
        raise RuntimeError(f"state_dict keys differ from canonical: {set(state) ^ set(shapes)}")
    return {k: state[k].detach().cpu().numpy().astype(np.float32).copy() for k in shapes}


def _lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warmup to ``lr`` over ``warmup`` steps, then cosine decay to ``min_lr``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def _torch_bits_per_byte(model: TorchGPT, data: bytes) -> float:
    """Held-out bits/byte over the same windows as ``gpt.bits_per_byte`` (batched in torch)."""
    model.eval()
    windows = list(eval_windows(data, model.cfg))
    total, count = 0.0, 0
    full = [w for w in windows if w.inputs.shape[0] == model.cfg.n_ctx]
    rest = [w for w in windows if w.inputs.shape[0] != model.cfg.n_ctx]
    for group in [full[i : i + 64] for i in range(0, len(full), 64)] + [[w] for w in rest]:
        x = torch.from_numpy(np.stack([w.inputs for w in group]))
        y = torch.from_numpy(np.stack([w.targets for w in group]))
        logits = model(x)
        nats = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
        scored = torch.arange(y.shape[1])[None, :] >= torch.tensor(
            [w.first_scored for w in group])[:, None]
        total += nats[scored].sum().item()
        count += int(scored.sum().item())
    model.train()
    return total / count / math.log(2.0)


def _display_path(path: Path) -> str:
    """``path`` relative to the repository root if inside it, so no machine paths reach JSON."""
    root = Path(__file__).resolve().parents[2]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def train(args: argparse.Namespace) -> dict[str, object]:
    """Run the training described by ``args``; save weights and JSON; return the metadata."""
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    rng = np.random.default_rng(args.seed)  # the only source of training-window offsets
    cfg = GPTConfig(n_ctx=args.n_ctx, d_model=args.d_model, n_layer=args.n_layer,
                    n_head=args.n_head)

    train_data = np.frombuffer(corpus.train_split(), dtype=np.uint8).astype(np.int64)
    heldout = corpus.heldout_split()
    model = TorchGPT(cfg, dropout=args.dropout)
    model.reset_parameters(torch.Generator().manual_seed(args.seed))
    n_params = sum(p.numel() for p in model.parameters())

    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    print(f"config {cfg.to_dict()}, {n_params} parameters, train {len(train_data)} bytes, "
          f"held-out {len(heldout)} bytes, torch {torch.__version__}, {args.threads} threads",
          flush=True)

    log: list[dict[str, float]] = []
    window = np.arange(cfg.n_ctx + 1)
    recent: list[float] = []
    loss_val = float("nan")
    for step in range(args.steps):
        lr = _lr_at(step, args)
        for group in opt.param_groups:
            group["lr"] = lr
        starts = rng.integers(0, len(train_data) - cfg.n_ctx - 1, size=args.batch)
        batch = torch.from_numpy(train_data[starts[:, None] + window])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        loss_val = loss.item()
        recent.append(loss_val)

        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            train_bpb = float(np.mean(recent)) / math.log(2.0)
            held_bpb = _torch_bits_per_byte(model, heldout)
            elapsed = time.perf_counter() - t_start
            cpu = time.process_time() - cpu_start
            log.append({"step": step + 1, "lr": lr, "train_bits_per_byte": train_bpb,
                        "heldout_bits_per_byte": held_bpb, "elapsed_s": elapsed,
                        "cpu_s": cpu})
            print(f"step {step + 1:6d}  lr {lr:.2e}  train {train_bpb:.4f} bpb  "
                  f"held-out {held_bpb:.4f} bpb  {elapsed:7.1f} s  (cpu {cpu:7.1f} s)",
                  flush=True)
            recent = []

    params = to_numpy_params(model)
    out = Path(args.out)
    save_npz(out, params, cfg)
    result = evaluate(params, cfg, heldout)
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start
    meta: dict[str, object] = {
        "config": cfg.to_dict(),
        "command": " ".join(["python -m llmaccel.sw.model.train", shlex.join(args.argv)]).strip(),
        "args": {k: _display_path(v) if isinstance(v, Path) else v
                 for k, v in vars(args).items() if k != "argv"},
        "seed": args.seed,
        "steps": args.steps,
        "n_params": n_params,
        "final_train_loss_nats": loss_val,
        "final_train_bits_per_byte": log[-1]["train_bits_per_byte"],
        "heldout_bits_per_byte": result.bits_per_byte,
        "heldout_top1_accuracy": result.top1_accuracy,
        "heldout_eval": "NumPy float64 forward, non-overlapping n_ctx windows (gpt.eval_windows)",
        "log": log,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": args.threads,
        "corpus": corpus.corpus_info(),
        "wall_time_s": wall,
        # CPU seconds of this process over all threads; on a shared machine wall time also
        # counts the time other processes held the cores.
        "cpu_time_s": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }
    meta_path = out.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"saved {out} and {meta_path}; held-out {result.bits_per_byte:.4f} bits/byte "
          f"(NumPy forward), top-1 {result.top1_accuracy:.3f}, wall {wall:.0f} s, "
          f"cpu {cpu:.0f} s", flush=True)
    return meta


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every default is the shipped run's setting."""
    p = argparse.ArgumentParser(
        prog="python -m llmaccel.sw.model.train",
        description="Train the tiny byte-level GPT on CPython's pydoc topics (PyTorch, CPU). "
        "Defaults reproduce sw/model/weights/tiny_gpt.npz.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--steps", type=int, default=5000, help="optimizer steps")
    p.add_argument("--batch", type=int, default=32, help="random n_ctx windows per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=3e-4, help="learning rate at the end of decay")
    p.add_argument("--warmup", type=int, default=300, help="linear warmup steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of 2-D weights")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout while training")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    p.add_argument("--seed", type=int, default=1234, help="seeds torch, NumPy and window sampling")
    p.add_argument("--eval-every", type=int, default=500, help="steps between held-out evals")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: see the module docstring)")
    p.add_argument("--n-ctx", type=int, default=128, help="context length")
    p.add_argument("--d-model", type=int, default=64, help="residual width")
    p.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
    p.add_argument("--n-head", type=int, default=4, help="attention heads")
    p.add_argument("--out", type=Path, default=None,
                   help="output .npz, metadata goes to the same name with .json "
                   "(default: the shipped sw/model/weights/tiny_gpt.npz)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m llmaccel.sw.model.train``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.out is None:
        args.out = DEFAULT_OUT
    if args.out.suffix != ".npz":
        print(f"error: --out must end in .npz, not {args.out.name!r}", file=sys.stderr)
        return 2
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
