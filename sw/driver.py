"""Text generation on a backend: load the image once, run prefill, then one program per token.

The host only writes the prompt (int32 token ids) and reads the token each program leaves in
DRAM; the embedding lookups, every layer and the argmax run on the accelerator. When the
sequence outgrows the context, the next step re-runs prefill on the last ``n_ctx`` tokens — the
same sliding window as the float and int8 references' ``generate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.errors import LlmaccelError
from llmaccel.sim.backends import Backend, BackendRun

__all__ = ["DEFAULT_WEIGHTS", "GenerationResult", "Generator", "load_model"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "model" / "weights" / "tiny_gpt.npz"


def load_model(checkpoint: str | Path | None = None, *, calib_bytes: int | None = None):
    """Load a checkpoint (default: the shipped tiny GPT) and quantise it.

    Activation scales are calibrated on the training split of the project's corpus.
    Returns ``(params, quantized_model)``.
    """
    from llmaccel.sw.model.checkpoint import load_checkpoint  # noqa: PLC0415
    from llmaccel.sw.model.corpus import train_split  # noqa: PLC0415
    from llmaccel.sw.model.int8 import quantize_model  # noqa: PLC0415

    path = Path(checkpoint) if checkpoint else DEFAULT_WEIGHTS
    if not path.exists():
        raise LlmaccelError(f"checkpoint {path} does not exist")
    params, mcfg = load_checkpoint(path)
    data = train_split()
    if calib_bytes:
        data = data[:calib_bytes]
    return params, quantize_model(params, mcfg, data)


@dataclass
class StepStats:
    kind: str
    position: int
    cycles: int
    counters: dict
    start_cycle: int | None = None


@dataclass
class GenerationResult:
    tokens: list[int]                       # generated token ids (prompt excluded)
    prompt_tokens: list[int]
    backend: str
    steps: list[StepStats] = field(default_factory=list)
    compulsory_dram_bytes: int = 0
    planned_dram_bytes: int = 0
    wall_seconds: float = 0.0
    cycles_source: str = "model"

    @property
    def text(self) -> str:
        return bytes(self.tokens).decode("utf-8", errors="replace")

    @property
    def prefill_cycles(self) -> int:
        return sum(s.cycles for s in self.steps if s.kind == "prefill")

    @property
    def decode_cycles(self) -> list[int]:
        return [s.cycles for s in self.steps if s.kind == "decode"]

    @property
    def decode_cycles_per_token(self) -> float:
        d = self.decode_cycles
        return float(np.mean(d)) if d else 0.0

    def _sum(self, key: str, kind: str | None = None) -> int:
        return sum(int(s.counters.get(key, 0)) for s in self.steps
                   if kind is None or s.kind == kind)

    @property
    def dram_bytes(self) -> int:
        return self._sum("dram_read_bytes") + self._sum("dram_write_bytes")

    def mac_utilization(self, cfg: AccelConfig) -> float:
        """Prefill GEMM utilisation: useful MACs / (R·C·GEMM busy cycles)."""
        macs = self._sum("gemm_macs", "prefill")
        busy = sum(int(s.counters.get("busy", {}).get("GEMM", 0)) for s in self.steps
                   if s.kind == "prefill")
        return macs / (cfg.array_rows * cfg.array_cols * busy) if busy else 0.0

    def busy_share(self, kind: str) -> dict[str, float]:
        cycles = sum(s.cycles for s in self.steps if s.kind == kind)
        out = {}
        for s in self.steps:
            if s.kind != kind:
                continue
            for u, v in s.counters.get("busy", {}).items():
                out[u] = out.get(u, 0) + v
        return {u: v / cycles for u, v in out.items()} if cycles else {}

    def as_json(self, cfg: AccelConfig) -> dict:
        return {
            "text": self.text,
            "tokens": self.tokens,
            "backend": self.backend,
            "prefill_cycles": self.prefill_cycles,
            "decode_cycles_per_token": self.decode_cycles_per_token,
            "mac_utilization": self.mac_utilization(cfg),
            "dram_bytes": self.dram_bytes,
            "compulsory_dram_bytes": self.compulsory_dram_bytes,
            "wall_seconds": self.wall_seconds,
            "cycles_source": self.cycles_source,
            "prompt_tokens": self.prompt_tokens,
            "decode_cycles": self.decode_cycles,
        }


class Generator:
    """Runs a compiled model on a backend. ``on_run(info, run)``, when given, is called after
    every program with its :class:`~llmaccel.sw.compiler.gpt.ProgramInfo` and
    :class:`~llmaccel.sim.backends.BackendRun` (``llmaccel profile`` uses it)."""

    def __init__(self, compiled, backend: Backend,
                 on_run: Callable[[object, BackendRun], None] | None = None):
        self.c = compiled
        self.backend = backend
        self.on_run = on_run
        self._loaded = False

    def _ensure_image(self) -> None:
        if not self._loaded:
            self.backend.load_dram(0, self.c.image)
            self._loaded = True

    def _run(self, info) -> tuple[BackendRun, int]:
        self.backend.load_dram(info.base, info.binary)
        run = self.backend.run(info.base)
        if self.on_run is not None:
            self.on_run(info, run)
        if not run.ok:
            raise LlmaccelError(f"the accelerator stopped with {run.error.name} at pc "
                                f"{run.error_pc:#x} in the {info.kind} program: {run.message}")
        tok = int(np.frombuffer(self.backend.read_dram(info.out_token_addr, 4), "<i4")[0])
        return run, tok

    def _prefill(self, window: list[int]) -> list:
        self.backend.load_dram(self.c.r_prompt.addr, np.asarray(window, "<i4").tobytes())
        if self.c.host_constants:
            # The constant table lives in ACC, not in the image: the first prefill program
            # loads the lookup tables from it, and decode programs reuse their space after.
            self.backend.load_acc(0, self.c.const_data)
        return self.c.prefill_programs(len(window))

    def generate(self, prompt: list[int], n_new: int,
                 progress: Callable[[int], None] | None = None) -> GenerationResult:
        m = self.c.mcfg
        if not prompt:
            raise LlmaccelError("the prompt is empty; give at least one byte")
        if any(not 0 <= t < m.vocab_size for t in prompt):
            raise LlmaccelError(f"prompt token ids must lie in 0..{m.vocab_size - 1}")
        if n_new < 0:
            raise LlmaccelError(f"the number of new tokens must be ≥ 0, not {n_new}")
        t0 = time.perf_counter()
        self._ensure_image()
        res = GenerationResult(tokens=[], prompt_tokens=list(prompt), backend=self.backend.name)
        seq = list(prompt)
        if n_new == 0:
            res.wall_seconds = time.perf_counter() - t0
            return res
        programs = self._prefill(seq[-m.n_ctx:])
        while True:
            for info in programs:
                run, tok = self._run(info)
                res.cycles_source = run.cycles_source
                res.steps.append(StepStats(info.kind, info.position, run.cycles, run.counters,
                                           run.start_cycle))
                res.compulsory_dram_bytes += info.traffic.compulsory
                res.planned_dram_bytes += info.traffic.total
            seq.append(tok)
            res.tokens.append(tok)
            if progress:
                progress(len(res.tokens))
            if len(res.tokens) >= n_new:
                break
            pos = len(seq) - 1
            programs = [self.c.decode(pos)] if pos < m.n_ctx else self._prefill(seq[-m.n_ctx:])
        res.wall_seconds = time.perf_counter() - t0
        return res
