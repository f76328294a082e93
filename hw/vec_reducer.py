"""The vector unit's reductions: sum, maximum and argmax over rows, optionally across lanes."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import COUNT_BITS, AccelConfig
from .isa import Opcode
from .vec_requant import saturate

__all__ = ["VecReducer"]


class VecReducer(wiring.Component):
    """Lane-wise ``VREDSUM`` / ``VREDMAX`` / ``VARGMAX`` over the rows of an instruction, and the
    ``horizontal`` reduction across the ``W`` positions of a row.

    Operands arrive ``vector_lanes`` at a time (beat ``b`` carries positions ``b·L … b·L+L−1``
    of row ``r``) and update one accumulator per row position: the exact sum (wide enough for
    65535 rows of int32 across 32 positions, so it never wraps), or the maximum and the first
    row holding it (a later row replaces it only when strictly greater). After the last beat the
    row of results is saturated to the destination type; with ``horizontal`` it first passes
    through a binary tree of ``log2(W)`` registered levels that adds (sum), or keeps the larger
    value and, on a tie, the smaller flat index ``r·W + l`` (max, argmax), so the result is the
    first maximum in row-major order, as ``np.argmax`` on the flattened rows.

    Timing: the beat with ``i_last`` is taken in cycle *x*; ``o_valid`` is high in cycle *x* + 1
    (lane-wise) or *x* + 1 + ``log2(W)`` (horizontal).

    Parameters
    ----------
    cfg : AccelConfig
        Uses ``row_width`` (W) and ``vector_lanes`` (L).

    Ports
    -----
    i_op : In(Opcode)
        ``VREDSUM``, ``VREDMAX`` or ``VARGMAX``; held for the whole instruction.
    i_horizontal : In(1)
        Reduce across positions too and broadcast the result; held.
    i_to_acc : In(1)
        Saturate to int32 (ACC destination), else int8; held.
    i_valid : In(1)
        A beat of operands this cycle.
    i_first : In(1)
        The beat belongs to row 0: it initialises its positions' accumulators.
    i_last : In(1)
        The last beat of the instruction.
    i_beat : In(range(max(W / L, 2)))
        Which positions the beat carries.
    i_row : In(unsigned(16))
        The beat's row index (for argmax).
    i_data : In(ArrayLayout(signed(32), L))
        The operands.
    o_valid : Out(1)
        The result row is on ``o_data`` (one cycle).
    o_data : Out(ArrayLayout(signed(32), W))
        Saturated results: per position, or the horizontal result in every position.
    """

    def __init__(self, cfg: AccelConfig):
        if not isinstance(cfg, AccelConfig):
            raise ValueError(f"cfg must be an AccelConfig, not {cfg!r}")
        self.cfg = cfg
        W, L = cfg.row_width, cfg.vector_lanes
        self.levels = (W - 1).bit_length()
        super().__init__({
            "i_op": In(Opcode),
            "i_horizontal": In(1),
            "i_to_acc": In(1),
            "i_valid": In(1),
            "i_first": In(1),
            "i_last": In(1),
            "i_beat": In(range(max(W // L, 2))),     # ≥ 1 bit: no zero-width ports
            "i_row": In(unsigned(COUNT_BITS)),
            "i_data": In(data.ArrayLayout(signed(32), L)),
            "o_valid": Out(1),
            "o_data": Out(data.ArrayLayout(signed(32), W)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.cfg
        W, L = cfg.row_width, cfg.vector_lanes
        lw = self.levels
        # |Σ| ≤ (2^16 − 1)·W·2^31 < 2^(47 + log2 W): one more bit for the sign.
        vshape = signed(48 + lw)
        fbits = COUNT_BITS + lw                        # flat index r·W + l
        is_sum = self.i_op == Opcode.VREDSUM
        is_arg = self.i_op == Opcode.VARGMAX

        acc_v = [Signal(vshape, name=f"acc_v{p}") for p in range(W)]
        acc_r = [Signal(unsigned(COUNT_BITS), name=f"acc_r{p}") for p in range(W)]
        for p in range(W):
            beat, lane = divmod(p, L)
            d = self.i_data[lane]
            with m.If(self.i_valid & (self.i_beat == beat)):
                with m.If(self.i_first):
                    m.d.sync += [acc_v[p].eq(d), acc_r[p].eq(self.i_row)]
                with m.Elif(is_sum):
                    m.d.sync += acc_v[p].eq(acc_v[p] + d)
                with m.Elif(d > acc_v[p]):
                    m.d.sync += [acc_v[p].eq(d), acc_r[p].eq(self.i_row)]

        # `final` is high in the cycle after the last beat, when the accumulators are complete.
        final = Signal()
        m.d.sync += final.eq(self.i_valid & self.i_last)

        lane_out = [saturate(Mux(is_arg, acc_r[p], acc_v[p]), self.i_to_acc) for p in range(W)]

        # Horizontal tree: level k holds W >> k (value, flat index) pairs, registered.
        # Only a horizontal instruction starts the tree's valid chain: a stale pulse from a
        # lane-wise instruction would otherwise reach the output during the next instruction.
        nodes = [(acc_v[p], Cat(Const(p, lw), acc_r[p])) for p in range(W)]
        valid = final & self.i_horizontal
        for k in range(lw):
            nxt = []
            for i in range(len(nodes) // 2):
                (lv, lf), (rv, rf) = nodes[2 * i], nodes[2 * i + 1]
                v = Signal(vshape, name=f"h{k + 1}_v{i}")
                f = Signal(unsigned(fbits), name=f"h{k + 1}_f{i}")
                take_right = (rv > lv) | ((rv == lv) & (rf < lf))
                m.d.sync += [v.eq(Mux(is_sum, lv + rv, Mux(take_right, rv, lv))),
                             f.eq(Mux(take_right, rf, lf))]
                nxt.append((v, f))
            nodes = nxt
            v_next = Signal(name=f"h{k + 1}_valid")
            m.d.sync += v_next.eq(valid)
            valid = v_next
        (root_v, root_f), = nodes
        root_out = saturate(Mux(is_arg, root_f, root_v), self.i_to_acc)

        m.d.comb += self.o_valid.eq(Mux(self.i_horizontal, valid, final))
        for p in range(W):
            m.d.comb += self.o_data[p].eq(Mux(self.i_horizontal, root_out, lane_out[p]))
        return m
