"""``verilator --lint-only -Wall`` on generated Verilog, with documented waivers.

Every waiver is a warning category that Amaranth's Verilog generator produces by construction;
each one names its reason here and in docs/verilog.md. Anything else fails the lint.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from llmaccel.sim.tools import verilator_bin, verilator_env

__all__ = ["WAIVERS", "LintError", "lint_verilog"]

#: Warning category → why it is waived for generated code.
WAIVERS: dict[str, str] = {
    "PROCASSINIT": "Amaranth declares every register with its init value (the power-on state "
                   "on FPGAs and in simulation) and also assigns it in the reset branch.",
    "UNUSEDSIGNAL": "Amaranth emits a named wire for every signal of the design, including "
                    "struct-field views and memory-port wires kept for waveforms; unused ones "
                    "are names, not logic.",
    "WIDTHEXPAND": "Yosys writes mixed-width operands for signed arithmetic and comparisons; "
                   "Verilog's implicit widening gives exactly Amaranth's semantics.",
    "WIDTHTRUNC": "The same generator pattern on the assignment side: results are truncated "
                  "to the declared width as Amaranth specifies.",
    "CASEINCOMPLETE": "Amaranth's FSMs compile to casez blocks without a default branch; the "
                      "state register only ever holds the encoded states.",
    "DECLFILENAME": "All modules of a design are emitted into one file named after the top "
                    "module; every submodule therefore has a different name from its file.",
}


class LintError(AssertionError):
    """Verilator reported a warning that is not waived."""


def lint_verilog(text: str, top: str, *, extra_waivers: dict[str, str] | None = None) -> str:
    """Lint Verilog ``text`` with top module ``top``; return Verilator's output.

    Raises :class:`LintError` listing the unwaived warnings.
    """
    waivers = dict(WAIVERS, **(extra_waivers or {}))
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / f"{top}.v"
        src.write_text(text)
        args = [str(verilator_bin()), "--lint-only", "-Wall", "--top-module", top]
        args += [f"-Wno-{w}" for w in waivers]
        r = subprocess.run([*args, str(src)], env=verilator_env(), capture_output=True,
                           text=True, check=False)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("%")]
        raise LintError(f"verilator lint of {top} failed:\n" + "\n".join(lines[:40]))
    return r.stderr
