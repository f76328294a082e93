"""hw/byte_shift.py: the logarithmic byte shifter against ``bit_select`` over zero padding."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from llmaccel.hw.byte_shift import select_bytes


@pytest.mark.parametrize(("nin", "nout", "pbits"), [(5, 1, 3), (12, 4, 4), (19, 16, 5),
                                                    (124, 16, 7), (3, 8, 2)])
def test_select_bytes_matches_bit_select(nin, nout, pbits):
    m = Module()
    data = Signal(8 * nin)
    pos = Signal(pbits)
    out = select_bytes(m, data, pos, nout, name="cut")
    assert len(out) == 8 * nout
    rng = random.Random(nin * 1000 + nout)

    async def bench(ctx):
        for _ in range(6):
            d = rng.getrandbits(8 * nin)
            ctx.set(data, d)
            for p in range(1 << pbits):
                ctx.set(pos, p)
                want = (d >> (8 * p)) & ((1 << (8 * nout)) - 1)   # zeros past the end
                assert ctx.get(out) == want, (p, hex(d))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_select_bytes_rejects_partial_bytes():
    with pytest.raises(ValueError, match="whole number of bytes"):
        select_bytes(None, Signal(12), Signal(2), 1, name="x")   # checked before m is used
