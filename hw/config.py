"""The accelerator's parameters: the one place where sizes, widths and DRAM timing live.

Everything else (RTL, ISA field widths, golden model, compiler, docs) reads an
:class:`AccelConfig`. It is frozen and validates itself on construction, so a config that cannot
be built or addressed is rejected with a message naming the parameter.

Terms used throughout the project:

* **row width** ``W = max(array_rows, array_cols)``: an SRAM row holds ``W`` elements. The
  scratchpad (SP) holds int8 elements, the accumulator (ACC) int32 elements. SRAM addresses in the
  ISA are *element* addresses; element ``e`` lives in row ``e // W``, lane ``e % W``.
* **DRAM** is one channel of ``dram_banks`` banks, each ``bank_rows`` rows of ``cols_per_row``
  columns of ``col_bytes`` bytes. Byte addresses map as ``row | bank | column | byte`` (most to
  least significant), so consecutive bytes fill a column, then the columns of one open row, then
  move to the next bank: sequential streams hit open rows, and a run of ``row_bytes`` bytes stays
  in one bank. :meth:`AccelConfig.dram_map` and :meth:`AccelConfig.dram_addr` are the mapping.
* **PIM**: every bank has a MAC unit with ``pim_slots`` int32 accumulators; a global buffer of
  ``gbuf_bytes`` int8 inputs is broadcast to all banks in chunks of ``col_bytes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .errors import LlmaccelError

__all__ = ["PRESETS", "AccelConfig", "ConfigError", "DramTiming", "preset"]


class ConfigError(LlmaccelError):
    """A configuration that cannot be built; the message names the parameter and the fix."""


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class DramTiming:
    """DRAM timing in core clock cycles. Defaults: HBM2 at 1 GHz (Samsung PIMSimulator ini).

    ``tCL`` is the read latency from RD to data, ``tWR`` the write recovery time from the end of a
    write burst to PRE, ``tRTP`` read to precharge, ``tBURST`` the data-bus occupancy of one column
    transfer (so the external bandwidth is ``col_bytes / tBURST`` bytes per cycle).
    """

    tCCD_S: int = 2
    tCCD_L: int = 4
    tRCD: int = 14
    tRP: int = 14
    tRAS: int = 33
    tRC: int = 47
    tRRD_S: int = 4
    tRRD_L: int = 6
    tFAW: int = 16
    tREFI: int = 3900
    tRFC: int = 350
    tCL: int = 14
    tWR: int = 16
    tRTP: int = 5
    tBURST: int = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"DRAM timing {f.name} must be a positive integer, not {v!r}")
        if self.tCCD_L < self.tCCD_S:
            raise ConfigError(
                f"tCCD_L ({self.tCCD_L}) must be at least tCCD_S ({self.tCCD_S})")
        if self.tRRD_L < self.tRRD_S:
            raise ConfigError(
                f"tRRD_L ({self.tRRD_L}) must be at least tRRD_S ({self.tRRD_S})")
        if self.tRC < self.tRAS + self.tRP:
            raise ConfigError(
                f"tRC ({self.tRC}) must be at least tRAS + tRP ({self.tRAS + self.tRP})")
        if self.tBURST > self.tCCD_S:
            raise ConfigError(
                f"tBURST ({self.tBURST}) must not exceed tCCD_S ({self.tCCD_S})")
        if self.tREFI <= self.tRFC:
            raise ConfigError(f"tREFI ({self.tREFI}) must exceed tRFC ({self.tRFC})")


# Widths of ISA fields that depend on nothing else. hw/isa.py builds its structs from these, and
# validate() checks that a config's memories can be addressed through them.
SRAM_ADDR_BITS = 20   # element address into SP or ACC
DRAM_ADDR_BITS = 32   # byte address into DRAM
COUNT_BITS = 16       # rows / lengths / matrix dimensions
PIM_ROW_BITS = 16
PIM_COL_BITS = 9      # column index and column count (cols_per_row <= 256)
PIM_CHUNK_BITS = 9    # global-buffer chunk index and count
PIM_SLOT_BITS = 9     # per-bank accumulator slot index and count
GBUF_ADDR_BITS = 14   # byte address into the global buffer
LUT_ID_BITS = 4


@dataclass(frozen=True)
class AccelConfig:
    """All parameters of one accelerator instance.

    Parameters
    ----------
    name:
        Preset name, used for build-cache keys and reports.
    array_rows, array_cols:
        Systolic array size (R × C int8 MACs). The row width of both SRAMs is ``max(R, C)``.
    vector_lanes:
        Lanes of the vector unit; must divide the row width (a row is processed in
        ``row_width / vector_lanes`` beats).
    gemm_core:
        Whether the accelerator has its systolic GEMM core. Without it (the ``fpga`` preset,
        whose compact image prefills in the PIM banks and never runs a GEMM) ``GEMM`` is an
        illegal opcode: the golden model and the RTL stop with ``ILLEGAL_OPCODE`` at it, and
        the array's MACs, its SRAM ports and its DSP blocks are not built. ``array_rows`` and
        ``array_cols`` still set the row width.
    gemm_overlap:
        When true, successive folds of a GEMM overlap in the array (the next fold streams in while
        the previous one drains). When false, folds run one after another and a GEMM takes exactly
        the SCALE-Sim cycle count.
    dram_banks, dram_bank_groups, bank_rows, cols_per_row, col_bytes:
        DRAM organisation (one channel). ``col_bytes`` is fixed at 32 (256-bit columns). Banks,
        bank groups and columns are powers of two; ``bank_rows`` may be any count (the row is
        the top field of an address, so ``dram_bytes`` is then not a power of two).
    timing:
        :class:`DramTiming`.
    sp_bytes, acc_elems:
        Scratchpad size in int8 elements and accumulator size in int32 elements.
    sp_banks, acc_banks:
        Banks of each SRAM (powers of two dividing its rows): bank ``b`` holds the contiguous rows
        ``[b·R, (b+1)·R)``, ``R = rows / banks``. Each bank has two read ports and one write port
        shared by the units through a crossbar, so two units must not use one bank port (the
        same read port of a bank, or its write port) at the same time: the compiler orders
        such instructions with wait masks, the golden model rejects programs that do not
        (docs/architecture.md, "SRAM banks").
    gbuf_bytes, pim_slots:
        PIM global buffer size (bytes) and per-bank accumulators.
    pim_multipliers:
        int8 multipliers in each bank's PIM engine: ``col_bytes`` (one column per cycle) or
        half of it (a column's products in two cycles, so the banks' column rate
        ``timing.tCCD_L`` must be at least 2: the scheduler issues PIM column reads every
        tCCD_L). It changes no cycle count; it trades a slower column rate, which the timing
        sets, for half the multipliers (the ``fpga`` preset: DSP blocks, docs/fpga.md).
    lut_tables:
        Number of 256-entry int16 lookup tables in the vector unit.
    queue_depth:
        Instruction queue depth per unit.
    counter_bits:
        Width of the performance counters (8–64; the host registers are 64 bits, the bits
        above read 0). A counter wraps after 2^counter_bits of its events: at 64 never in
        practice; the ``fpga`` preset's 40 bits count cycles for 12 hours at 25 MHz and
        save a third of the counters' flip-flops, adders and read multiplexers.
    """

    name: str = "default"
    array_rows: int = 8
    array_cols: int = 8
    vector_lanes: int = 8
    gemm_core: bool = True
    gemm_overlap: bool = True
    dram_banks: int = 16
    dram_bank_groups: int = 4
    bank_rows: int = 128
    cols_per_row: int = 32
    col_bytes: int = 32
    timing: DramTiming = field(default_factory=DramTiming)
    sp_bytes: int = 256 * 1024
    acc_elems: int = 64 * 1024
    sp_banks: int = 4
    acc_banks: int = 4
    gbuf_bytes: int = 2048
    pim_slots: int = 64
    pim_multipliers: int = 32
    lut_tables: int = 8
    queue_depth: int = 4
    counter_bits: int = 64

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------------
    # Derived sizes
    @property
    def row_width(self) -> int:
        """Elements per SRAM row (``max(array_rows, array_cols)``)."""
        return max(self.array_rows, self.array_cols)

    @property
    def sp_rows(self) -> int:
        return self.sp_bytes // self.row_width

    @property
    def acc_rows(self) -> int:
        return self.acc_elems // self.row_width

    @property
    def sp_bank_rows(self) -> int:
        """Rows per scratchpad bank."""
        return self.sp_rows // self.sp_banks

    @property
    def acc_bank_rows(self) -> int:
        """Rows per accumulator bank."""
        return self.acc_rows // self.acc_banks

    @property
    def row_bytes(self) -> int:
        """Bytes in one DRAM row of one bank."""
        return self.cols_per_row * self.col_bytes

    @property
    def bank_bytes(self) -> int:
        return self.bank_rows * self.row_bytes

    @property
    def dram_bytes(self) -> int:
        return self.dram_banks * self.bank_bytes

    @property
    def banks_per_group(self) -> int:
        return self.dram_banks // self.dram_bank_groups

    @property
    def gbuf_chunks(self) -> int:
        """Global-buffer chunks of one column (``col_bytes``) each."""
        return self.gbuf_bytes // self.col_bytes

    @property
    def instr_bytes(self) -> int:
        """Every instruction is one 256-bit word: exactly one DRAM column."""
        return 32

    @property
    def pim_macs_per_col(self) -> int:
        """int8 MACs one bank's PIM unit performs per column command."""
        return self.col_bytes

    @property
    def pim_beats(self) -> int:
        """Cycles a bank's PIM engine multiplies one column for (``col_bytes`` /
        ``pim_multipliers``)."""
        return self.col_bytes // self.pim_multipliers

    # ----------------------------------------------------------------------------------------
    # DRAM address mapping: row | bank | column | byte
    def dram_map(self, addr: int) -> tuple[int, int, int, int]:
        """Byte address → ``(bank, row, col, byte)``."""
        if not 0 <= addr < self.dram_bytes:
            raise ConfigError(
                f"DRAM address {addr:#x} is outside the {self.dram_bytes:#x}-byte DRAM")
        byte = addr % self.col_bytes
        col = (addr // self.col_bytes) % self.cols_per_row
        bank = (addr // self.row_bytes) % self.dram_banks
        row = addr // (self.row_bytes * self.dram_banks)
        return bank, row, col, byte

    def dram_addr(self, bank: int, row: int, col: int = 0, byte: int = 0) -> int:
        """``(bank, row, col, byte)`` → byte address (inverse of :meth:`dram_map`)."""
        for what, v, n in (("bank", bank, self.dram_banks), ("row", row, self.bank_rows),
                           ("col", col, self.cols_per_row), ("byte", byte, self.col_bytes)):
            if not 0 <= v < n:
                raise ConfigError(f"DRAM {what} {v} is outside 0..{n - 1}")
        return ((row * self.dram_banks + bank) * self.cols_per_row + col) * self.col_bytes + byte

    def bank_group(self, bank: int) -> int:
        """Bank group of a bank: banks are grouped by ``bank % dram_bank_groups`` so that
        consecutive banks alternate groups (and back-to-back accesses may use tCCD_S)."""
        return bank % self.dram_bank_groups

    # ----------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first parameter that is out of range."""
        ints = ("array_rows", "array_cols", "vector_lanes", "dram_banks", "dram_bank_groups",
                "bank_rows", "cols_per_row", "col_bytes", "sp_bytes", "acc_elems", "sp_banks",
                "acc_banks", "gbuf_bytes", "pim_slots", "pim_multipliers", "lut_tables",
                "queue_depth")
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, not {v!r}")
        if not isinstance(self.timing, DramTiming):
            raise ConfigError(f"timing must be a DramTiming, not {self.timing!r}")
        # bank_rows need not be a power of two: the row is the most significant field of a
        # DRAM address, so fewer rows only lower the top of the address space (dram_bytes).
        for name in ("array_rows", "array_cols", "dram_banks", "dram_bank_groups",
                     "cols_per_row", "vector_lanes"):
            if not _is_pow2(getattr(self, name)):
                raise ConfigError(f"{name} must be a power of two, not {getattr(self, name)!r}")
        if not 2 <= self.array_rows <= 32 or not 2 <= self.array_cols <= 32:
            raise ConfigError(
                f"array size must be between 2 and 32 per side, not "
                f"{self.array_rows}x{self.array_cols}")
        if self.col_bytes != 32:
            raise ConfigError(f"col_bytes must be 32 (256-bit columns), not {self.col_bytes!r}")
        if self.row_width > self.col_bytes:
            raise ConfigError(
                f"row width {self.row_width} must not exceed the DRAM column ({self.col_bytes})")
        if self.row_width % self.vector_lanes:
            raise ConfigError(
                f"vector_lanes ({self.vector_lanes}) must divide the row width "
                f"({self.row_width})")
        if self.dram_banks % self.dram_bank_groups:
            raise ConfigError(
                f"dram_bank_groups ({self.dram_bank_groups}) must divide dram_banks "
                f"({self.dram_banks})")
        for name, size in (("sp_bytes", self.sp_bytes), ("acc_elems", self.acc_elems)):
            if size % self.row_width:
                raise ConfigError(
                    f"{name} ({size}) must be a multiple of the row width ({self.row_width})")
            if size > 1 << SRAM_ADDR_BITS:
                raise ConfigError(
                    f"{name} ({size}) does not fit the {SRAM_ADDR_BITS}-bit SRAM address field "
                    f"(at most {1 << SRAM_ADDR_BITS})")
        for name, rows in (("sp_banks", self.sp_rows), ("acc_banks", self.acc_rows)):
            banks = getattr(self, name)
            if not _is_pow2(banks) or rows % banks:
                raise ConfigError(
                    f"{name} must be a power of two dividing the SRAM's {rows} rows, "
                    f"not {banks!r}")
        if self.dram_bytes > 1 << DRAM_ADDR_BITS:
            raise ConfigError(
                f"DRAM size {self.dram_bytes} does not fit the {DRAM_ADDR_BITS}-bit address field")
        if self.bank_rows > 1 << PIM_ROW_BITS:
            raise ConfigError(f"bank_rows ({self.bank_rows}) exceeds {1 << PIM_ROW_BITS}")
        if self.cols_per_row >= 1 << PIM_COL_BITS:
            raise ConfigError(
                f"cols_per_row ({self.cols_per_row}) must be below {1 << PIM_COL_BITS}")
        if self.gbuf_bytes % self.col_bytes or not _is_pow2(self.gbuf_bytes):
            raise ConfigError(
                f"gbuf_bytes must be a power of two and a multiple of {self.col_bytes}, "
                f"not {self.gbuf_bytes!r}")
        if self.gbuf_chunks >= 1 << PIM_CHUNK_BITS or self.gbuf_bytes > 1 << GBUF_ADDR_BITS:
            raise ConfigError(f"gbuf_bytes ({self.gbuf_bytes}) is too large for the ISA")
        if self.pim_slots >= 1 << PIM_SLOT_BITS:
            raise ConfigError(f"pim_slots ({self.pim_slots}) must be below {1 << PIM_SLOT_BITS}")
        if self.pim_multipliers not in (self.col_bytes, self.col_bytes // 2):
            raise ConfigError(
                f"pim_multipliers must be {self.col_bytes} (a column per cycle) or "
                f"{self.col_bytes // 2} (a column in two cycles), not {self.pim_multipliers!r}")
        if self.timing.tCCD_L < self.pim_beats:
            raise ConfigError(
                f"pim_multipliers = {self.pim_multipliers} takes {self.pim_beats} cycles per "
                f"column, so timing.tCCD_L (the PIM column rate) must be at least "
                f"{self.pim_beats}, not {self.timing.tCCD_L}")
        if not 8 <= self.counter_bits <= 64:
            raise ConfigError(f"counter_bits must be between 8 and 64, not {self.counter_bits!r}")
        if not isinstance(self.gemm_core, bool):
            raise ConfigError(f"gemm_core must be True or False, not {self.gemm_core!r}")
        if self.lut_tables > 1 << LUT_ID_BITS:
            raise ConfigError(f"lut_tables ({self.lut_tables}) exceeds {1 << LUT_ID_BITS}")
        if self.queue_depth < 2 or not _is_pow2(self.queue_depth):
            raise ConfigError(
                f"queue_depth must be a power of two of at least 2, not {self.queue_depth!r}")

    def replace(self, **changes) -> AccelConfig:
        """A copy with some parameters changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict:
        """Plain-data description for reports and JSON output."""
        d = dataclasses.asdict(self)
        d["row_width"] = self.row_width
        d["dram_bytes"] = self.dram_bytes
        return d


PRESETS: dict[str, AccelConfig] = {
    # 8×8 array, HBM2-like channel of 16 banks × 128 rows × 1 KiB (2 MiB), 256 KiB scratchpad,
    # 256 KiB accumulator: holds the tiny GPT with room for its KV cache and programs.
    "default": AccelConfig(name="default"),
    # Small and fast for unit tests: 4×4 array, 4 banks × 64 rows (256 KiB DRAM).
    "tiny": AccelConfig(
        name="tiny", array_rows=4, array_cols=4, vector_lanes=4, dram_banks=4,
        dram_bank_groups=2, bank_rows=64, sp_bytes=16 * 1024, acc_elems=4 * 1024,
        gbuf_bytes=512, pim_slots=32, lut_tables=4),
    # The tiny-NPU comparison point: same memories as default, 16×16 array.
    "large": AccelConfig(name="large", array_rows=16, array_cols=16, vector_lanes=16),
    # ULX3S (LFE5U-85F) board config, docs/fpga.md: the PIM banks are block-RAM banks, 4 banks
    # × 80 rows × 1 KiB (320 KiB, 160 of the device's 208 DP16KD) hold the tiny GPT compiled
    # with the compact PIM-prefill image (one weight copy, 4 × 79 rows used). Block RAM has no
    # rows to open nor a data bus to turn around: every timing parameter is at its minimum,
    # refresh nearly never, except tCCD_L = 2: each PIM engine has 16 multipliers and takes
    # two cycles per column. With the wide products of the DSP policy that is 94 of the 156
    # DSPs; 32 multipliers per engine took all 156 and crowded the routing. No GEMM core: the
    # compact image prefills in the PIM banks too, so the array would never run, and its
    # logic, SRAM ports and DSPs cost routing the device does not have (row width 4). One ACC
    # and one SP bank: no crossbar, only each port's client multiplexer, and the same decode
    # cycles as two banks (four: one cycle per token fewer). 40-bit counters. 128 PIM slots
    # and a 512-byte global buffer: decode's attention at the last of the 128 positions needs
    # them (4 heads × 32 keys per bank; 4 heads × 4 chunks of probabilities).
    "fpga": AccelConfig(
        name="fpga", array_rows=4, array_cols=4, vector_lanes=4, gemm_core=False, dram_banks=4,
        dram_bank_groups=2, bank_rows=80, cols_per_row=32,
        timing=DramTiming(tCCD_S=1, tCCD_L=2, tRCD=1, tRP=1, tRAS=1, tRC=2, tRRD_S=1,
                          tRRD_L=1, tFAW=1, tREFI=65535, tRFC=2, tCL=2, tWR=1, tRTP=1,
                          tBURST=1),
        sp_bytes=4 * 1024, acc_elems=8 * 1024, sp_banks=1, acc_banks=1, gbuf_bytes=512,
        pim_slots=128, pim_multipliers=16, lut_tables=8, counter_bits=40),
}


def preset(name: str) -> AccelConfig:
    """Look up a named preset; the error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown config {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
