"""Project rules: docs generated from the code, CI runs the README's command, packaging."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from llmaccel.sw import isadoc
from llmaccel.sw.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_isa_doc_is_generated_from_hw_isa():
    assert isadoc.DOC_PATH.read_text() == isadoc.render(), \
        "docs/isa.md is stale: run `llmaccel isadoc --write`"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmds = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert "make run" in cmds and "make test" in cmds
    ci_cmds = [ln.strip() for ln in ci.splitlines()
               if ln.strip() and not ln.strip().startswith("#") and ln.strip().startswith("make")]
    assert ci_cmds == ["make test"]


def test_top_level_layout():
    names = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
    assert {"hw", "sim", "sw", "tests", "constraints", "docs", "pyproject.toml", "Makefile",
            "README.md"} <= names
    assert (ROOT / ".ci" / "run").exists()


def test_every_code_folder_is_a_listed_subpackage():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set()
    for top in ("hw", "sim", "sw"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            found.add("llmaccel." + ".".join(rel))
    assert found == listed
    assert cfg["package-dir"] == {"llmaccel.hw": "hw", "llmaccel.sim": "sim",
                                  "llmaccel.sw": "sw"}


def test_no_top_level_hw_sim_sw_packages_are_importable():
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')];"
            "print([n for n in ('hw', 'sim', 'sw') if importlib.util.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd="/", check=True).stdout.strip()
    assert out == "[]"


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


@pytest.mark.parametrize("sub", _subcommands())
def test_every_subcommand_has_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    assert "usage: llmaccel" in capsys.readouterr().out


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.s"
    bad.write_text("gemm m=99999\n")
    assert main(["run-program", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmaccel: error: line 1: GEMM field 'm' = 99999")
    assert "Traceback" not in err
    assert main(["config", "--config", "nope"]) == 2
    assert main(["run-program", str(tmp_path / "missing.s")]) == 2


def test_run_program_reports_machine_errors_with_exit_1(tmp_path, capsys):
    prog = tmp_path / "p.s"
    prog.write_text("nop\ngemm m=4 n=4 k=4 a_addr=3\nhalt\n")
    assert main(["run-program", str(prog), "--config", "tiny"]) == 1
    assert "MISALIGNED at pc 0x20" in capsys.readouterr().out


def test_demo_runs_and_checks_itself(capsys):
    assert main(["demo", "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "equals NumPy: True" in out and "equals NumPy: False" not in out


def test_gemm_commands_explain_a_config_without_a_gemm_core(tmp_path, capsys):
    assert main(["demo", "--config", "fpga"]) == 2
    assert "config 'fpga' has no GEMM core" in capsys.readouterr().err
    prog = tmp_path / "p.s"
    prog.write_text("nop\ngemm m=4 n=4 k=4\nhalt\n")
    assert main(["run-program", str(prog), "--config", "fpga"]) == 1
    assert "ILLEGAL_OPCODE at pc 0x20" in capsys.readouterr().out
