"""Host register map of the accelerator top level: the one definition the RTL bus slave, the
simulation backends, the FPGA UART bridge and the docs use.

The host bus is Wishbone classic (B4), 32-bit data, byte-addressed registers (word-aligned;
the Wishbone ``adr`` carries the word address ``byte_address >> 2``). All registers are 32 bits.

Memory access goes through a window: write ``MEM_SEL`` (which memory) and ``MEM_ADDR`` (where),
then read or write ``MEM_DATA`` repeatedly; every access to ``MEM_DATA`` advances ``MEM_ADDR``
by one word. DRAM is addressed in bytes (word-aligned), SP in int8 elements (four per word,
little-endian), ACC in int32 elements (one per word).
"""

from __future__ import annotations

import enum

__all__ = ["COUNTERS", "HostMem", "Reg", "Status", "config_word", "counter_offset"]

ID_VALUE = 0x4C4C4D41   # "LLMA"


class Reg(enum.IntEnum):
    """Register byte offsets."""

    ID = 0x000          # RO: ID_VALUE
    CTRL = 0x004        # WO: bit 0 START (run the program at PROG_BASE), bit 1 CLEAR_COUNTERS
    STATUS = 0x008      # RO: Status
    ERROR = 0x00C       # RO: ErrorCode of the last run (hw/isa.py)
    ERROR_PC = 0x010    # RO: program counter of the failing instruction
    PROG_BASE = 0x014   # RW: DRAM byte address of the first instruction
    WATCHDOG = 0x018    # RW: cycle limit of a run (0 = none); exceeding it is ErrorCode.WATCHDOG
    CONFIG = 0x01C      # RO: array rows | cols << 8 | banks << 16 | row width << 24
    MEM_SEL = 0x040     # RW: HostMem
    MEM_ADDR = 0x044    # RW: address in the selected memory (see module docstring)
    MEM_DATA = 0x048    # RW: data word; each access advances MEM_ADDR
    COUNTER_BASE = 0x100  # RO: 64-bit counters, low word then high word, in COUNTERS order


class Status(enum.IntEnum):
    IDLE = 0
    RUNNING = 1
    DONE = 2
    ERROR = 3


class HostMem(enum.IntEnum):
    DRAM = 0
    SP = 1
    ACC = 2


#: Performance counters, in register order. Each is 64 bits (two registers). ``busy_*`` count
#: cycles a unit is executing an instruction; ``stall_*`` cycles its queue head waits for its
#: wait mask; ``retired_*`` instructions completed; ``sram_conflicts`` cycles in which two units
#: used one SRAM bank port (hw/sram.py) — always 0 for a program the golden model accepts.
COUNTERS = (
    "cycles",
    "retired_ctrl", "retired_load", "retired_store", "retired_gemm", "retired_pim",
    "retired_vec",
    "busy_load", "busy_store", "busy_gemm", "busy_pim", "busy_vec",
    "stall_load", "stall_store", "stall_gemm", "stall_pim", "stall_vec",
    "gemm_macs", "pim_macs",
    "dram_read_bytes", "dram_write_bytes",
    "dram_row_hits", "dram_row_misses", "dram_activates", "dram_refreshes",
    "sram_conflicts",
)


def counter_offset(name: str) -> int:
    """Byte offset of the low word of counter ``name``."""
    return Reg.COUNTER_BASE + 8 * COUNTERS.index(name)


def config_word(cfg) -> int:
    """The CONFIG register's value for an ``AccelConfig``: array rows | cols << 8 | banks << 16
    | row width << 24 (the host checks it against the config it compiled for)."""
    fields = (cfg.array_rows, cfg.array_cols, cfg.dram_banks, cfg.row_width)
    return sum(v << (8 * i) for i, v in enumerate(fields))
