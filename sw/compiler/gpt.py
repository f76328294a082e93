"""Lowering the int8 GPT onto the accelerator: the DRAM image, a prefill program, decode programs.

Prefill (P prompt tokens) runs on the systolic array in the feature-major layout of
docs/architecture.md: every GEMM output is the next GEMM's A operand after one vector-unit
requantisation. Attention is computed per head and per block of W queries (causal: only keys up
to the block's last query are touched), with the softmax normalisation deferred to after P·V.
K and V are written to their PIM-layout caches in DRAM on the way.

Decode (one token at position t) runs every projection, the LM head and both attention GEMVs in
the DRAM banks (PIM), with vectors packed W elements per row and horizontal reductions; the
argmax and the next token's embedding gather happen on chip. Only the token id leaves the chip.

Every step's arithmetic is the corresponding numerics composite, so the programs reproduce
:func:`llmaccel.sw.model.int8.forward_int8` bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import INSTR_BYTES, Opcode, Space, Src2Mode
from llmaccel.sim.golden import numerics as nx
from llmaccel.sw.model.int8 import HEAD_SHIFT, Linear8, QuantizedGPT

from .emit import Emitter, Opnd, acc, sp
from .image import ConstTable, DramLayout, PimMatrix, Region, gemm_tiles, write_pim_matrix
from .memory import Op, Planner, PlanReport, Tensor
from .program import CompileError, DramFitError, ProgramBuilder, Traffic

__all__ = ["CompiledGPT", "ProgramInfo"]

# LUT table ids: 0 is the shared softmax exp table, 1 + layer the GELU tables.
LUT_EXP = 0


@dataclass
class ProgramInfo:
    """A compiled program and what the host needs to run it."""

    kind: str                      # "prefill" or "decode"
    binary: bytes
    base: int                      # DRAM address to load it at and start from
    out_token_addr: int            # DRAM address of the int32 token it writes
    traffic: Traffic
    plan: PlanReport
    n_instructions: int
    position: int                  # decode: the position processed; prefill: prompt length
    extra: dict = field(default_factory=dict)


class CompiledGPT:
    """The image and program generator for one quantised model on one accelerator config.

    ``sp_limit`` / ``acc_limit`` (elements) restrict the SRAM the planner may use, to measure
    spills under tighter budgets; the default is the whole SRAM.

    ``compact`` packs the image for configs whose DRAM is on-chip block RAM (the ``fpga``
    preset, docs/fpga.md): two or more heads' keys share each 32-byte K-cache column, the DMA
    regions share global rows, the decode program's region is sized to the longest decode
    program, the spill area is whatever is left, and the constant table is written into ACC by
    the host instead of being loaded from DRAM (its lookup-table data go last, so decode
    programs reuse that space once the tables are loaded).
    """

    def __init__(self, q: QuantizedGPT, cfg: AccelConfig, *, sp_limit: int | None = None,
                 acc_limit: int | None = None, prefill_mode: str = "systolic",
                 weight_chunk: int | None = None, compact: bool = False):
        if prefill_mode not in ("systolic", "pim"):
            raise CompileError(f"prefill_mode must be 'systolic' or 'pim', not {prefill_mode!r}")
        self.prefill_mode = prefill_mode
        self.compact = compact
        #: compact: the constant table is not in the image; the host writes :attr:`const_data`
        #: into ACC at element 0 before each prompt (:class:`~llmaccel.sw.driver.Generator`).
        self.host_constants = compact
        self.q, self.cfg = q, cfg
        self.mcfg = m = q.cfg
        W = self.W = cfg.row_width
        self.sp_limit, self.acc_limit = sp_limit, acc_limit
        # Output columns per prefill GEMM step: whole matrices by default; with a scratchpad
        # budget, chunks whose weights take at most an eighth of it, so tighter budgets still
        # compile (with spills) rather than failing on one big step.
        if weight_chunk is None and sp_limit is not None:
            weight_chunk = max(W, (sp_limit // 8) // (4 * m.d_model) // W * W)
        if weight_chunk is not None and (weight_chunk < W or weight_chunk % W):
            raise CompileError(f"weight_chunk must be a positive multiple of the row width {W}, "
                               f"not {weight_chunk!r}")
        self.weight_chunk = weight_chunk
        d, hd = m.d_model, m.head_dim
        problems = []
        if d % W:
            problems.append(f"d_model {d} is not a multiple of the row width {W}")
        if hd % W:
            problems.append(f"head size {hd} is not a multiple of the row width {W}")
        if m.vocab_size % W:
            problems.append(f"vocabulary {m.vocab_size} is not a multiple of the row width {W}")
        if cfg.lut_tables < 1 + m.n_layer:
            problems.append(f"{1 + m.n_layer} lookup tables are needed (exp + one GELU per "
                            f"layer) but the config has {cfg.lut_tables}")
        if max(m.d_ff, m.d_model) > cfg.gbuf_bytes:
            problems.append(f"the PIM global buffer ({cfg.gbuf_bytes} bytes) cannot hold a "
                            f"{m.d_ff}-element input vector")
        if prefill_mode == "systolic" and not cfg.gemm_core:
            problems.append("systolic prefill needs the GEMM core, which this config does "
                            "not have (gemm_core=False): compile with prefill_mode='pim'")
        if cfg.array_rows != cfg.array_cols:
            problems.append(f"the compiler's activation layout needs a square array, not "
                            f"{cfg.array_rows}x{cfg.array_cols}")
        if problems:
            raise CompileError("cannot compile this model for config "
                               f"{cfg.name!r}: " + "; ".join(problems))
        self._build_image()

    @classmethod
    def fitting(cls, q: QuantizedGPT, cfg: AccelConfig, *, prefill_mode: str | None = None,
                **kwargs) -> CompiledGPT:
        """The first image that fits ``cfg``'s DRAM, in order: systolic prefill (GEMM-tile
        weight copies), PIM prefill (one weight copy), PIM prefill with the ``compact``
        packing (docs/compiler.md); without a GEMM core (``cfg.gemm_core``) only the PIM
        prefills. ``prefill_mode`` fixes the mode (then only ``compact`` is
        tried as well). Raises the last :class:`DramFitError` when none fits."""
        modes = (("systolic", "pim") if cfg.gemm_core else ("pim",)) \
            if prefill_mode is None else (prefill_mode,)
        tries = [(mode, False) for mode in modes] + [(modes[-1], True)]
        for mode, compact in tries[:-1]:
            try:
                return cls(q, cfg, prefill_mode=mode, compact=compact, **kwargs)
            except DramFitError:
                pass
        mode, compact = tries[-1]
        return cls(q, cfg, prefill_mode=mode, compact=compact, **kwargs)

    # =========================================================================================
    # DRAM image
    def _build_image(self) -> None:
        q, cfg, m, W = self.q, self.cfg, self.mcfg, self.W
        d, H, hd, ff, V, ctx = m.d_model, m.n_head, m.head_dim, m.d_ff, m.vocab_size, m.n_ctx
        lay = self.layout = DramLayout(cfg)
        # PIM matrices first: whole rows, packed row-hit-first.
        self.pim_qkv, self.pim_proj, self.pim_fc, self.pim_proj2 = [], [], [], []
        for i in range(m.n_layer):
            self.pim_qkv.append(lay.pim_matrix(f"h.{i}.qkv", 3 * d, d, pack=False))
            self.pim_proj.append(lay.pim_matrix(f"h.{i}.proj", d, d))
            self.pim_fc.append(lay.pim_matrix(f"h.{i}.fc", ff, d, pack=False))
            self.pim_proj2.append(lay.pim_matrix(f"h.{i}.proj2", d, ff, pack=False))
        self.pim_head = lay.pim_matrix("head", V, d, pack=False)
        # KV cache: K per (layer, head) one output per token; V one output per feature with the
        # tokens along the columns. Sizes rounded so decode's score/probability vectors always
        # cover whole 32-byte global-buffer chunks.
        self.k_tokens = -(-ctx // max(32, cfg.dram_banks)) * max(32, cfg.dram_banks)
        self.v_inputs = -(-ctx // 32) * 32
        self.pim_k = [[None] * H for _ in range(m.n_layer)]
        self.pim_v = [[None] * H for _ in range(m.n_layer)]
        # Where they fit, a layer's V cache shares its first row with the first keys of its K
        # cache (K of head h in columns h·kr…, V after all heads' K): decode's score MACs then
        # leave the V row open, so the V append is row hits and P·V needs no activation.
        kck, kcv = -(-hd // cfg.col_bytes), -(-self.v_inputs // cfg.col_bytes)
        k_per_bank = self.k_tokens // cfg.dram_banks
        v_cols = H * kcv * -(-hd // cfg.dram_banks)
        kr = min(k_per_bank, (cfg.cols_per_row - v_cols) // (H * kck))   # K slots per row
        self.kv_shared = hd <= cfg.dram_banks and kr >= 1
        # compact: G heads' keys share a column (head h at byte offset k_off[h]); the score
        # MAC of head h multiplies the column by a global-buffer chunk holding q_h at that
        # offset and zeros elsewhere, so each head still gets its own dot product.
        G = cfg.col_bytes // hd if (self.compact and hd < cfg.col_bytes and cfg.col_bytes % hd == 0
                                    and not self.kv_shared) else 1
        G = G if H % G == 0 else 1
        self.k_group = G
        self.k_off = [(h % G) * hd for h in range(H)]
        for i in range(m.n_layer):
            if self.kv_shared:
                row0 = lay.pim_rows(f"h.{i}.kv", -(-k_per_bank // kr))
                for h in range(H):
                    self.pim_k[i][h] = PimMatrix(f"h.{i}.k{h}", self.k_tokens, hd, kck, row0,
                                                 h * kr * kck, per_row=kr)
                    self.pim_v[i][h] = PimMatrix(f"h.{i}.v{h}", hd, self.v_inputs, kcv, row0,
                                                 H * kr * kck + h * kcv, per_row=1)
            else:
                for h0 in range(0, H, G):
                    name = f"h.{i}.k{h0}" + (f"-{h0 + G - 1}" if G > 1 else "")
                    mat = lay.pim_matrix(name, self.k_tokens, G * hd, pack=h0 > 0)
                    for h in range(h0, h0 + G):
                        self.pim_k[i][h] = mat
        for i in range(m.n_layer if not self.kv_shared else 0):
            for h in range(H):
                self.pim_v[i][h] = lay.pim_matrix(f"h.{i}.v{h}", hd, self.v_inputs)
        kv_rows = {mm.row0 for row in self.pim_k + self.pim_v for mm in row}
        self.kv_dram = sorted(kv_rows)

        # GEMM tiles for prefill (none when prefill runs token by token in the banks).
        self.tiles = {}
        tile_data = {}
        for i, L in enumerate(q.layers if self.prefill_mode == "systolic" else ()):
            for name, lin in (("qkv", L.qkv), ("proj", L.proj), ("fc", L.fc),
                              ("proj2", L.proj2)):
                t = gemm_tiles(lin.w, cfg)
                tile_data[f"h.{i}.{name}"] = t
        if self.prefill_mode == "systolic":
            tile_data["head"] = gemm_tiles(q.head_w, cfg)
        for name, t in tile_data.items():
            self.tiles[name] = lay.region(f"tiles.{name}", t.size)

        # Embedding tables: row-major for the gathers, wpe also transposed for systolic
        # prefill.
        compact = self.compact
        self.r_wte = lay.region("wte", V * d, packed=compact)
        self.r_wpe = lay.region("wpe", ctx * d, packed=compact)
        self.r_wpeT = lay.region("wpeT", ctx * d, packed=compact) \
            if self.prefill_mode == "systolic" else None

        # Constants. compact: the lookup tables' data last, after the token row, so that
        # programs which do not load the tables may use that space (see _planner).
        ct = self.consts = ConstTable(cfg)
        luts = [("lut.exp", q.exp_lut)] + [(f"h.{i}.lut.gelu", L.gelu_lut)
                                           for i, L in enumerate(q.layers)]
        if not compact:
            ct.add(*luts[0])
        for i, L in enumerate(q.layers):
            p = f"h.{i}."
            if not compact:
                ct.add(*luts[1 + i])
            for name, lin in (("qkv", L.qkv), ("proj", L.proj), ("fc", L.fc),
                              ("proj2", L.proj2)):
                ct.add(p + name + ".bias", lin.bias)
                ct.add(p + name + ".m", lin.m)
            for name, ln in (("ln1", L.ln1), ("ln2", L.ln2)):
                ct.add(p + name + ".g", ln.gamma_m)
                ct.add(p + name + ".b", ln.beta)
        ct.add("ln_f.g", q.ln_f.gamma_m)
        ct.add("ln_f.b", q.ln_f.beta)
        ct.add("head.m", q.head_m)
        # The token row: argmax results land here; gathers read their index from here.
        self.tok_row = ct.size
        self.last_token_elem = self.tok_row
        if compact:
            ct.add("token", np.zeros(W, dtype=np.int64))
            self.lut_elem = ct.size
            for lut in luts:
                ct.add(*lut)
        const = self.const_data = ct.data()
        self.const_elems = ct.size
        #: First ACC element the planner may use in a program that loads the lookup tables
        #: (``acc_base``) and in one that does not (``acc_base_resident``).
        self.acc_base = self.const_elems + (0 if compact else W)
        self.acc_base_resident = self.lut_elem if compact else self.acc_base
        self.r_const = None if self.host_constants else lay.region("const", const.nbytes)

        # I/O and programs (the prefill program exists only for systolic prefill: pim-mode
        # prefill runs decode programs).
        self.r_prompt = lay.region("prompt", 4 * ctx, packed=compact)
        self.r_out = lay.region("tokens", 4 * (ctx + 1), packed=compact)
        self.r_prog = lay.region("program.prefill", self._estimate_instructions(ctx)
                                 * INSTR_BYTES, packed=compact) \
            if self.prefill_mode == "systolic" else None
        if compact:
            # Sized to the longest decode program: compile the longest ones (the start of
            # each 32-token chunk of the KV cache masks the most score rows; with the
            # prompt-token load, and the table loads at position 0 where prefill does them)
            # into a provisional region, with no spill area.
            top = cfg.bank_rows * lay.grow_bytes
            self.r_dprog = Region("program.decode", lay.next_region_addr, 1 << 30)
            self.r_spill = Region("spill", top, 0)
            n = max(self.decode(t, prompt_token=True, load_constants=t == 0).n_instructions
                    for t in range(0, ctx, 32))
            self.r_dprog = lay.region("program.decode", n * INSTR_BYTES, packed=True)
        else:
            self.r_dprog = lay.region("program.decode", self._estimate_decode() * INSTR_BYTES)
        # Spill area: whatever DRAM is left (the planner only needs it under tight SRAM);
        # at least one global row unless compact.
        lay.check()
        spare = (cfg.bank_rows - lay.next_row) * lay.grow_bytes
        if compact:
            self.r_spill = lay.regions["spill"] = Region(
                "spill", self.r_dprog.end, cfg.bank_rows * lay.grow_bytes - self.r_dprog.end)
        else:
            self.r_spill = lay.region("spill", max(lay.grow_bytes,
                                                   min(spare, 4 * cfg.acc_elems + cfg.sp_bytes)))

        lay.check()
        img = np.zeros(cfg.dram_bytes, dtype=np.uint8)
        for i, L in enumerate(q.layers):
            write_pim_matrix(img, self.pim_qkv[i], L.qkv.w, cfg)
            write_pim_matrix(img, self.pim_proj[i], L.proj.w, cfg)
            write_pim_matrix(img, self.pim_fc[i], L.fc.w, cfg)
            write_pim_matrix(img, self.pim_proj2[i], L.proj2.w, cfg)
        write_pim_matrix(img, self.pim_head, q.head_w, cfg)
        for name, t in tile_data.items():
            r = self.tiles[name]
            img[r.addr:r.addr + t.size] = t.view(np.uint8).ravel()
        img[self.r_wte.addr:self.r_wte.end] = q.wte_e.view(np.uint8).ravel()
        img[self.r_wpe.addr:self.r_wpe.end] = q.wpe_e.view(np.uint8).ravel()
        if self.r_wpeT is not None:
            img[self.r_wpeT.addr:self.r_wpeT.end] = np.ascontiguousarray(q.wpe_e.T) \
                .view(np.uint8).ravel()
        if self.r_const is not None:
            img[self.r_const.addr:self.r_const.end] = const.view(np.uint8)
        self.image = img

    def _estimate_instructions(self, P: int) -> int:
        """Upper bound of the prefill program's length (to size its DRAM region)."""
        m, W = self.mcfg, self.W
        nb = -(-P // W)
        per_layer = (2 * 10 * nb + 2 * nb + 4 * m.d_model // W + 3 * nb + 3 * nb + 3 * nb
                     + m.n_head * nb * 12 + 2 * (m.d_model // W) * (-(-P // 16) + 1)
                     + m.n_head * nb * 2 + 16)
        return 64 + P + 2 * nb + m.n_layer * per_layer + 40

    def _estimate_decode(self) -> int:
        m = self.mcfg
        return 64 + m.n_layer * (60 + m.n_head * 40) + 40

    # =========================================================================================
    # Shared pieces
    def _setup_program(self):
        b = ProgramBuilder(self.cfg)
        e = Emitter(self.cfg, b)
        return b, e

    def _planner(self, b: ProgramBuilder, *, spread_banks: bool = False,
                 loads_tables: bool = True) -> Planner:
        base = self.acc_base if loads_tables else self.acc_base_resident
        return Planner(self.cfg, b, acc_base=base, sp_limit=self.sp_limit,
                       acc_limit=self.acc_limit, spill_addr=self.r_spill.addr,
                       spill_bytes=self.r_spill.nbytes, spread_banks=spread_banks)

    def _emit_constants(self, e: Emitter) -> None:
        """Bring the constant table into ACC (it stays resident for later programs; with
        ``host_constants`` the host has written it) and load the lookup tables from it."""
        W = self.W
        if not self.host_constants:
            e.load(Space.ACC, dram=self.r_const.addr, dram_stride=4 * W, sram=0,
                   sram_stride=W, rows=self.const_elems // W, length=W)
        e.lutld(LUT_EXP, self._c("lut.exp"))
        for i in range(self.mcfg.n_layer):
            e.lutld(1 + i, self._c(f"h.{i}.lut.gelu"))

    def _gbuf_gaps(self) -> list[tuple[int, int]]:
        """Global-buffer byte ranges ``[lo, hi)`` that decode's score chunks must hold zeros
        in: with G heads' keys per column, chunk h holds q_h at ``k_off[h]`` and zeros at the
        other heads' offsets (none when G = 1). Adjacent ranges are merged."""
        m, cb = self.mcfg, self.cfg.col_bytes
        hd, G = m.head_dim, self.k_group
        gaps: list[tuple[int, int]] = []
        for h in range(m.n_head if G > 1 else 0):
            for j in range(G):
                if j * hd != self.k_off[h]:
                    lo = h * cb + j * hd
                    if gaps and gaps[-1][1] == lo:
                        gaps[-1] = (gaps[-1][0], lo + hd)
                    else:
                        gaps.append((lo, lo + hd))
        return gaps

    @staticmethod
    def _check_size(b: ProgramBuilder, region, kind: str) -> None:
        if b.nbytes > region.nbytes:
            raise CompileError(f"internal: the {kind} program ({b.nbytes} bytes) outgrew its "
                               f"DRAM region ({region.nbytes} bytes)")

    def _c(self, name: str) -> int:
        return self.consts[name]

    def _layernorm(self, e: Emitter, ln: nx.LayerNormParams, gname: str, *, x: Opnd,
                   out: Opnd, rows: int, scratch: int, scal: int, packed: bool) -> None:
        """The ten instructions of numerics.layernorm_int over ``rows`` rows.

        ``packed`` (decode): one token, features packed W per row, horizontal reductions and
        per-feature constants in VEC mode. Otherwise (prefill): one block of W tokens in lanes,
        features in rows, lane-wise reductions and per-row SCALAR constants.
        ``scratch`` is an ACC area of ``rows`` rows, ``scal`` an ACC area of 4 rows.
        """
        W = self.W
        s_row, mu_row, v_row, r_row = (acc(scal + i * W, 0) for i in range(4))
        c = acc(scratch, W)
        e.reduce(Opcode.VREDSUM, s_row, x, rows, horizontal=packed)
        e.vec(Opcode.VMUL, mu_row, s_row, 1, mode=Src2Mode.IMM, imm=ln.mean_m, shift=ln.mean_s)
        e.vec(Opcode.VSUB, c, x, rows, src2=mu_row)
        # q = c·c >> var_s (and later z, y) live in scratch rows rows..2·rows.
        qv = acc(scratch + rows * W, W)
        e.vec(Opcode.VMUL, qv, c, rows, src2=c, shift=ln.var_s)
        e.reduce(Opcode.VREDSUM, v_row, qv, rows, horizontal=packed)
        e.vec(Opcode.VISQRT, r_row, v_row, 1)
        e.vec(Opcode.VRECIP, r_row, r_row, 1, imm=ln.recip_num)
        e.vec(Opcode.VMUL, qv, c, rows, src2=r_row, shift=ln.norm_s)
        g, bta = self._c(gname + ".g"), self._c(gname + ".b")
        if packed:
            e.vec(Opcode.VMUL, qv, qv, rows, src2=acc(g, W))
            e.vec(Opcode.VADD, out, qv, rows, src2=acc(bta, W), shift=ln.out_s)
        else:
            e.vec(Opcode.VMUL, qv, qv, rows, src2=acc(g, 1), mode=Src2Mode.SCALAR)
            e.vec(Opcode.VADD, out, qv, rows, src2=acc(bta, 1), mode=Src2Mode.SCALAR,
                  shift=ln.out_s)

    def _requant(self, e: Emitter, lin: Linear8, name: str, *, src: Opnd, dst: Opnd,
                 rows: int, packed: bool) -> None:
        """numerics.linear_requant: VADD bias (in place), VMUL multiplier into ``dst``."""
        mode = Src2Mode.VEC if packed else Src2Mode.SCALAR
        stride = self.W if packed else 1
        e.vec(Opcode.VADD, src, src, rows, src2=acc(self._c(name + ".bias"), stride), mode=mode)
        e.vec(Opcode.VMUL, dst, src, rows, src2=acc(self._c(name + ".m"), stride), mode=mode,
              shift=lin.shift)

    # =========================================================================================
    # Prefill
    def prefill_programs(self, n_prompt: int) -> list[ProgramInfo]:
        """The programs that process a prompt of ``n_prompt`` tokens, in order; the last one
        leaves the next token. ``systolic`` mode: one program (GEMMs on the array). ``pim``
        mode: one decode-style program per prompt token, each reading its token id from the
        prompt region (no weight copies for the array are needed in DRAM)."""
        if self.prefill_mode == "systolic":
            return [self.prefill(n_prompt)]
        if not 1 <= n_prompt <= self.mcfg.n_ctx:
            raise CompileError(f"the prompt must hold 1..{self.mcfg.n_ctx} tokens (the "
                               f"model's context), not {n_prompt}")
        progs = [self.decode(t, prompt_token=True, load_constants=t == 0)
                 for t in range(n_prompt)]
        for p in progs:
            p.kind = "prefill"
        return progs

    def prefill(self, n_prompt: int) -> ProgramInfo:
        """The program for a prompt of ``n_prompt`` tokens (written by the host, int32 each,
        at the prompt region). It leaves the next token at ``out_token_addr`` and in the token
        row, and fills the KV cache for positions 0 … n_prompt−1."""
        m, cfg, W, q = self.mcfg, self.cfg, self.W, self.q
        P = n_prompt
        if not 1 <= P <= m.n_ctx:
            raise CompileError(f"the prompt must hold 1..{m.n_ctx} tokens (the model's "
                               f"context), not {P}")
        d, V = m.d_model, m.vocab_size
        nb = -(-P // W)
        Pp = nb * W
        b, e = self._setup_program()
        plan = self._planner(b)

        def tensor(name, space, elems, home=None):
            return Tensor(name, space, -(-elems // W) * W, home=home)

        ops: list[Op] = []

        # -- constants, lookup tables, prompt ids --------------------------------------------
        ops.append(Op("constants", [], [], lambda a: self._emit_constants(e)))

        tok = tensor("prompt", Space.ACC, P)
        ops.append(Op("prompt", [], [tok], lambda a: e.load(
            Space.ACC, dram=self.r_prompt.addr, dram_stride=4 * W, sram=a(tok),
            sram_stride=W, rows=-(-P // W), length=W)))

        # -- embedding (feature-major) -------------------------------------------------------
        # The int32 residual stream, one tensor per block of W tokens, so a step that needs
        # only some blocks (or none) lets the planner evict the others under tight budgets.
        xs = [tensor(f"x[{blk}]", Space.ACC, d * W) for blk in range(nb)]
        xe = tensor("emb.tok", Space.SP, d * Pp)
        xp = tensor("emb.pos", Space.SP, d * Pp)
        tmp = tensor("emb.tmp", Space.ACC, d * W)

        def emit_embed(a):
            for p in range(P):
                blk, lane = divmod(p, W)
                e.gather(Space.SP, table=self.r_wte.addr, table_bytes=self.r_wte.nbytes,
                         idx_acc=a(tok) + p, idx_scale=d, sram=a(xe) + blk * d * W + lane,
                         sram_stride=W, rows=d, length=1, dram_stride=1)
            for blk in range(nb):
                n_tok = min(W, P - blk * W)
                e.load(Space.SP, dram=self.r_wpeT.addr + blk * W, dram_stride=m.n_ctx,
                       sram=a(xp) + blk * d * W, sram_stride=W, rows=d, length=n_tok)
        ops.append(Op("embed.gather", [tok], [xe, xp], emit_embed))
        for blk in range(nb):   # one block of the residual at a time, via a block-sized temp
            def emit_combine(a, blk=blk):
                xb = acc(a(xs[blk]), W)
                e.vec(Opcode.VMUL, xb, sp(a(xe) + blk * d * W, W), d, mode=Src2Mode.IMM,
                      imm=q.emb_m)
                e.vec(Opcode.VMUL, acc(a(tmp), W), sp(a(xp) + blk * d * W, W), d,
                      mode=Src2Mode.IMM, imm=q.pos_m)
                e.vec(Opcode.VADD, xb, xb, d, src2=acc(a(tmp), W))
            ops.append(Op(f"embed[{blk}]", [xe, xp], [xs[blk], tmp], emit_combine))

        for i, L in enumerate(q.layers):
            self._prefill_layer(ops, e, i, L, xs, P, tensor)

        # -- final layer norm and LM head for the last token ---------------------------------
        last_blk, last_lane = divmod(P - 1, W)
        f = tensor("ln_f", Space.SP, d * W)
        lnscr = tensor("ln_f.scratch", Space.ACC, 2 * d * W)
        lnsc = tensor("ln_f.scalars", Space.ACC, 4 * W)
        logits = tensor("logits", Space.ACC, V * W)

        def emit_ln_f(a):
            self._layernorm(e, q.ln_f, "ln_f", x=acc(a(xs[last_blk]), W), out=sp(a(f), W),
                            rows=d, scratch=a(lnscr), scal=a(lnsc), packed=False)
        ops.append(Op("ln_f", [xs[last_blk]], [f, lnscr, lnsc], emit_ln_f))
        r = self.tiles["head"]
        chunk = V if self.weight_chunk is None else min(V, self.weight_chunk)
        for v0 in range(0, V, chunk):
            vc = min(chunk, V - v0)
            w = tensor(f"head.w[{v0}:{v0 + vc}]", Space.SP, d * -(-vc // W) * W,
                       home=r.addr + (v0 // cfg.array_cols) * d * W)

            def emit_head(a, w=w, v0=v0, vc=vc):
                e.gemm(m=last_lane + 1, n=vc, k=d, a=a(f), a_stride=d * W, b=a(w),
                       b_stride=d * W, c=a(logits) + v0 * W, c_stride=V * W)
            ops.append(Op(f"head[{v0}:{v0 + vc}]", [f, w] + ([logits] if v0 else []),
                          [logits], emit_head))

        def emit_argmax(a):
            e.vec(Opcode.VMUL, acc(a(logits), W), acc(a(logits), W), V,
                  src2=acc(self._c("head.m"), 1), mode=Src2Mode.SCALAR, shift=HEAD_SHIFT)
            e.reduce(Opcode.VARGMAX, acc(self.tok_row, 0), acc(a(logits), W), V,
                     horizontal=False)
            e.store(Space.ACC, dram=self.r_out.addr + 4 * P, dram_stride=0,
                    sram=self.tok_row + last_lane, sram_stride=0, rows=1, length=1)
            e.halt()
        ops.append(Op("argmax", [logits], [], emit_argmax))

        report = plan.run(ops)
        self._check_size(b, self.r_prog, "prefill")
        self.last_token_elem = self.tok_row + last_lane
        return ProgramInfo("prefill", b.binary(), self.r_prog.addr, self.r_out.addr + 4 * P,
                           b.traffic, report, len(b.instructions), P,
                           extra={"token_elem": self.last_token_elem})

    def _prefill_layer(self, ops, e: Emitter, i: int, L, xs: list[Tensor], P: int,
                       tensor) -> None:
        m, cfg, W = self.mcfg, self.cfg, self.W
        d, H, hd, ff = m.d_model, m.n_head, m.head_dim, m.d_ff
        nb = -(-P // W)
        Pp = nb * W
        p = f"h.{i}."

        def linear(name, lin, inp, k_in, n_out, out, to_residual=False):
            """GEMM ``inp`` (k_in rows per token block) × the layer's weight tiles, in chunks of
            output columns; each chunk is requantised into rows of ``out`` (int8 SP), or
            requantised to the residual scale and added into ``x``."""
            r = self.tiles[p + name]
            chunk = n_out if self.weight_chunk is None else min(n_out, self.weight_chunk)
            for n0 in range(0, n_out, chunk):
                nc = min(chunk, n_out - n0)
                blk0 = n0 // cfg.array_cols
                w = tensor(f"{p}{name}.w[{n0}:{n0 + nc}]", Space.SP, k_in * -(-nc // W) * W,
                           home=r.addr + blk0 * k_in * W)
                o_acc = tensor(f"{p}{name}.acc[{n0}:{n0 + nc}]", Space.ACC, nc * Pp)

                def requant(a, blk, o_acc=o_acc, n0=n0, nc=nc):
                    src = acc(a(o_acc) + blk * nc * W, W)
                    mode = Src2Mode.SCALAR
                    e.vec(Opcode.VADD, src, src, nc,
                          src2=acc(self._c(p + name + ".bias") + n0, 1), mode=mode)
                    dst = src if to_residual else sp(a(out) + blk * n_out * W + n0 * W, W)
                    e.vec(Opcode.VMUL, dst, src, nc,
                          src2=acc(self._c(p + name + ".m") + n0, 1), mode=mode,
                          shift=lin.shift)
                    if to_residual:
                        xr = acc(a(xs[blk]) + n0 * W, W)
                        e.vec(Opcode.VADD, xr, xr, nc, src2=src)

                def emit(a, w=w, o_acc=o_acc, nc=nc, requant=requant):
                    e.gemm(m=P, n=nc, k=k_in, a=a(inp), a_stride=k_in * W, b=a(w),
                           b_stride=k_in * W, c=a(o_acc), c_stride=nc * W)
                    if not to_residual:
                        for blk in range(nb):
                            requant(a, blk)
                ins = [inp, w]
                if not to_residual and n0 > 0:
                    ins.append(out)     # later chunks add rows to an existing tensor
                ops.append(Op(f"{p}{name}[{n0}:{n0 + nc}]", ins,
                              [o_acc] if to_residual else [o_acc, out], emit))
                if to_residual:         # the residual add touches one block of x at a time
                    for blk in range(nb):
                        ops.append(Op(f"{p}{name}[{n0}:{n0 + nc}].add[{blk}]",
                                      [o_acc, xs[blk]], [o_acc, xs[blk]],
                                      lambda a, blk=blk, requant=requant: requant(a, blk)))

        def ln_op(name, ln, out):
            scr = tensor(p + name + ".scratch", Space.ACC, 2 * d * W)
            sc = tensor(p + name + ".scalars", Space.ACC, 4 * W)

            for blk in range(nb):
                def emit(a, blk=blk):
                    self._layernorm(e, ln, p + name, x=acc(a(xs[blk]), W),
                                    out=sp(a(out) + blk * d * W, W), rows=d, scratch=a(scr),
                                    scal=a(sc), packed=False)
                ops.append(Op(f"{p}{name}[{blk}]", [xs[blk]] + ([out] if blk else []),
                              [out, scr, sc], emit))

        # ---- attention block ----
        a1 = tensor(p + "ln1.out", Space.SP, d * Pp)
        ln_op("ln1", L.ln1, a1)
        qkv = tensor(p + "qkv", Space.SP, 3 * d * Pp)
        linear("qkv", L.qkv, a1, d, 3 * d, qkv)

        # token-major copies of K and V (W×W block transposes) and the KV cache writes
        kcb = tensor(p + "k.tm", Space.SP, d * Pp)
        vcb = tensor(p + "v.tm", Space.SP, d * Pp)

        def emit_kv(a):
            for sec, dst in ((1, kcb), (2, vcb)):
                for fb in range(d // W):
                    e.trans(sp(a(dst) + fb * Pp * W, W * W),
                            sp(a(qkv) + (sec * d + fb * W) * W, 3 * d * W), nb)
            # K cache: token t of head h at output t of pim_k[i][h] (hd bytes from k_off[h]).
            for fb in range(d // W):
                h, off = divmod(fb * W, hd)
                mat = self.pim_k[i][h]
                for t0 in range(0, P, cfg.dram_banks):
                    n_tok = min(cfg.dram_banks, P - t0)
                    e.store(Space.SP, dram=mat.addr(t0, cfg, self.k_off[h] + off),
                            dram_stride=cfg.row_bytes,
                            sram=a(kcb) + fb * Pp * W + t0 * W, sram_stride=W, rows=n_tok,
                            length=W)
            # V cache: feature j of head h is output j of pim_v[i][h]; tokens along its bytes.
            for h in range(H):
                mat = self.pim_v[i][h]
                for blk in range(nb):
                    n_tok = min(W, P - blk * W)
                    for j0 in range(0, hd, cfg.dram_banks):
                        nf = min(cfg.dram_banks, hd - j0)
                        e.store(Space.SP, dram=mat.addr(j0, cfg, blk * W),
                                dram_stride=cfg.row_bytes,
                                sram=a(qkv) + blk * 3 * d * W + (2 * d + h * hd + j0) * W,
                                sram_stride=W, rows=nf, length=n_tok)
        ops.append(Op(p + "kv", [qkv], [kcb, vcb], emit_kv))

        # per head, per query block: scores, mask, softmax, P·V, normalise
        att = tensor(p + "att", Space.SP, d * Pp)
        s_acc = tensor(p + "scores", Space.ACC, Pp * W)
        probs_i = tensor(p + "probs.idx", Space.SP, Pp * W)
        probs = tensor(p + "probs", Space.SP, Pp * W)
        scal = tensor(p + "softmax.scalars", Space.ACC, 3 * W)
        o_acc = tensor(p + "att.acc", Space.ACC, hd * W)
        sm = L.softmax

        def emit_attention(a):
            for h in range(H):
                for qb in range(nb):
                    nq = min(W, P - qb * W)
                    nk = min(P, (qb + 1) * W)
                    S = acc(a(s_acc), W)
                    e.gemm(m=nq, n=nk, k=hd, a=a(qkv) + qb * 3 * d * W + h * hd * W,
                           a_stride=3 * d * W, b=a(qkv) + (d + h * hd) * W,
                           b_stride=3 * d * W, c=a(s_acc), c_stride=Pp * W)
                    e.mask(S, S, nk, 1, -1, -qb * W)
                    mx, z, inv = (acc(a(scal) + k * W, 0) for k in range(3))
                    e.reduce(Opcode.VREDMAX, mx, S, nk, horizontal=False)
                    e.vec(Opcode.VSUB, S, S, nk, src2=mx)
                    e.vec(Opcode.VMUL, sp(a(probs_i), W), S, nk, mode=Src2Mode.IMM,
                          imm=sm.in_m, shift=sm.in_s)
                    e.vec(Opcode.VLUT, sp(a(probs), W), sp(a(probs_i), W), nk, imm=LUT_EXP)
                    e.reduce(Opcode.VREDSUM, z, sp(a(probs), W), nk, horizontal=False)
                    e.vec(Opcode.VRECIP, inv, z, 1, imm=L.att_num)
                    fb0 = h * hd // W
                    e.gemm(m=nq, n=hd, k=nk, a=a(probs), a_stride=Pp * W,
                           b=a(vcb) + fb0 * Pp * W, b_stride=Pp * W, c=a(o_acc),
                           c_stride=hd * W)
                    e.vec(Opcode.VMUL, sp(a(att) + qb * d * W + h * hd * W, W),
                          acc(a(o_acc), W), hd, src2=inv, shift=L.att_shift)
        ops.append(Op(p + "attention", [qkv, vcb], [att, s_acc, probs_i, probs, scal, o_acc],
                      emit_attention))

        linear("proj", L.proj, att, d, d, None, to_residual=True)

        # ---- MLP ----
        a2 = tensor(p + "ln2.out", Space.SP, d * Pp)
        ln_op("ln2", L.ln2, a2)
        hid = tensor(p + "gelu", Space.SP, ff * Pp)
        linear("fc", L.fc, a2, d, ff, hid)
        ops.append(Op(p + "gelu", [hid], [hid], lambda a: e.vec(
            Opcode.VLUT, sp(a(hid), W), sp(a(hid), W), ff * nb, imm=1 + i)))
        linear("proj2", L.proj2, hid, ff, d, None, to_residual=True)

    # =========================================================================================
    # Decode
    def decode(self, position: int, token_elem: int | None = None, *,
               prompt_token: bool = False, load_constants: bool = False) -> ProgramInfo:
        """The program for one new token at ``position`` (0-based, < n_ctx) whose id is the
        int32 ACC element ``token_elem`` (default: where the previous program left it), or,
        with ``prompt_token``, the prompt's token at that position (loaded from DRAM first)."""
        m, cfg, W, q = self.mcfg, self.cfg, self.W, self.q
        t = position
        if not 0 <= t < m.n_ctx:
            raise CompileError(f"decode position {t} is outside the context 0..{m.n_ctx - 1}")
        tok_elem = self.last_token_elem if token_elem is None else token_elem
        d, H, hd, ff, V = m.d_model, m.n_head, m.head_dim, m.d_ff, m.vocab_size
        B = cfg.dram_banks
        b, e = self._setup_program()
        # A decode step's tensors are small: spreading them over the SRAM banks costs no
        # spills and lets units that overlap use different banks (docs/compiler.md).
        plan = self._planner(b, spread_banks=True, loads_tables=load_constants)

        def tensor(name, space, elems):
            return Tensor(name, space, -(-elems // W) * W)

        kv = -(-(t + 1) // 32)                    # V columns (32 tokens each) in use
        n_keys = max(32 * kv, -(-(t + 1) // B) * B)
        n_keys = -(-n_keys // B) * B              # whole slots
        if H * (n_keys // B) > cfg.pim_slots or H * -(-hd // B) > cfg.pim_slots:
            raise CompileError(f"decode at position {t} needs {H * (n_keys // B)} PIM "
                               f"accumulator slots per bank for the attention scores; the "
                               f"config has {cfg.pim_slots}")
        if H * max(1, kv) > cfg.gbuf_chunks:
            raise CompileError(f"decode at position {t} needs {H * kv} global-buffer chunks "
                               f"for the attention weights; the config has {cfg.gbuf_chunks}")
        rd = d // W
        ops: list[Op] = []
        x = tensor("x", Space.ACC, d)
        xe = tensor("emb.tok", Space.SP, d)
        xp = tensor("emb.pos", Space.SP, d)
        tmp = tensor("emb.tmp", Space.ACC, d)

        if prompt_token:
            tok_elem = self.tok_row

        if load_constants:
            ops.append(Op("constants", [], [], lambda a: self._emit_constants(e)))

        def emit_embed(a):
            if prompt_token:
                e.load(Space.ACC, dram=self.r_prompt.addr + 4 * t, dram_stride=0,
                       sram=tok_elem, sram_stride=0, rows=1, length=1)
            e.gather(Space.SP, table=self.r_wte.addr, table_bytes=self.r_wte.nbytes,
                     idx_acc=tok_elem, idx_scale=d, sram=a(xe), sram_stride=0, rows=1,
                     length=d, dram_stride=0)
            e.load(Space.SP, dram=self.r_wpe.addr + t * d, dram_stride=0, sram=a(xp),
                   sram_stride=0, rows=1, length=d)
            e.vec(Opcode.VMUL, acc(a(x), W), sp(a(xe), W), rd, mode=Src2Mode.IMM, imm=q.emb_m)
            e.vec(Opcode.VMUL, acc(a(tmp), W), sp(a(xp), W), rd, mode=Src2Mode.IMM,
                  imm=q.pos_m)
            e.vec(Opcode.VADD, acc(a(x), W), acc(a(x), W), rd, src2=acc(a(tmp), W))
            if kz is not None:      # zeros for the score chunks' other-head bytes
                e.vec(Opcode.VMUL, sp(a(kz), W), acc(a(x), 0), kz.elems // W,
                      mode=Src2Mode.IMM, imm=0)
        scr = tensor("ln.scratch", Space.ACC, 2 * d)
        scl = tensor("ln.scalars", Space.ACC, 4 * W)
        gaps = self._gbuf_gaps()
        kz = tensor("k.zeros", Space.SP, max(g1 - g0 for g0, g1 in gaps)) if gaps else None
        keep = [x, scr, scl] + ([kz] if kz is not None else [])    # live across layers
        ops.append(Op("embed", [], [xe, xp, tmp, *keep], emit_embed))

        def gemv(mat: PimMatrix, inp_sp: int, n_in: int, out_acc: int,
                 then: PimMatrix | None = None) -> None:
            e.wrgb(inp_sp, 0, n_in)
            for row, col, ncols, kc, slot in mat.mac_segments(cfg):
                e.mac(row=row, col=col, ncols=ncols, kc=kc, gb_chunk=0, slot=slot)
            e.pim_read(slot=0, nslots=-(-mat.n_out // B), acc_addr=out_acc)
            if then is not None:
                # Open the next GEMV's row while the vector unit requantises this one's output
                # and runs the layer norm before it: a one-column MAC into slot 0 (free: the
                # PIM unit runs in order) activates every bank at once, taking the activation
                # ramp and tRCD off the next GEMV. It follows the read-out's first consumer,
                # whose wait on the PIM unit must not cover it.
                row, col = then.mac_segments(cfg)[0][:2]
                b.defer(1, lambda: e.mac(row=row, col=col, ncols=1, kc=1, gb_chunk=0,
                                         slot=0))

        for i, L in enumerate(q.layers):
            p = f"h.{i}."
            a1 = tensor(p + "ln1.out", Space.SP, d)
            qkv_acc = tensor(p + "qkv.acc", Space.ACC, 3 * d)
            qkv = tensor(p + "qkv", Space.SP, 3 * d)
            sc = tensor(p + "scores", Space.ACC, H * n_keys)
            pi = tensor(p + "probs.idx", Space.SP, H * n_keys)
            pr = tensor(p + "probs", Space.SP, H * n_keys)
            sms = tensor(p + "softmax.scalars", Space.ACC, (H + max(H, W) + W) * W)
            oacc = tensor(p + "att.acc", Space.ACC, H * -(-hd // B) * B)
            att = tensor(p + "att", Space.SP, d)
            po = tensor(p + "proj.acc", Space.ACC, d)

            def emit_attn(a, i=i, L=L, p=p, a1=a1, qkv_acc=qkv_acc, qkv=qkv, sc=sc, pi=pi,
                          pr=pr, sms=sms, oacc=oacc, att=att, po=po, kz=kz):
                self._layernorm(e, L.ln1, p + "ln1", x=acc(a(x), W), out=sp(a(a1), W),
                                rows=rd, scratch=a(scr), scal=a(scl), packed=True)
                gemv(self.pim_qkv[i], a(a1), d, a(qkv_acc))
                self._requant(e, L.qkv, p + "qkv", src=acc(a(qkv_acc), W),
                              dst=sp(a(qkv), W), rows=3 * d // W, packed=True)
                # append k of position t to the K cache (G heads' keys per column): one
                # store for all heads when the K matrices sit at a constant DRAM stride (they
                # share a row)
                G = self.k_group
                k_addrs = [self.pim_k[i][h].addr(t, cfg) for h in range(0, H, G)]
                n_k = len(k_addrs)
                k_step = k_addrs[1] - k_addrs[0] if n_k > 1 else 0
                if all(k_addrs[j] == k_addrs[0] + j * k_step for j in range(n_k)):
                    e.store(Space.SP, dram=k_addrs[0], dram_stride=k_step,
                            sram=a(qkv) + d, sram_stride=G * hd, rows=n_k, length=G * hd)
                else:
                    for j in range(n_k):
                        e.store(Space.SP, dram=k_addrs[j], dram_stride=0,
                                sram=a(qkv) + d + j * G * hd, sram_stride=0, rows=1,
                                length=G * hd)
                # All heads' scores first (the K-cache row stays open across heads), then all
                # softmaxes, then all P·V products (the V-cache row stays open): at most two
                # row switches per layer for attention (one where K and V share a row). Each
                # head has its own global-buffer chunks and accumulator slots.
                sm = L.softmax
                rk = n_keys // W
                ks, vs = n_keys // B, -(-hd // B)
                for h in range(H):
                    e.wrgb(a(qkv) + h * hd, h * cfg.col_bytes + self.k_off[h], hd)
                for g0, g1 in gaps:      # the other heads' bytes read zeros
                    e.wrgb(a(kz), g0, g1 - g0)
                # Row by row over the heads, the V row (shared with the first keys) last.
                v_row = self.pim_v[i][0].row0
                segs = [(row != v_row, row, h, col, ncols, kc, slot) for h in range(H)
                        for row, col, ncols, kc, slot in self.pim_k[i][h].mac_segments(
                            cfg, n_out=n_keys)]
                for _, row, h, col, ncols, kc, slot in sorted(segs, key=lambda g: (-g[0], g[1])):
                    e.mac(row=row, col=col, ncols=ncols, kc=kc, gb_chunk=h, slot=h * ks + slot)
                e.pim_read(slot=0, nslots=H * ks, acc_addr=a(sc))
                # Append v while the vector unit runs the softmaxes (the channel is free then).
                # The score MACs left the V row open in every bank (it is shared with the
                # first keys; otherwise a one-column MAC opens it, all banks at once), so the
                # stores are row hits rather than one serial row miss per bank, and P·V finds
                # its row open. Emitted after the first softmax instruction, which waits for
                # the score read-out and must not also wait for that MAC.
                def v_append():
                    if not self.kv_shared:
                        row, col = self.pim_v[i][0].mac_segments(cfg)[0][:2]
                        e.mac(row=row, col=col, ncols=1, kc=1, gb_chunk=0, slot=0)
                    for h in range(H):      # append v of position t to the V cache
                        vm = self.pim_v[i][h]
                        for j0 in range(0, hd, B):
                            nf = min(B, hd - j0)
                            # odd heads walk the banks downwards, so two successive stores
                            # write the same bank back to back (fewer row switches against
                            # the instruction fetch, which keeps its row open in one bank)
                            j = j0 + nf - 1 if h % 2 else j0
                            e.store(Space.SP, dram=vm.addr(j, cfg, t),
                                    dram_stride=-cfg.row_bytes if h % 2 else cfg.row_bytes,
                                    sram=a(qkv) + 2 * d + h * hd + j,
                                    sram_stride=-1 if h % 2 else 1, rows=nf, length=1)
                b.defer(1, v_append)
                # Softmax of all heads, batched where the heads share the operation: the
                # scores of head h are rows h·rk… of sc. Keys after t are masked one key-row
                # at a time across the heads (only the row holding t and the rows after it);
                # the scale and the exp table run over all heads at once; the reciprocals of
                # the H sums are one VRECIP on a transposed row (sum of head h in lane h).
                mx = a(sms)                      # H rows: per-head maxima
                zb = a(sms) + H * W              # per-head sums, one row each (a W×W block)
                zt = zb + max(H, W) * W          # W rows: its transpose; row 0 lane h = sum h
                for r in range(t // W, rk):
                    S_r = acc(a(sc) + r * W, n_keys)
                    e.mask(S_r, S_r, H, 0, 1, r * W - t)
                for h in range(H):
                    S = acc(a(sc) + h * n_keys, W)
                    e.reduce(Opcode.VREDMAX, acc(mx + h * W, 0), S, rk, horizontal=True)
                    e.vec(Opcode.VSUB, S, S, rk, src2=acc(mx + h * W, 0))
                e.vec(Opcode.VMUL, sp(a(pi), W), acc(a(sc), W), H * rk, mode=Src2Mode.IMM,
                      imm=sm.in_m, shift=sm.in_s)
                e.vec(Opcode.VLUT, sp(a(pr), W), sp(a(pi), W), H * rk, imm=LUT_EXP)
                for h in range(H):
                    e.reduce(Opcode.VREDSUM, acc(zb + h * W, 0), sp(a(pr) + h * n_keys, W), rk,
                             horizontal=True)
                if H <= W:
                    e.trans(acc(zt, W * W), acc(zb, W * W), 1)
                    e.vec(Opcode.VRECIP, acc(zt, W), acc(zt, W), 1, imm=L.att_num)
                    invs = [acc(zt + h, 0) for h in range(H)]
                else:
                    for h in range(H):
                        e.vec(Opcode.VRECIP, acc(zb + h * W, 0), acc(zb + h * W, 0), 1,
                              imm=L.att_num)
                    invs = [acc(zb + h * W, 0) for h in range(H)]
                if n_keys == 32 * kv:
                    e.wrgb(a(pr), 0, H * n_keys)
                else:
                    for h in range(H):
                        e.wrgb(a(pr) + h * n_keys, h * kv * cfg.col_bytes, 32 * kv)
                for h in range(H):
                    for row, col, ncols, kc, slot in self.pim_v[i][h].mac_segments(
                            cfg, kc_used=kv):
                        e.mac(row=row, col=col, ncols=ncols, kc=kc, gb_chunk=h * kv,
                              slot=h * vs + slot)
                e.pim_read(slot=0, nslots=H * vs, acc_addr=a(oacc))
                for h in range(H):
                    e.vec(Opcode.VMUL, sp(a(att) + h * hd, W), acc(a(oacc) + h * vs * B, W),
                          hd // W, src2=invs[h], mode=Src2Mode.SCALAR, shift=L.att_shift)
                gemv(self.pim_proj[i], a(att), d, a(po))
                o = acc(a(po), W)
                self._requant(e, L.proj, p + "proj", src=o, dst=o, rows=rd, packed=True)
                e.vec(Opcode.VADD, acc(a(x), W), acc(a(x), W), rd, src2=o)
            ops.append(Op(p + "attention", keep,
                          [a1, qkv_acc, qkv, sc, pi, pr, sms, oacc, att, po, x], emit_attn))

            a2 = tensor(p + "ln2.out", Space.SP, d)
            fca = tensor(p + "fc.acc", Space.ACC, ff)
            hid = tensor(p + "gelu", Space.SP, ff)
            po2 = tensor(p + "proj2.acc", Space.ACC, d)

            def emit_mlp(a, i=i, L=L, p=p, a2=a2, fca=fca, hid=hid, po2=po2):
                self._layernorm(e, L.ln2, p + "ln2", x=acc(a(x), W), out=sp(a(a2), W),
                                rows=rd, scratch=a(scr), scal=a(scl), packed=True)
                gemv(self.pim_fc[i], a(a2), d, a(fca))
                self._requant(e, L.fc, p + "fc", src=acc(a(fca), W), dst=sp(a(hid), W),
                              rows=ff // W, packed=True)
                e.vec(Opcode.VLUT, sp(a(hid), W), sp(a(hid), W), ff // W, imm=1 + i)
                gemv(self.pim_proj2[i], a(hid), ff, a(po2),
                     then=self.pim_qkv[i + 1] if i + 1 < m.n_layer else self.pim_head)
                o = acc(a(po2), W)
                self._requant(e, L.proj2, p + "proj2", src=o, dst=o, rows=rd, packed=True)
                e.vec(Opcode.VADD, acc(a(x), W), acc(a(x), W), rd, src2=o)
            ops.append(Op(p + "mlp", [x, scr, scl], [a2, fca, hid, po2, x], emit_mlp))

        f = tensor("ln_f", Space.SP, d)
        lg = tensor("logits", Space.ACC, V)

        def emit_head(a):
            self._layernorm(e, q.ln_f, "ln_f", x=acc(a(x), W), out=sp(a(f), W), rows=rd,
                            scratch=a(scr), scal=a(scl), packed=True)
            gemv(self.pim_head, a(f), d, a(lg))
            e.vec(Opcode.VMUL, acc(a(lg), W), acc(a(lg), W), V // W,
                  src2=acc(self._c("head.m"), W), shift=HEAD_SHIFT)
            e.reduce(Opcode.VARGMAX, acc(self.tok_row, 0), acc(a(lg), W), V // W,
                     horizontal=True)
            e.store(Space.ACC, dram=self.r_out.addr + 4 * (t + 1), dram_stride=0,
                    sram=self.tok_row, sram_stride=0, rows=1, length=1)
            e.halt()
        ops.append(Op("head", [x, scr, scl], [f, lg], emit_head))

        report = plan.run(ops)
        self._check_size(b, self.r_dprog, "decode")
        self.last_token_elem = self.tok_row
        return ProgramInfo("decode", b.binary(), self.r_dprog.addr, self.r_out.addr + 4 * (t + 1),
                           b.traffic, report, len(b.instructions), t,
                           extra={"token_elem": self.tok_row})
