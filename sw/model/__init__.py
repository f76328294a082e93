"""The tiny GPT: float NumPy reference model, corpus, checkpoints (training lives in .train)."""

from llmaccel.sw.model.checkpoint import CheckpointError, load_checkpoint, save_npz
from llmaccel.sw.model.gpt import GPTConfig, bits_per_byte, forward, generate

__all__ = [
    "CheckpointError",
    "GPTConfig",
    "bits_per_byte",
    "forward",
    "generate",
    "load_checkpoint",
    "save_npz",
]
