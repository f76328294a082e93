"""The int8 model: quality against the float model on held-out text, and integer-only inference."""

import numpy as np
import pytest

from llmaccel.sw.driver import load_model
from llmaccel.sw.model.corpus import heldout_split
from llmaccel.sw.model.gpt import forward, generate
from llmaccel.sw.model.int8 import compare_quality, forward_int8, generate_int8


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_int8_quality_targets_on_heldout_text(shipped):
    params, q = shipped
    r = compare_quality(params, q, heldout_split()[:12000])
    print(r)
    assert r["top1_agreement"] >= 0.95          # issue target
    assert r["bpb_increase"] <= 0.05            # within 5 % of float


def test_int8_forward_is_integer_and_causal(shipped):
    _, q = shipped
    tok = np.frombuffer(b"def main():\n    print('hi')\n", np.uint8).astype(np.int64)
    lg = forward_int8(q, tok)
    assert lg.dtype == np.int64 and np.all(np.abs(lg) < 1 << 31)
    tok2 = tok.copy()
    tok2[-1] = (tok2[-1] + 1) % 256
    np.testing.assert_array_equal(forward_int8(q, tok2)[:-1], lg[:-1])


def test_int8_tracks_float_logits(shipped):
    params, q = shipped
    tok = np.frombuffer(heldout_split()[:128], np.uint8).astype(np.int64)
    fl = forward(params, q.cfg, tok)
    il = forward_int8(q, tok) * q.logit_scale
    assert np.max(np.abs(il - fl)) / np.max(np.abs(fl)) < 0.1


def test_int8_generation_mostly_agrees_with_float(shipped):
    params, q = shipped
    prompt = list(b"The return statement")
    g_f = generate(params, q.cfg, prompt, 12)
    g_i = generate_int8(q, prompt, 12)
    assert g_i[:len(prompt)] == prompt
    assert sum(a == b for a, b in zip(g_f, g_i, strict=True)) >= len(prompt) + 6
