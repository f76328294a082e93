"""The DRAM image: every weight laid out for its consumer, constants, KV cache, I/O, programs.

Address space is handed out in *global rows* (one DRAM row in every bank: ``banks × row_bytes``
bytes, contiguous under the ``row | bank | column | byte`` mapping), so a PIM matrix owns whole
rows across all banks while DMA regions stay contiguous.

* **PIM matrices** (decode GEMVs): output o of an N×K matrix lives in bank ``o % B``; its K inputs
  fill ``kc = ⌈K/32⌉`` consecutive columns; the ``j = o // B``-th output of a bank sits at column
  ``col0 + (j % per_row)·kc`` of row ``row0 + j // per_row``. Matrices are packed into the free
  columns of the current row when they fit (row-hit-first: one activation serves several
  matrices). The K cache of (layer, head) is a PIM matrix with one output per token; the V cache
  is one with one output per feature and the tokens along the columns.
* **GEMM tiles** (prefill B operands): per block of C output columns, K rows of W bytes.
* **Constants**: one int32 table (biases, requantisation multipliers, layer-norm γ/β, LUT data)
  loaded once into the accumulator and kept resident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from llmaccel.hw.config import AccelConfig

from .program import CompileError, DramFitError

__all__ = ["ConstTable", "DramLayout", "PimMatrix", "Region", "gemm_tiles"]


@dataclass
class Region:
    name: str
    addr: int
    nbytes: int

    @property
    def end(self) -> int:
        return self.addr + self.nbytes


@dataclass
class PimMatrix:
    """Placement of an N-output, K-input GEMV matrix in the banks."""

    name: str
    n_out: int
    k_in: int
    kc: int
    row0: int
    col0: int
    per_row: int          # outputs per bank per row

    def place(self, o: int, cfg: AccelConfig) -> tuple[int, int, int]:
        """(bank, row, first column) of output ``o``."""
        b, j = o % cfg.dram_banks, o // cfg.dram_banks
        return b, self.row0 + j // self.per_row, self.col0 + (j % self.per_row) * self.kc

    def addr(self, o: int, cfg: AccelConfig, byte: int = 0) -> int:
        """DRAM byte address of input ``byte`` of output ``o``."""
        b, r, c = self.place(o, cfg)
        return cfg.dram_addr(b, r, c + byte // cfg.col_bytes, byte % cfg.col_bytes)

    def rows(self, cfg: AccelConfig) -> int:
        per_bank = -(-self.n_out // cfg.dram_banks)
        return -(-per_bank // self.per_row)

    def mac_segments(self, cfg: AccelConfig, n_out: int | None = None, kc_used: int | None = None
                     ) -> list[tuple[int, int, int, int, int]]:
        """PIM_MAC commands ``(row, col, ncols, kc, slot)`` computing outputs ``0..n_out-1``
        (all by default) using the first ``kc_used`` columns (default all) of each output; the
        results land in slots 0.. in output order (output o in bank o%B, slot o//B)."""
        n_out = self.n_out if n_out is None else n_out
        kc_used = self.kc if kc_used is None else kc_used
        per_bank = -(-n_out // cfg.dram_banks)
        segs = []
        j = 0
        while j < per_bank:
            row = self.row0 + j // self.per_row
            first = j % self.per_row
            count = min(self.per_row - first, per_bank - j)
            col = self.col0 + first * self.kc
            if kc_used == self.kc:
                segs.append((row, col, count * self.kc, self.kc, j))
            else:   # only a prefix of each output's columns: one command per output
                for q in range(count):
                    segs.append((row, col + q * self.kc, kc_used, kc_used, j + q))
            j += count
        return segs


class ConstTable:
    """int32 constants packed row-aligned; one DMA brings the table into ACC."""

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        self.offsets: dict[str, tuple[int, int]] = {}
        self._chunks: list[np.ndarray] = []
        self.size = 0

    def add(self, name: str, values) -> int:
        v = np.asarray(values, dtype=np.int64).ravel()
        if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
            raise CompileError(f"constant {name} does not fit int32")
        w = self.cfg.row_width
        padded = -(-v.size // w) * w
        buf = np.zeros(padded, dtype=np.int64)
        buf[:v.size] = v
        self.offsets[name] = (self.size, v.size)
        self._chunks.append(buf)
        self.size += padded
        return self.offsets[name][0]

    def __getitem__(self, name: str) -> int:
        return self.offsets[name][0]

    def data(self) -> np.ndarray:
        return np.concatenate(self._chunks).astype("<i4") if self._chunks else \
            np.zeros(0, "<i4")


def gemm_tiles(w: np.ndarray, cfg: AccelConfig) -> np.ndarray:
    """int8 (K, N) → (⌈N/C⌉, K, W) GEMM B-operand blocks, zero-padded."""
    k, n = w.shape
    c, width = cfg.array_cols, cfg.row_width
    nb = -(-n // c)
    out = np.zeros((nb, k, width), dtype=np.int8)
    for j in range(nb):
        part = w[:, j * c:(j + 1) * c]
        out[j, :, :part.shape[1]] = part
    return out


@dataclass
class DramLayout:
    """Hands out global rows of DRAM and places PIM matrices."""

    cfg: AccelConfig
    regions: dict[str, Region] = field(default_factory=dict)
    pim: dict[str, PimMatrix] = field(default_factory=dict)
    next_row: int = 0
    usage: dict = field(default_factory=dict)
    _pim_row: int = -1
    _pim_col: int = 0
    _tail: int | None = None      # end of the last region (None after a PIM matrix)

    @property
    def grow_bytes(self) -> int:
        """Bytes in one global row (that row in every bank)."""
        return self.cfg.dram_banks * self.cfg.row_bytes

    def _take_rows(self, n: int, what: str) -> int:
        # Allocation never fails here; check() reports the whole shortfall at once.
        r = self.next_row
        self.next_row += n
        self.usage[what] = self.usage.get(what, 0) + n * self.grow_bytes
        return r

    def check(self) -> None:
        """Raise CompileError naming the total DRAM needed and the biggest consumers."""
        need = self.next_row * self.grow_bytes
        if self.next_row > self.cfg.bank_rows:
            top = sorted(self.usage.items(), key=lambda kv: -kv[1])[:4]
            parts = ", ".join(f"{k} {v}" for k, v in top)
            raise DramFitError(
                f"the model does not fit the configured DRAM: it needs {need} bytes but config "
                f"{self.cfg.name!r} has {self.cfg.dram_bytes} (short by "
                f"{need - self.cfg.dram_bytes} bytes; largest parts in bytes: {parts}); use a "
                f"config with more bank_rows or banks")

    @property
    def next_region_addr(self) -> int:
        """Where ``region(..., packed=True)`` would place the next region."""
        if self._tail is None:
            return self.next_row * self.grow_bytes
        return -(-self._tail // self.cfg.col_bytes) * self.cfg.col_bytes

    def region(self, name: str, nbytes: int, *, packed: bool = False) -> Region:
        """A contiguous byte region starting on a global-row boundary, or, ``packed``, right
        after the previous region (column-aligned: a DMA burst never straddles two regions),
        taking new global rows only as far as it reaches."""
        if packed and self._tail is not None:
            addr = self.next_region_addr
            top = self.next_row * self.grow_bytes
            extra = max(0, -(-(addr + nbytes - top) // self.grow_bytes))
            prior = self.usage.get(name, 0)
            self._take_rows(extra, name)
            self.usage[name] = prior + nbytes      # bytes, not rows: it shares its rows
        else:
            rows = max(1, -(-nbytes // self.grow_bytes))
            addr = self._take_rows(rows, name) * self.grow_bytes
        reg = Region(name, addr, nbytes)
        self.regions[name] = reg
        self._tail = reg.end
        self._pim_row = -1   # PIM packing never shares a row with a DMA region
        return reg

    def pim_matrix(self, name: str, n_out: int, k_in: int, *, pack: bool = True) -> PimMatrix:
        cfg = self.cfg
        kc = -(-k_in // cfg.col_bytes)
        if kc > cfg.cols_per_row:
            raise CompileError(f"{name}: {k_in} inputs need {kc} columns per output, more than "
                               f"the {cfg.cols_per_row} columns of a DRAM row")
        per_bank = -(-n_out // cfg.dram_banks)
        need_cols = per_bank * kc
        free = cfg.cols_per_row - self._pim_col if self._pim_row >= 0 else 0
        if pack and need_cols <= free:
            m = PimMatrix(name, n_out, k_in, kc, self._pim_row, self._pim_col,
                          per_row=per_bank)
            self._pim_col += need_cols
        else:
            per_row = cfg.cols_per_row // kc
            rows = -(-per_bank // per_row)
            row0 = self._take_rows(rows, name)
            per_row = min(per_row, per_bank)
            m = PimMatrix(name, n_out, k_in, kc, row0, 0, per_row=per_row)
            if rows == 1:
                self._pim_row, self._pim_col = row0, need_cols
            else:
                self._pim_row = -1
        self.pim[name] = m
        self._tail = None
        return m

    def pim_rows(self, name: str, n: int) -> int:
        """``n`` fresh rows for matrices the caller places itself (nothing is packed into
        them); returns the first."""
        row0 = self._take_rows(n, name)
        self._pim_row = -1
        self._tail = None
        return row0

    @property
    def bytes_used(self) -> int:
        return self.next_row * self.grow_bytes


def write_pim_matrix(image: np.ndarray, m: PimMatrix, w: np.ndarray, cfg: AccelConfig) -> None:
    """Store int8 ``w`` of shape (K, N) — output o is column ``w[:, o]`` — into ``image``."""
    k, n = w.shape
    for o in range(n):
        a = m.addr(o, cfg)
        image[a:a + k] = w[:, o].astype(np.int8).view(np.uint8)
