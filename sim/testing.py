"""Helpers shared by the Amaranth-simulator tests: stream drivers with random stalls.

Producer and consumer run as separate async testbenches (``sim.add_testbench``). Both take an
optional ``random.Random`` and a stall probability; with them, ``valid`` drops or ``ready`` is
withheld for random cycles, which is how every stream port is tested under backpressure.
"""

from __future__ import annotations

import random

__all__ = ["stream_get", "stream_put"]


async def stream_put(ctx, stream, payload, *, rng: random.Random | None = None,
                     stall: float = 0.0) -> None:
    """Offer ``payload`` on ``stream`` until it is taken (after random idle cycles)."""
    while rng is not None and rng.random() < stall:
        await ctx.tick()
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, rng: random.Random | None = None, stall: float = 0.0):
    """Take one payload from ``stream`` (withholding ``ready`` for random cycles first)."""
    while rng is not None and rng.random() < stall:
        await ctx.tick()
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload
