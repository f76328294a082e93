"""Tests of checkpoint loading and saving (sw/model/checkpoint.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmaccel.sw.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_npz,
    save_safetensors,
)
from llmaccel.sw.model.gpt import GPTConfig, expected_shapes

CFG = GPTConfig(vocab_size=32, n_ctx=8, d_model=12, n_layer=2, n_head=3)
LINEAR = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
WEIGHTS = Path(__file__).resolve().parents[2] / "sw" / "model" / "weights" / "tiny_gpt.npz"


def _params(cfg: GPTConfig = CFG, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 1, s).astype(np.float32) for n, s in expected_shapes(cfg).items()}


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name, value in a.items():
        assert value.dtype == np.float32 == b[name].dtype, name
        np.testing.assert_array_equal(value, b[name], err_msg=name)


def _nanogpt(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same model as a nanoGPT / HF GPT2LMHeadModel state dict: prefix, (out, in), buffers."""
    out = {}
    for name, value in params.items():
        if name.endswith(LINEAR):
            value = np.ascontiguousarray(value.T)
        out["transformer." + name] = value
    for i in range(CFG.n_layer):
        out[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        out[f"transformer.h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    out["lm_head.weight"] = params["wte.weight"].copy()
    return out


# --------------------------------------------------------------------------------------------
# Round trips and accepted variants


def test_npz_round_trip_is_exact(tmp_path: Path) -> None:
    params = _params()
    save_npz(tmp_path / "m.npz", params, CFG)
    loaded, cfg = load_checkpoint(tmp_path / "m.npz")
    assert cfg == CFG  # n_head=3 comes from the embedded config, not the default
    _assert_same(loaded, params)


def test_safetensors_round_trip_is_exact(tmp_path: Path) -> None:
    params = _params()
    save_safetensors(tmp_path / "m.safetensors", params, CFG)
    loaded, cfg = load_checkpoint(tmp_path / "m.safetensors")
    assert cfg == CFG
    _assert_same(loaded, params)


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_nanogpt_naming_and_orientation_load_identically(tmp_path: Path, ext: str) -> None:
    params = _params()
    path = tmp_path / f"nano.{ext}"
    raw = _nanogpt(params)
    if ext == "npz":
        np.savez(path, **raw)
    else:
        save_file(raw, str(path))
    loaded, cfg = load_checkpoint(path, CFG)
    _assert_same(loaded, params)
    assert cfg == CFG


def test_prefix_only_with_conv1d_orientation_loads(tmp_path: Path) -> None:
    params = _params()
    np.savez(tmp_path / "hf.npz", **{"transformer." + k: v for k, v in params.items()})
    loaded, _ = load_checkpoint(tmp_path / "hf.npz", CFG)
    _assert_same(loaded, params)


def test_config_is_inferred_from_shapes_and_sidecar(tmp_path: Path) -> None:
    cfg4 = GPTConfig(vocab_size=32, n_ctx=8, d_model=16, n_layer=3, n_head=4)
    params = _params(cfg4)
    np.savez(tmp_path / "bare.npz", **params)
    _, cfg = load_checkpoint(tmp_path / "bare.npz")
    assert cfg == cfg4  # n_head falls back to the default 4

    cfg2 = GPTConfig(vocab_size=32, n_ctx=8, d_model=16, n_layer=3, n_head=2)
    np.savez(tmp_path / "side.npz", **params)
    (tmp_path / "side.json").write_text(json.dumps({"config": {"n_head": 2}}))
    _, cfg = load_checkpoint(tmp_path / "side.npz")
    assert cfg == cfg2


def test_no_biases_load_as_zeros(tmp_path: Path) -> None:
    params = _params()
    np.savez(tmp_path / "nobias.npz", **{k: v for k, v in params.items() if k.endswith("weight")})
    loaded, _ = load_checkpoint(tmp_path / "nobias.npz", CFG)
    for name, value in loaded.items():
        expected = np.zeros_like(value) if name.endswith(".bias") else params[name]
        np.testing.assert_array_equal(value, expected, err_msg=name)


def test_shipped_weights_load_with_default_config() -> None:
    params, cfg = load_checkpoint(WEIGHTS)
    assert cfg == GPTConfig()
    assert {k: v.shape for k, v in params.items()} == expected_shapes(cfg)


# --------------------------------------------------------------------------------------------
# Malformed checkpoints: each error names the tensor or file


def _save_and_load(tmp_path: Path, raw: dict[str, np.ndarray], cfg: GPTConfig | None = CFG):
    path = tmp_path / "bad.npz"
    np.savez(path, **raw)
    return load_checkpoint(path, cfg)


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    raw = _params()
    del raw["h.1.ln_2.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor h\.1\.ln_2\.weight "
                                              r"\(expected shape \(12,\)\)"):
        _save_and_load(tmp_path, raw)


def test_missing_bias_everywhere_but_one_is_named(tmp_path: Path) -> None:
    raw = {k: v for k, v in _params().items() if not k.endswith(".bias")}
    raw["h.1.ln_2.bias"] = np.zeros(12, np.float32)
    with pytest.raises(CheckpointError, match=r"h\.1\.ln_2\.bias is present and "
                                              r"h\.0\.ln_1\.bias is missing"):
        _save_and_load(tmp_path, raw)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    raw = _params()
    raw["h.1.mlp.c_fc.weight"] = np.zeros((12, 40), np.float32)
    with pytest.raises(CheckpointError,
                       match=r"h\.1\.mlp\.c_fc\.weight has shape \(12, 40\), expected \(12, 48\)"):
        _save_and_load(tmp_path, raw)


def test_wrong_shape_against_inferred_config_is_named(tmp_path: Path) -> None:
    raw = _params()
    raw["h.0.ln_1.bias"] = np.zeros((13,), np.float32)
    with pytest.raises(CheckpointError, match=r"h\.0\.ln_1\.bias has shape \(13,\)"):
        _save_and_load(tmp_path, raw, cfg=None)


def test_extra_tensor_is_named(tmp_path: Path) -> None:
    raw = _params()
    raw["h.0.attn.rotary.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected tensor h\.0\.attn\.rotary\.weight"):
        _save_and_load(tmp_path, raw)


def test_extra_layer_is_named(tmp_path: Path) -> None:
    raw = _params()
    raw["h.2.ln_1.weight"] = np.ones(12, np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected tensor h\.2\.ln_1\.weight"):
        _save_and_load(tmp_path, raw)


def test_mixed_biases_are_an_error(tmp_path: Path) -> None:
    raw = _params()
    del raw["h.0.mlp.c_proj.bias"]
    with pytest.raises(CheckpointError, match=r"h\.0\.mlp\.c_proj\.bias is missing"):
        _save_and_load(tmp_path, raw)


def test_mixed_orientation_is_an_error(tmp_path: Path) -> None:
    raw = _params()
    raw["h.1.mlp.c_fc.weight"] = np.ascontiguousarray(raw["h.1.mlp.c_fc.weight"].T)
    with pytest.raises(CheckpointError, match=r"mixed orientations.*h\.1\.mlp\.c_fc\.weight"):
        _save_and_load(tmp_path, raw)


def test_untied_lm_head_is_an_error(tmp_path: Path) -> None:
    raw = _nanogpt(_params())
    raw["lm_head.weight"] = raw["lm_head.weight"] + 1.0
    with pytest.raises(CheckpointError, match=r"lm_head\.weight differs from wte\.weight"):
        _save_and_load(tmp_path, raw)


def test_non_finite_value_is_named(tmp_path: Path) -> None:
    raw = _params()
    raw["h.1.attn.c_proj.weight"][3, 4] = np.nan
    raw["h.1.attn.c_proj.weight"][0, 0] = np.inf
    with pytest.raises(CheckpointError,
                       match=r"h\.1\.attn\.c_proj\.weight has 2 non-finite values"):
        _save_and_load(tmp_path, raw)


def test_save_refuses_invalid_params(tmp_path: Path) -> None:
    raw = _params()
    raw["ln_f.bias"] = np.full(12, np.nan, np.float32)
    with pytest.raises(CheckpointError, match=r"ln_f\.bias has 12 non-finite"):
        save_npz(tmp_path / "x.npz", raw, CFG)
    raw = _params()
    raw["lm_head.weight"] = raw["wte.weight"]
    with pytest.raises(CheckpointError, match=r"lm_head\.weight is not a canonical"):
        save_npz(tmp_path / "x.npz", raw, CFG)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_truncated_file_is_reported(tmp_path: Path, ext: str) -> None:
    good = tmp_path / f"good.{ext}"
    (save_npz if ext == "npz" else save_safetensors)(good, _params(), CFG)
    bad = tmp_path / f"cut.{ext}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"cut\.{ext}: not a valid \.{ext} file"):
        load_checkpoint(bad)


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_garbage_file_is_reported(tmp_path: Path, ext: str) -> None:
    bad = tmp_path / f"junk.{ext}"
    bad.write_bytes(b"this is not a checkpoint\x00\xff" * 10)
    with pytest.raises(CheckpointError, match=rf"junk\.{ext}: not a valid \.{ext} file"):
        load_checkpoint(bad)


def test_npy_file_with_npz_name_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "single.npz"
    with open(bad, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match=r"single\.npz: not a valid \.npz file.*single"):
        load_checkpoint(bad)


def test_empty_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "empty.npz"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.npz: not a valid \.npz file"):
        load_checkpoint(bad)


def test_unsupported_extension_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match=r"model\.pt: unsupported checkpoint extension"):
        load_checkpoint(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.npz: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.npz")


def test_explicit_config_mismatch_is_named(tmp_path: Path) -> None:
    save_npz(tmp_path / "m.npz", _params(), CFG)
    other = GPTConfig(vocab_size=32, n_ctx=8, d_model=12, n_layer=2, n_head=2)
    _, cfg = load_checkpoint(tmp_path / "m.npz", other)  # n_head is invisible in shapes
    assert cfg == other
    with pytest.raises(CheckpointError, match=r"wpe\.weight has shape \(8, 12\), expected "
                                              r"\(16, 12\)"):
        load_checkpoint(tmp_path / "m.npz",
                        GPTConfig(vocab_size=32, n_ctx=16, d_model=12, n_layer=2, n_head=3))


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)
