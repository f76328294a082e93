"""Checkpoint I/O for the tiny GPT: ``.npz`` and ``.safetensors``, canonical or GPT-2/nanoGPT names.

Canonical form (what :func:`load_checkpoint` returns and :func:`save_npz` writes): the float32
tensors of :func:`llmaccel.sw.model.gpt.expected_shapes`, GPT-2 names without a prefix,
Hugging Face ``Conv1D`` orientation (``W`` of shape ``(in, out)``, ``y = x @ W + b``).

Accepted on load, in addition:

* a ``transformer.`` prefix on every name (Hugging Face ``GPT2LMHeadModel`` / nanoGPT);
* ``lm_head.weight``, which must equal ``wte.weight`` (the head is tied; a different head is an
  error because the accelerator computes logits with ``wte``);
* nanoGPT / ``nn.Linear`` orientation ``(out, in)``: detected from the non-square ``c_attn`` and
  ``c_fc`` weights, and then *all* linear weights (including the square ``attn.c_proj``) are
  transposed, so one file is never half in one orientation;
* the non-parameter buffers ``attn.bias`` (causal mask) and ``attn.masked_bias``, ignored;
* no biases at all (nanoGPT ``bias=False``): every bias becomes zeros and LayerNorm has no shift.
  Biases are all present or all absent; a mix is an error.

The configuration is taken, in order, from the ``cfg`` argument, from the metadata this module
writes into the file (``__config__`` in an npz, the ``config`` metadata key in safetensors), from
a JSON sidecar ``<file>.json`` with a ``config`` object (or ``n_head``/``n_layer``… at top level),
and otherwise inferred from the shapes: ``vocab_size``/``d_model`` from ``wte``, ``n_ctx`` from
``wpe``, ``n_layer`` from the block indices. ``n_head`` cannot be seen in any shape; without
metadata it defaults to 4 (the tiny GPT's value) — pass ``cfg`` for other models.

Every problem a user can cause raises :class:`CheckpointError` naming the file or the tensor.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from llmaccel.sw.model.gpt import GPTConfig, expected_shapes

__all__ = [
    "DEFAULT_N_HEAD",
    "CheckpointError",
    "canonicalize",
    "load_checkpoint",
    "save_npz",
    "save_safetensors",
]

#: n_head assumed when neither the caller nor the file's metadata gives one.
DEFAULT_N_HEAD = 4

#: Key under which :func:`save_npz` stores the configuration (JSON, as a uint8 array).
CONFIG_KEY = "__config__"

_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_LINEAR_WEIGHTS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_BLOCK_RE = re.compile(r"^h\.(\d+)\.")


class CheckpointError(ValueError):
    """A checkpoint file or parameter dict that cannot be used, with the reason in the message."""


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(s) for s in shape))


# --------------------------------------------------------------------------------------------
# Reading raw tensors


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    try:
        # Opening the file here, not in np.load, closes it even when the zip is corrupt (np.load
        # leaks its own handle then, which shows up as a ResourceWarning).
        with open(path, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array, not named tensors")
            with z:
                raw = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: not a valid .npz file ({type(e).__name__}: {e})") from e
    meta: dict[str, object] = {}
    if CONFIG_KEY in raw:
        blob = raw.pop(CONFIG_KEY)
        try:
            meta = json.loads(blob.astype(np.uint8).tobytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: {CONFIG_KEY} is not valid JSON ({e})") from e
    return raw, meta


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    try:
        raw = load_file(str(path))
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own SafetensorError and OSError variants
        raise CheckpointError(
            f"{path}: not a valid .safetensors file ({type(e).__name__}: {e})"
        ) from e
    meta: dict[str, object] = {}
    if "config" in header:
        try:
            meta = json.loads(header["config"])
        except ValueError as e:
            raise CheckpointError(f"{path}: metadata 'config' is not valid JSON ({e})") from e
    return raw, meta


def _read_sidecar(path: Path) -> dict[str, object]:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{sidecar}: sidecar JSON cannot be read ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{sidecar}: sidecar JSON must be an object")
    return data


def _config_from_meta(meta: dict[str, object]) -> dict[str, int]:
    """The config fields found in a metadata object (``{"config": {...}}`` or top-level keys)."""
    src = meta.get("config", meta)
    if not isinstance(src, dict):
        return {}
    fields = ("vocab_size", "n_ctx", "d_model", "n_layer", "n_head")
    return {k: src[k] for k in fields if k in src and isinstance(src[k], int)}


# --------------------------------------------------------------------------------------------
# Canonicalisation


def _strip_names(raw: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """Drop the ``transformer.`` prefix and the known buffers; keep ``lm_head.weight`` aside."""
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        short = name.removeprefix("transformer.")
        if short.endswith(_IGNORED_SUFFIXES):
            continue
        if short in out:
            raise CheckpointError(
                f"{origin}: tensor {short} appears twice (with and without the prefix)"
            )
        out[short] = np.asarray(value)
    return out


def _infer_config(tensors: dict[str, np.ndarray], meta: dict[str, int], origin: str) -> GPTConfig:
    for name in ("wte.weight", "wpe.weight"):
        if name not in tensors:
            raise CheckpointError(
                f"{origin}: missing tensor {name}; cannot infer the model configuration"
            )
        if tensors[name].ndim != 2:
            raise CheckpointError(
                f"{origin}: {name} has shape {_shape(tensors[name].shape)}, expected 2 dimensions"
            )
    vocab, d = tensors["wte.weight"].shape
    layers = {int(m.group(1)) for n in tensors if (m := _BLOCK_RE.match(n))}
    fields = {
        "vocab_size": int(vocab),
        "n_ctx": int(tensors["wpe.weight"].shape[0]),
        "d_model": int(d),
        "n_layer": max(layers) + 1 if layers else 0,
        "n_head": DEFAULT_N_HEAD,
    }
    fields.update(meta)
    try:
        return GPTConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"{origin}: inferred configuration is invalid: {e}") from e


def _linear_orientation(tensors: dict[str, np.ndarray], cfg: GPTConfig, origin: str) -> bool:
    """True if linear weights are stored ``(out, in)`` (nanoGPT), False for ``(in, out)``."""
    votes: dict[bool, str] = {}
    d, ff = cfg.d_model, cfg.d_ff
    for i in range(cfg.n_layer):
        for name, conv in ((f"h.{i}.attn.c_attn.weight", (d, 3 * d)),
                           (f"h.{i}.mlp.c_fc.weight", (d, ff))):
            if name in tensors:
                shape = tuple(tensors[name].shape)
                if shape == conv:
                    votes.setdefault(False, name)
                elif shape == conv[::-1]:
                    votes.setdefault(True, name)
    if len(votes) == 2:
        raise CheckpointError(
            f"{origin}: linear weights are in mixed orientations: {votes[False]} is (in, out) "
            f"but {votes[True]} is (out, in)"
        )
    return votes.get(True) is not None


def canonicalize(
    raw: dict[str, np.ndarray],
    cfg: GPTConfig | None = None,
    origin: str = "checkpoint",
    meta: dict[str, int] | None = None,
) -> tuple[dict[str, np.ndarray], GPTConfig]:
    """Turn a dict of tensors in any accepted naming/orientation into canonical float32 params.

    ``origin`` names the source in error messages. See the module docstring for the rules.
    """
    tensors = _strip_names(raw, origin)
    lm_head = tensors.pop("lm_head.weight", None)
    if cfg is None:
        cfg = _infer_config(tensors, meta or {}, origin)
    shapes = expected_shapes(cfg)

    unexpected = sorted(set(tensors) - set(shapes))
    if unexpected:
        listed = ", ".join(unexpected[:5]) + (" …" if len(unexpected) > 5 else "")
        raise CheckpointError(
            f"{origin}: unexpected tensor {listed} (not part of a GPT with {cfg.n_layer} layers)"
        )

    bias_names = [n for n in shapes if n.endswith(".bias")]
    present = [n for n in bias_names if n in tensors]
    if present and len(present) != len(bias_names):
        missing = [n for n in bias_names if n not in tensors]
        raise CheckpointError(
            f"{origin}: biases must be all present or all absent, but {present[0]} is present "
            f"and {missing[0]} is missing"
        )
    if not present:
        for n in bias_names:
            tensors[n] = np.zeros(shapes[n], np.float32)

    if _linear_orientation(tensors, cfg, origin):
        for i in range(cfg.n_layer):
            for lin in _LINEAR_WEIGHTS:
                name = f"h.{i}.{lin}.weight"
                if name in tensors and tensors[name].ndim == 2:
                    tensors[name] = tensors[name].T

    params: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise CheckpointError(
                f"{origin}: missing tensor {name} (expected shape {_shape(shape)})"
            )
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise CheckpointError(
                f"{origin}: {name} has shape {_shape(value.shape)}, expected {_shape(shape)}"
            )
        if value.dtype.kind not in "fiu":
            raise CheckpointError(
                f"{origin}: {name} has dtype {value.dtype}, expected a float type"
            )
        value = np.ascontiguousarray(value, dtype=np.float32)
        if not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise CheckpointError(f"{origin}: {name} has {bad} non-finite values (NaN or inf)")
        params[name] = value

    if lm_head is not None:
        wte = params["wte.weight"]
        if tuple(lm_head.shape) != wte.shape:
            raise CheckpointError(
                f"{origin}: lm_head.weight has shape {_shape(lm_head.shape)}, expected "
                f"{_shape(wte.shape)} (tied to wte.weight)"
            )
        if not np.array_equal(np.asarray(lm_head, dtype=np.float32), wte):
            raise CheckpointError(
                f"{origin}: lm_head.weight differs from wte.weight; only tied LM heads are "
                "supported (logits = ln_f(x) @ wte.T)"
            )
    return params, cfg


# --------------------------------------------------------------------------------------------
# Public entry points


def load_checkpoint(
    path: str | os.PathLike[str], cfg: GPTConfig | None = None
) -> tuple[dict[str, np.ndarray], GPTConfig]:
    """Load a ``.npz`` or ``.safetensors`` checkpoint into canonical float32 params and its config.

    With ``cfg`` given, the file must match it exactly; with ``cfg=None`` the configuration
    comes from the file's metadata, a JSON sidecar, or the tensor shapes (module docstring).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".safetensors"):
        raise CheckpointError(
            f"{path}: unsupported checkpoint extension {path.suffix!r}; use .npz or .safetensors"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    raw, meta = _read_npz(path) if suffix == ".npz" else _read_safetensors(path)
    found = _config_from_meta(_read_sidecar(path))
    found.update(_config_from_meta(meta))
    return canonicalize(raw, cfg, origin=str(path), meta=found)


def _validated(params: dict[str, np.ndarray], cfg: GPTConfig) -> dict[str, np.ndarray]:
    canon, _ = canonicalize(params, cfg, origin="params to save")
    extra = sorted(set(params) - set(canon))
    if extra:
        raise CheckpointError(f"params to save: {extra[0]} is not a canonical tensor name")
    return canon


def _atomic_write(path: Path, write: object) -> None:
    """Write through a temporary file in the same folder so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=path.suffix)
    os.close(fd)
    # mkstemp creates the file 0600; give the checkpoint the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        write(tmp)  # type: ignore[operator]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_npz(path: str | os.PathLike[str], params: dict[str, np.ndarray], cfg: GPTConfig) -> None:
    """Save canonical params as float32 ``.npz`` with the config embedded under ``__config__``.

    The params are checked first (names, shapes, finiteness), so a saved file always loads.
    Float32 values round-trip exactly.
    """
    path = Path(path)
    canon = _validated(params, cfg)
    blob = np.frombuffer(json.dumps({"config": cfg.to_dict()}).encode("utf-8"), dtype=np.uint8)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **canon, **{CONFIG_KEY: blob})

    _atomic_write(path, write)


def save_safetensors(
    path: str | os.PathLike[str], params: dict[str, np.ndarray], cfg: GPTConfig
) -> None:
    """Save canonical params as float32 ``.safetensors`` with the config in its metadata."""
    path = Path(path)
    canon = _validated(params, cfg)
    meta = {"config": json.dumps(cfg.to_dict()), "format": "llmaccel-gpt"}
    _atomic_write(path, lambda tmp: save_file(canon, tmp, metadata=meta))
