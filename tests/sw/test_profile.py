"""``llmaccel profile``: the per-op breakdown of one program adds up to the run's own counters,
profiling changes nothing about the run, and the Chrome trace holds every instruction and DRAM
command."""

import itertools
import json

import pytest

from llmaccel.hw.config import preset
from llmaccel.hw.errors import LlmaccelError
from llmaccel.sim.backends.golden import GoldenBackend
from llmaccel.sw.cli import main
from llmaccel.sw.compiler import CompiledGPT
from llmaccel.sw.driver import Generator, load_model
from llmaccel.sw.profile import chrome_trace, profile_generation, report

CFG = preset("default")
PROMPT = list(b"de")


@pytest.fixture(scope="module")
def qmodel():
    return load_model()[1]


@pytest.fixture(scope="module")
def prof(qmodel):
    return profile_generation(CFG, qmodel, PROMPT, 3)


def test_ops_partition_the_program_and_its_busy_cycles(prof):
    spans = [(o.first, o.end) for o in prof.ops]
    assert spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert [o.name for o in prof.ops][:3] == ["embed", "h.0.attention", "h.0.mlp"]
    # Every busy cycle belongs to one op, and the totals are the run's busy counters.
    for unit, busy in prof.busy.items():
        assert sum(o.busy.get(unit, 0) for o in prof.ops) == busy
        assert busy == prof.counters[f"busy_{unit.lower()}"], unit
    assert 0 <= prof.idle < prof.cycles
    assert sum(n for _, n, _, _ in prof.by_kind()) == len(prof.ops)
    assert prof.dram["MAC"] > 0 and "REF" in report(prof)


def test_profiling_does_not_change_the_run(prof, qmodel):
    be = GoldenBackend(CFG)
    res = Generator(CompiledGPT(qmodel, CFG), be).generate(PROMPT, 3)
    assert prof.kind == "decode" and prof.position == len(PROMPT) + 1
    assert prof.cycles == res.steps[-1].cycles
    assert prof.counters == be.last_report.counters


def test_chrome_trace_holds_every_instruction_and_dram_command(prof, tmp_path):
    path = tmp_path / "t.json"
    chrome_trace(prof, path)
    ev = json.loads(path.read_text())["traceEvents"]
    units = [e for e in ev if e["ph"] == "X" and e["pid"] == 1 and e["tid"] > 0]
    assert len(units) == prof.instructions
    assert len([e for e in ev if e["ph"] == "i"]) == sum(prof.dram.values())
    assert all(0 <= e["ts"] < prof.cycles for e in units)


def test_cli_json_and_errors(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["profile", "--prompt", "de", "--tokens", "2", "--step", "prefill",
                 "--chrome-trace", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["kind"] == "prefill" and got["cycles"] > 0 and out.exists()
    with pytest.raises(LlmaccelError, match="at least 2 new tokens"):
        profile_generation(CFG, None, PROMPT, 1)
    assert main(["profile", "--prompt", "de", "--tokens", "2", "--index", "5"]) != 0
    assert "out of range" in capsys.readouterr().err
