"""hw/config.py: presets, validation messages, the DRAM address mapping."""

import dataclasses

import pytest

from llmaccel.hw.config import PRESETS, AccelConfig, ConfigError, DramTiming, preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_named(name):
    cfg = preset(name)
    assert cfg.name == name
    cfg.validate()
    assert cfg.dram_bytes == cfg.dram_banks * cfg.bank_rows * cfg.cols_per_row * 32


def test_default_is_8x8_with_16_banks_and_hbm2_timing():
    cfg = preset("default")
    assert (cfg.array_rows, cfg.array_cols, cfg.dram_banks) == (8, 8, 16)
    t = cfg.timing
    assert (t.tCCD_S, t.tCCD_L, t.tRCD, t.tRP, t.tRAS, t.tRC, t.tFAW, t.tREFI, t.tRFC) == \
        (2, 4, 14, 14, 33, 47, 16, 3900, 350)
    assert preset("tiny").array_rows == 4


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("default").array_rows = 4


@pytest.mark.parametrize(("changes", "message"), [
    ({"array_rows": 6}, "array_rows must be a power of two, not 6"),
    ({"dram_banks": 12}, "dram_banks must be a power of two"),
    ({"vector_lanes": 16}, "vector_lanes .16. must divide the row width .8."),
    ({"col_bytes": 64}, "col_bytes must be 32"),
    ({"sp_bytes": 1 << 21}, "sp_bytes .2097152. does not fit the 20-bit SRAM address field"),
    ({"acc_elems": 100}, "acc_elems .100. must be a multiple of the row width"),
    ({"bank_rows": 1 << 20}, "DRAM size .* does not fit the 32-bit address field"),
    ({"queue_depth": 3}, "queue_depth must be a power of two"),
    ({"array_cols": 0}, "array_cols must be a positive integer, not 0"),
    ({"gbuf_bytes": 48}, "gbuf_bytes must be a power of two"),
    ({"dram_bank_groups": 32}, "dram_bank_groups .32. must divide dram_banks"),
    ({"sp_banks": 3}, "sp_banks must be a power of two dividing the SRAM's 32768 rows, not 3"),
    ({"acc_elems": 24, "acc_banks": 4}, "acc_banks must be a power of two dividing the SRAM's 3 "
                                        "rows, not 4"),
    ({"acc_banks": 0}, "acc_banks must be a positive integer, not 0"),
    ({"pim_multipliers": 8}, "pim_multipliers must be 32 .a column per cycle. or 16 .a column "
                             "in two cycles., not 8"),
    ({"pim_multipliers": 16, "timing": DramTiming(tCCD_S=1, tCCD_L=1, tBURST=1)},
     "pim_multipliers = 16 takes 2 cycles per column, so timing.tCCD_L .the PIM column rate. "
     "must be at least 2, not 1"),
    ({"gemm_core": 0}, "gemm_core must be True or False, not 0"),
    ({"counter_bits": 65}, "counter_bits must be between 8 and 64, not 65"),
])
def test_invalid_configs_name_the_parameter(changes, message):
    with pytest.raises(ConfigError, match=message):
        preset("default").replace(**changes)


def test_invalid_timing():
    with pytest.raises(ConfigError, match=r"tRC \(40\) must be at least tRAS \+ tRP \(47\)"):
        DramTiming(tRC=40)
    with pytest.raises(ConfigError, match=r"tCCD_L \(1\) must be at least tCCD_S \(2\)"):
        DramTiming(tCCD_L=1)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown config 'huge'; choose one of default"):
        preset("huge")


def test_rectangular_array_uses_the_larger_side_as_row_width():
    cfg = AccelConfig(array_rows=4, array_cols=8, vector_lanes=8)
    assert cfg.row_width == 8


def test_dram_mapping_is_row_bank_col_byte():
    cfg = preset("default")
    assert cfg.dram_map(0) == (0, 0, 0, 0)
    assert cfg.dram_map(31) == (0, 0, 0, 31)
    assert cfg.dram_map(32) == (0, 0, 1, 0)
    assert cfg.dram_map(cfg.row_bytes) == (1, 0, 0, 0)
    assert cfg.dram_map(cfg.row_bytes * cfg.dram_banks) == (0, 1, 0, 0)
    for addr in (0, 12345, 987654, cfg.dram_bytes - 1):
        assert cfg.dram_addr(*cfg.dram_map(addr)) == addr
    with pytest.raises(ConfigError, match="outside"):
        cfg.dram_map(cfg.dram_bytes)
    with pytest.raises(ConfigError, match=r"bank 16 is outside 0\.\.15"):
        cfg.dram_addr(16, 0)


def test_bank_rows_need_not_be_a_power_of_two():
    # The row is the top field of an address: 48 rows end DRAM at 48 · banks · row_bytes.
    cfg = preset("tiny").replace(bank_rows=48)
    assert cfg.dram_bytes == 48 * cfg.dram_banks * cfg.row_bytes == 196608
    top = cfg.dram_bytes - 1
    assert cfg.dram_map(top) == (cfg.dram_banks - 1, 47, cfg.cols_per_row - 1, 31)
    assert cfg.dram_addr(cfg.dram_banks - 1, 47, cfg.cols_per_row - 1, 31) == top
    with pytest.raises(ConfigError, match="outside"):
        cfg.dram_map(cfg.dram_bytes)
    with pytest.raises(ConfigError, match=r"row 48 is outside 0\.\.47"):
        cfg.dram_addr(0, 48)
    assert preset("fpga").replace(bank_rows=80).dram_bytes == 80 * 4 * 1024


def test_bank_groups_alternate():
    cfg = preset("default")
    assert [cfg.bank_group(b) for b in range(5)] == [0, 1, 2, 3, 0]
