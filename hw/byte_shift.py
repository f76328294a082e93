"""A byte window cut out of a wide value at a variable byte offset, as a logarithmic shifter.

The DMA engines cut each beat (or column) out of a window of several DRAM columns or SRAM rows
at any byte alignment. Written as ``data.bit_select(pos * 8, width)``, Yosys builds one wide
multiplexer per output bit over every byte position; the shifter below has one 2-to-1 stage per
bit of ``pos``, largest first, and each stage keeps only the bytes the later stages can still
reach. Same value, fewer LUTs: half for the load engine's window, a quarter fewer in the store
engine (docs/fpga.md, "Routing: fewer LUTs, another placer, the reset on a global network").
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value

__all__ = ["select_bytes"]


def select_bytes(m: Module, data: Value, pos: Value, nbytes: int, *, name: str) -> Signal:
    """Bytes ``pos .. pos + nbytes - 1`` of ``data`` (byte 0 in its low bits), zeros past its
    end: ``Cat(data, zeros).bit_select(pos * 8, nbytes * 8)`` for every value of ``pos``.

    ``data`` must be a whole number of bytes; the stages' signals are named ``{name}_s{k}``.
    """
    data = Value.cast(data)
    pos = Value.cast(pos)
    if len(data) % 8:
        raise ValueError(f"data must be a whole number of bytes, not {len(data)} bits")
    if nbytes < 1:
        raise ValueError(f"nbytes must be positive, not {nbytes!r}")
    cur = data
    for k in reversed(range(len(pos))):
        step = 1 << k
        keep = nbytes + step - 1             # bytes the stages after this one can reach
        width = min(keep, max(len(cur) // 8, nbytes))
        shifted = Cat(cur, Const(0, 8 * (step + width)))[8 * step:8 * (step + width)]
        unshifted = Cat(cur, Const(0, 8 * width))[:8 * width]
        nxt = Signal(8 * width, name=f"{name}_s{k}")
        m.d.comb += nxt.eq(Mux(pos[k], shifted, unshifted))
        cur = nxt
    out = Signal(8 * nbytes, name=name)
    m.d.comb += out.eq(Cat(cur, Const(0, 8 * nbytes))[:8 * nbytes])
    return out
