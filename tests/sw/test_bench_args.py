"""Arguments the benchmarks share."""

import argparse

import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.errors import LlmaccelError
from llmaccel.sw.bench import add_refresh_phase_argument, refresh_phase


def _phase(*argv, cfg="default"):
    p = argparse.ArgumentParser()
    add_refresh_phase_argument(p)
    return refresh_phase(p.parse_args(list(argv)), preset(cfg))


def test_refresh_phase_defaults_to_the_bench_phase():
    tm = preset("default").timing
    assert _phase() == tm.tRFC + 64
    assert _phase("--refresh-phase", "bench") == tm.tRFC + 64
    assert _phase("--refresh-phase", "free") is None
    assert _phase("--refresh-phase", "0x20") == 32


@pytest.mark.parametrize("bad", ["soon", "-1", "100000000"])
def test_a_bad_refresh_phase_is_a_clear_error(bad):
    with pytest.raises(LlmaccelError, match="--refresh-phase"):
        _phase("--refresh-phase", bad)
