"""The command line on the RTL backends: `llmaccel generate` runs on Verilator by default and
matches the golden backend; `--trace` writes a waveform; `llmaccel run-program --backend X`
runs a program on any backend and reports the RTL counters."""

import json

import pytest

from llmaccel.sim.backends import BACKENDS
from llmaccel.sw import cli


def _json(capsys, argv) -> dict:
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_backend_choices_are_the_backends():
    assert tuple(cli.BACKENDS) == tuple(BACKENDS)


def test_generate_runs_on_verilator_by_default_and_matches_golden(capsys):
    rtl = _json(capsys, ["generate", "--prompt", "def ", "--tokens", "2", "--json"])
    gold = _json(capsys, ["generate", "--prompt", "def ", "--tokens", "2", "--json",
                          "--backend", "golden"])
    assert rtl["backend"] == "verilator" and rtl["cycles_source"] == "rtl"
    assert rtl["tokens"] == gold["tokens"] and rtl["text"] == gold["text"]
    assert rtl["prefill_cycles"] > 0 and len(rtl["decode_cycles"]) == 1
    assert rtl["dram_bytes"] == gold["dram_bytes"]


def test_trace_needs_an_rtl_backend(capsys, tmp_path):
    assert cli.main(["generate", "--backend", "golden", "--trace", str(tmp_path / "w.vcd"),
                     "--tokens", "1"]) == 2
    assert "--trace needs an RTL backend" in capsys.readouterr().err


PROGRAM = """
dma_load space=sp dram_addr=0x100 dram_stride=8 sram_addr=0 sram_stride=8 rows=4 len=8
vadd dst=acc:64:8 src1=sp:0:8 rows=4 src2=imm imm=3 wait=load
dma_store space=acc dram_addr=0x400 dram_stride=32 sram_addr=64 sram_stride=8 rows=4 len=8 \
wait=vec
halt
""".replace("\\\n", "")


# Verilator on the default config (the build the other tests use) reads every memory back for
# the digests; the Amaranth simulator on the small config writes a waveform instead (reading
# 256 KiB through its bus would take minutes).
@pytest.mark.parametrize(("backend", "config", "digests", "trace"), [
    ("verilator", "default", True, False), ("amaranth", "tiny", False, True)])
def test_run_program_reports_rtl_counters_like_golden(backend, config, digests, trace, capsys,
                                                      tmp_path):
    src = tmp_path / "p.s"
    src.write_text(PROGRAM)
    argv = ["run-program", str(src), "--config", config, "--json", "--base", "0x1000"]
    gold = _json(capsys, argv)
    wave = tmp_path / "w.vcd"
    extra = (["--digests"] if digests else []) + (["--trace", str(wave)] if trace else [])
    rtl = _json(capsys, [*argv, "--backend", backend, *extra])
    assert rtl["backend"] == backend
    assert rtl["status"] == gold["status"] == "done"
    for key in ("instructions", "per_unit", "dram_read_bytes", "dram_write_bytes"):
        assert rtl[key] == gold[key], key
    assert rtl["cycles"] > 0
    if digests:
        for mem in ("dram", "sp", "acc"):
            assert rtl["digests"][mem] == gold["digests"][mem], mem
    if trace:
        assert wave.stat().st_size > 1000
