"""The training and held-out corpus: CPython's own reference text, as bytes.

Every CPython install ships ``pydoc_data.topics.topics``, a dict of help-topic name → text
(about 466 KB in 3.11) taken from the Python documentation (PSF licence). It needs no download,
so the model can be trained and evaluated on any machine offline.

The corpus is the topics concatenated in sorted-key order, UTF-8 encoded; each byte is a token.
The split is deterministic: the last 10 % of the bytes are held out, the rest is for training.
The text differs slightly between Python versions, so the training metadata records
``sys.version`` and :func:`corpus_sha256`; compare them before trusting a bits-per-byte figure.
"""

from __future__ import annotations

import hashlib
import sys
from functools import cache
from pydoc_data.topics import topics

__all__ = [
    "HELDOUT_FRACTION",
    "corpus_bytes",
    "corpus_info",
    "corpus_sha256",
    "heldout_split",
    "split_index",
    "train_split",
]

#: Fraction of the corpus, taken from its end, that is never trained on.
HELDOUT_FRACTION = 0.10


@cache
def corpus_bytes() -> bytes:
    """The whole corpus: ``pydoc_data.topics.topics`` values in sorted-key order, UTF-8."""
    return "".join(topics[key] for key in sorted(topics)).encode("utf-8")


def split_index() -> int:
    """Byte offset where the held-out split starts (``len - floor(len * 0.10)``)."""
    n = len(corpus_bytes())
    return n - int(n * HELDOUT_FRACTION)


def train_split() -> bytes:
    """The first 90 % of the corpus, used for training."""
    return corpus_bytes()[: split_index()]


def heldout_split() -> bytes:
    """The last 10 % of the corpus, used only for evaluation."""
    return corpus_bytes()[split_index() :]


def corpus_sha256() -> str:
    """Hex SHA-256 of :func:`corpus_bytes`; it identifies the CPython text the corpus came from."""
    return hashlib.sha256(corpus_bytes()).hexdigest()


def corpus_info() -> dict[str, object]:
    """Metadata that pins the corpus: Python version, size, split point and SHA-256."""
    return {
        "source": "pydoc_data.topics.topics, values in sorted-key order, UTF-8",
        "python_version": sys.version,
        "n_bytes": len(corpus_bytes()),
        "train_bytes": split_index(),
        "heldout_bytes": len(corpus_bytes()) - split_index(),
        "heldout_fraction": HELDOUT_FRACTION,
        "sha256": corpus_sha256(),
    }
