"""``llmaccel bench pimgemm``: decode GEMVs in the banks (PIM) against DMA + the GEMM core.

For each of the tiny GPT's decode GEMVs (and a large 1024×1024) y = W·x, with W int8 K×N and
x int8 of K elements, two complete accelerator programs run on the full top level, both
ending with y (int32) in the accumulator and both starting with x either on chip in SP, in each
path's own layout, as in decode (``--x-in sp``; a setup program, not measured, put it there) or
in DRAM (``--x-in dram``: the measured program DMA-loads it first):

* **PIM**: the weights in their PIM layout (``DramLayout.pim_matrix``, as the compiler places
  them for decode); x contiguous in SP, then exactly the compiler's decode GEMV
  (``CompiledGPT.decode``'s ``gemv``): PIM_WRGB of x, one PIM_MAC per segment of
  ``PimMatrix.mac_segments``, PIM_READ into ACC.
* **DMA + GEMM**: the weights in the systolic tile layout of prefill (``gemm_tiles``: per block
  of C output columns, K rows of W bytes); x in SP in the GEMM's A layout (one SP row per k,
  x in lane 0: a strided load of K one-byte rows puts it there), then the weights stream in chunks
  of ``chunk`` column blocks, each chunk DMA-loaded into its own SP buffer and multiplied with
  an M = 1 GEMM as soon as it has arrived. Buffers form a ring over the whole free scratchpad;
  the wait masks are derived by :class:`ProgramBuilder`, so a chunk's GEMM waits only for its
  own load and the loads run ahead of the GEMMs. (Wait masks name a unit, not an instruction: a
  load that reuses a buffer waits for every GEMM issued before it, so once per ring turn the
  load engine drains the GEMM queue — the only serialisation left.) The chunk size is the best
  of the powers of two (in blocks) on the cycle model unless ``--chunk`` fixes it.

Both y are checked against each other and a NumPy int64 reference. Cycles and counters come
from the backend (``--backend golden``: the cycle model of sim/golden/system_model.py;
``verilator``: the RTL counters, and the same session is replayed on the golden backend with the
RTL's START cycles, whose cycles and counters must be equal). Every measured run starts
``tRFC + 64`` cycles after a refresh is due, so both paths meet the refresh at the same phase
(:class:`Session`). DRAM bytes are the DMA counters
(``dram_read_bytes``, ``dram_write_bytes``: bytes across the channel's data bus); the PIM
column reads inside the banks are ``pim_macs`` (one MAC per weight byte read).
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import dataclass, field

import numpy as np

# (name, K, N): the same GEMVs as ``llmaccel bench pim``.
from llmaccel.sw.bench.pim import SHAPES

__all__ = ["DESCRIPTION", "SHAPES", "Case", "Session", "add_arguments", "best_chunk",
           "gemm_bound", "gemm_case", "measure", "pim_case", "report", "run", "run_case"]

DESCRIPTION = ("decode GEMVs in the banks (PIM) vs DMA + GEMM core on the full top level: "
               "cycles, speedup and DRAM bytes")

#: Fixed operand seed (logged in the result).
SEED = 2026


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default",
                        help="accelerator preset (default: default, 16 banks with HBM2 timing, "
                             "8×8 array)")
    parser.add_argument("--backend", default="golden", choices=("golden", "verilator"),
                        help="golden (cycle model) or verilator (RTL, checked against the "
                             "model); default: %(default)s")
    parser.add_argument("--shapes", default="all",
                        help="comma-separated GEMV names to run (substring match), or all")
    parser.add_argument("--x-in", default="both", choices=("sp", "dram", "both"),
                        help="where x starts: on chip in SP (as in decode), in DRAM (both "
                             "programs DMA it in), or both; default: %(default)s")
    parser.add_argument("--chunk", type=int, default=None, metavar="BLOCKS",
                        help="weight column blocks per DMA+GEMM chunk (default: the best power "
                             "of two on the cycle model)")


@dataclass
class Case:
    """One complete program and the DRAM contents it needs."""

    name: str
    path: str                           # "pim" or "gemm"
    K: int
    N: int
    base: int                           # DRAM address of the program
    regions: list[tuple[int, bytes]]    # (DRAM address, bytes) to load before the run
    y_addr: int                         # ACC element of y[0]
    y_stride: int                       # ACC elements between y[j] and y[j+1]
    n_instructions: int
    x_in: str = "dram"                  # where x starts: "dram" or "sp" (put there by setup)
    setup_base: int | None = None       # program that DMA-loads x into SP first (x_in "sp")
    extra: dict = field(default_factory=dict)


def _operands(K: int, N: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, K, N])
    w = rng.integers(-128, 128, size=(K, N), dtype=np.int8)
    x = rng.integers(-128, 128, size=K, dtype=np.int8)
    return w, x


def _builders(cfg, x_in: str):
    """(setup emitter or None, main builder, main emitter, emitter that loads x)."""
    from llmaccel.sw.compiler.emit import Emitter  # noqa: PLC0415
    from llmaccel.sw.compiler.program import ProgramBuilder  # noqa: PLC0415

    if x_in not in ("dram", "sp"):
        raise ValueError(f"x_in must be 'dram' or 'sp', not {x_in!r}")
    b = ProgramBuilder(cfg)
    e = Emitter(cfg, b)
    setup = Emitter(cfg, ProgramBuilder(cfg)) if x_in == "sp" else None
    return setup, b, e, setup or e


def _finish(lay, setup, b, regions: list[tuple[int, bytes]]):
    """Place the programs after the data; return (base, setup base, regions with programs)."""
    binary = b.binary()
    prog = lay.region("program", len(binary))
    regions = [*regions, (prog.addr, binary)]
    setup_base = None
    if setup is not None:
        setup.halt()
        sbin = setup.b.binary()
        sreg = lay.region("program.setup", len(sbin))
        regions.append((sreg.addr, sbin))
        setup_base = sreg.addr
    lay.check()
    return prog.addr, setup_base, regions


def pim_case(cfg, name: str, w: np.ndarray, x: np.ndarray, x_in: str = "dram") -> Case:
    """y = W·x in the banks, as the compiler's decode GEMV does it; x is DMA-loaded into SP
    first (``x_in="dram"``) or already there (``"sp"``: a setup program put it there)."""
    from llmaccel.hw.isa import Space  # noqa: PLC0415
    from llmaccel.sw.compiler.image import DramLayout, write_pim_matrix  # noqa: PLC0415
    from llmaccel.sw.compiler.program import CompileError  # noqa: PLC0415

    K, N = w.shape
    B = cfg.dram_banks
    if cfg.gbuf_bytes < K:
        raise CompileError(f"{name}: {K} inputs do not fit the {cfg.gbuf_bytes}-byte PIM "
                           f"global buffer of config {cfg.name!r}")
    if cfg.pim_slots < -(-N // B):
        raise CompileError(f"{name}: {N} outputs need {-(-N // B)} PIM slots per bank; config "
                           f"{cfg.name!r} has {cfg.pim_slots}")
    lay = DramLayout(cfg)
    mat = lay.pim_matrix("w", N, K, pack=False)
    rx = lay.region("x", K)
    img = np.zeros(lay.next_row * lay.grow_bytes, dtype=np.uint8)
    write_pim_matrix(img, mat, w, cfg)
    setup, b, e, ex = _builders(cfg, x_in)
    ex.load(Space.SP, dram=rx.addr, dram_stride=0, sram=0, sram_stride=0, rows=1, length=K)
    # The decode GEMV of CompiledGPT.decode, verbatim.
    e.wrgb(0, 0, K)
    for row, col, ncols, kc, slot in mat.mac_segments(cfg):
        e.mac(row=row, col=col, ncols=ncols, kc=kc, gb_chunk=0, slot=slot)
    e.pim_read(slot=0, nslots=-(-N // B), acc_addr=0)
    e.halt()
    w_lo, w_hi = mat.row0 * lay.grow_bytes, (mat.row0 + mat.rows(cfg)) * lay.grow_bytes
    base, setup_base, regions = _finish(lay, setup, b, [(w_lo, img[w_lo:w_hi].tobytes()),
                                                        (rx.addr, x.view(np.uint8).tobytes())])
    return Case(name, "pim", K, N, base, regions, 0, 1, len(b.instructions), x_in, setup_base,
                extra={"mac_instructions": len(mat.mac_segments(cfg)),
                       "weight_rows": mat.rows(cfg)})


def gemm_case(cfg, name: str, w: np.ndarray, x: np.ndarray, chunk: int,
              x_in: str = "dram") -> Case:
    """y = W·x as DMA + M=1 GEMMs, ``chunk`` column blocks per DMA, ring buffered; x is
    DMA-loaded into SP in the A layout first (``x_in="dram"``) or already there (``"sp"``)."""
    from llmaccel.hw.isa import Space  # noqa: PLC0415
    from llmaccel.sw.compiler.image import DramLayout, gemm_tiles  # noqa: PLC0415
    from llmaccel.sw.compiler.program import CompileError  # noqa: PLC0415

    K, N = w.shape
    R, C, W = cfg.array_rows, cfg.array_cols, cfg.row_width
    if R != C:
        raise CompileError(f"the compiler's tile layout needs a square array, not {R}x{C}")
    nb = -(-N // C)
    if not 1 <= chunk <= nb:
        raise ValueError(f"chunk must be in 1..{nb} blocks for {name}, not {chunk!r}")
    tiles = gemm_tiles(w, cfg)                     # (nb, K, W): block j, row k = W[k, jC:jC+C]
    blk = K * W                                    # bytes (SP elements) of one block
    x_sp = 0
    buf0 = K * W                                   # x in A layout: K rows of W, lane 0
    buf_bytes = chunk * blk
    nchunks = -(-nb // chunk)
    nbuf = min(nchunks, (cfg.sp_bytes - buf0) // buf_bytes)
    if nbuf < min(2, nchunks):
        raise CompileError(f"{name}: chunks of {chunk} blocks ({buf_bytes} bytes) leave no "
                           f"room for two buffers in the {cfg.sp_bytes}-byte scratchpad")
    if nb * C * W > cfg.acc_elems:
        raise CompileError(f"{name}: y needs {nb * C * W} ACC elements; config {cfg.name!r} "
                           f"has {cfg.acc_elems}")
    lay = DramLayout(cfg)
    rt = lay.region("tiles", tiles.size)
    rx = lay.region("x", K)
    setup, b, e, ex = _builders(cfg, x_in)
    ex.load(Space.SP, dram=rx.addr, dram_stride=1, sram=x_sp, sram_stride=W, rows=K, length=1)
    for i in range(nchunks):
        j0 = i * chunk
        cb = min(chunk, nb - j0)
        buf = buf0 + (i % nbuf) * buf_bytes
        e.load(Space.SP, dram=rt.addr + j0 * blk, dram_stride=blk, sram=buf, sram_stride=blk,
               rows=cb, length=blk)
        n = min(cb * C, N - j0 * C)
        e.gemm(m=1, n=n, k=K, a=x_sp, a_stride=K * W, b=buf, b_stride=blk, c=j0 * C * W,
               c_stride=n * W)
    e.halt()
    base, setup_base, regions = _finish(lay, setup, b,
                                        [(rt.addr, tiles.view(np.uint8).tobytes()),
                                         (rx.addr, x.view(np.uint8).tobytes())])
    return Case(name, "gemm", K, N, base, regions, 0, W, len(b.instructions), x_in, setup_base,
                extra={"chunk_blocks": chunk, "chunks": nchunks, "buffers": nbuf,
                       "chunk_bytes": buf_bytes})


def _read_y(be, case: Case) -> np.ndarray:
    n = (case.N - 1) * case.y_stride + 1
    if hasattr(be, "read_acc"):
        a = be.read_acc(case.y_addr, n)
    else:
        a = be.state()["acc"][case.y_addr:case.y_addr + n]
    return np.asarray(a, dtype=np.int64)[::case.y_stride][:case.N]


class Session:
    """One backend running cases one after another, every measured run started at the same
    DRAM refresh phase: ``tRFC + 64`` cycles after a refresh is due (refresh runs from reset
    every tREFI), so a run shorter than about tREFI − tRFC sees no refresh and a longer one
    sees its share — the same conditions for both paths (``Backend.refresh_phase``, set for
    the measured runs and cleared for their setup runs).

    With ``replay`` (the START cycles of an RTL session) the golden backend repeats that
    session exactly instead."""

    def __init__(self, cfg, backend: str = "golden", *, replay: list[int] | None = None,
                 check_races: bool = True):
        from llmaccel.sim.backends import bench_refresh_phase, get_backend  # noqa: PLC0415
        from llmaccel.sim.backends.golden import GoldenBackend  # noqa: PLC0415

        self.cfg = cfg
        self.phase = bench_refresh_phase(cfg)
        if backend == "golden":
            self.be = GoldenBackend(cfg, start_cycles=replay, check_races=check_races)
        else:
            self.be = get_backend(backend, cfg, max_cycles=10_000_000)
        self.start_cycles: list[int] = []

    def _run(self, base: int, *, align: bool):
        from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

        be = self.be
        be.refresh_phase = self.phase if align else None
        r = be.run(base, max_cycles=10_000_000)
        if not r.ok:
            raise LlmaccelError(f"the program at {base:#x} stopped with {r.error.name}: "
                                f"{r.message}")
        self.start_cycles.append(r.start_cycle)
        return r

    def run_case(self, case: Case) -> dict:
        """Load ``case``, run its setup (if any) and then, measured, its program."""
        for addr, data in case.regions:
            self.be.load_dram(addr, data)
        if case.setup_base is not None:
            self._run(case.setup_base, align=False)
        r = self._run(case.base, align=True)
        c = r.counters
        return {"cycles": r.cycles, "start_cycle": r.start_cycle, "y": _read_y(self.be, case),
                "dram_read_bytes": c["dram_read_bytes"],
                "dram_write_bytes": c["dram_write_bytes"],
                "pim_macs": c["pim_macs"], "gemm_macs": c["gemm_macs"],
                "instructions": c["instructions"],
                "refreshes": c.get("raw", {}).get("dram_refreshes"),
                "busy": dict(c.get("busy", {}))}

    def close(self) -> None:
        self.be.close()


def run_case(cfg, case: Case, backend: str = "golden") -> dict:
    """``case`` alone on a fresh backend (figures and y)."""
    s = Session(cfg, backend)
    try:
        return s.run_case(case)
    finally:
        s.close()


def best_chunk(cfg, name: str, w: np.ndarray, x: np.ndarray,
               x_in: str = "dram") -> tuple[int, dict[int, int]]:
    """The chunk size (column blocks, a power of two) with the fewest model cycles."""
    from llmaccel.sw.compiler.program import CompileError  # noqa: PLC0415

    nb = -(-w.shape[1] // cfg.array_cols)
    sweep = {}
    c = 1
    while c <= nb:
        try:
            case = gemm_case(cfg, name, w, x, c, x_in)
        except CompileError:
            if not sweep:       # not even one column block compiles: say why
                raise
            break
        s = Session(cfg, check_races=False)
        sweep[c] = s.run_case(case)["cycles"]
        c *= 2
    return min(sweep, key=sweep.get), sweep


def _select(names: str) -> list[tuple[str, int, int]]:
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

    if names == "all":
        return list(SHAPES)
    want = [s.strip() for s in names.split(",") if s.strip()]
    out = [s for s in SHAPES if any(p in s[0] for p in want)]
    if not out:
        raise LlmaccelError(f"no GEMV matches --shapes {names!r}; choose from "
                            f"{', '.join(s[0] for s in SHAPES)}")
    return out


_COMPARED = ("cycles", "dram_read_bytes", "dram_write_bytes", "pim_macs", "gemm_macs",
             "instructions", "refreshes")


def measure(cfg, shapes: list[tuple[str, int, int]], backend: str = "golden",
            chunk: int | None = None, x_in: tuple[str, ...] = ("sp", "dram")) -> dict:
    """Run both paths of every shape (for every place x starts in) in one backend session;
    check the results (and on an RTL backend, cycles and counters against a golden replay)."""
    t0 = time.time()
    cases, sweeps, refs, keys = [], {}, {}, []
    for name, K, N in shapes:
        w, x = _operands(K, N)
        refs[name] = w.astype(np.int64).T @ x.astype(np.int64)
        for xi in x_in:
            if chunk is None:
                c, sweeps[(name, xi)] = best_chunk(cfg, name, w, x, xi)
            else:
                c = min(chunk, -(-N // cfg.array_cols))
            cases += [pim_case(cfg, name, w, x, xi), gemm_case(cfg, name, w, x, c, xi)]
            keys.append((name, K, N, xi))
    t_build = time.time() - t0
    s = Session(cfg, backend)
    try:
        runs = [s.run_case(c) for c in cases]
    finally:
        s.close()
    model_equals_rtl = None
    mismatches = []
    if backend != "golden":
        g = Session(cfg, replay=s.start_cycles)
        replay = [g.run_case(c) for c in cases]
        for c, r, m in zip(cases, runs, replay, strict=True):
            for k in _COMPARED:
                if r[k] != m[k]:
                    mismatches.append(f"{c.name} {c.path} x in {c.x_in} {k}: RTL {r[k]}, "
                                      f"model {m[k]}")
            if not np.array_equal(r["y"], m["y"]):
                mismatches.append(f"{c.name} {c.path}: y differs from the golden model")
            r["cycles_model"] = m["cycles"]
        model_equals_rtl = not mismatches
    rows = []
    for i, (name, K, N, xi) in enumerate(keys):
        pc, gc = cases[2 * i], cases[2 * i + 1]
        p, g = runs[2 * i], runs[2 * i + 1]
        np.testing.assert_array_equal(p["y"], refs[name], err_msg=f"{name}: PIM y")
        np.testing.assert_array_equal(g["y"], refs[name], err_msg=f"{name}: DMA+GEMM y")
        np.testing.assert_array_equal(p["y"], g["y"], err_msg=f"{name}: PIM vs DMA+GEMM")
        rows.append({
            "name": name, "K": K, "N": N, "x_in": xi, "weight_bytes": K * N,
            "pim_cycles": p["cycles"], "gemm_cycles": g["cycles"],
            "pim_cycles_model": p.get("cycles_model"), "gemm_cycles_model": g.get("cycles_model"),
            "speedup": g["cycles"] / p["cycles"],
            "pim_dram_bytes": p["dram_read_bytes"] + p["dram_write_bytes"],
            "pim_in_bank_bytes": p["pim_macs"],
            "gemm_dram_bytes": g["dram_read_bytes"] + g["dram_write_bytes"],
            "pim_refreshes": p["refreshes"], "gemm_refreshes": g["refreshes"],
            "pim_instructions": pc.n_instructions, "gemm_instructions": gc.n_instructions,
            "pim_mac_instructions": pc.extra["mac_instructions"],
            "gemm_chunk_blocks": gc.extra["chunk_blocks"], "gemm_chunks": gc.extra["chunks"],
            "gemm_buffers": gc.extra["buffers"],
            "pim_busy": p["busy"], "gemm_busy": g["busy"],
            "chunk_sweep": sweeps.get((name, xi)),
            "bit_exact": True,
        })
    return {
        "benchmark": "pimgemm", "config": cfg.name, "backend": backend,
        "banks": cfg.dram_banks, "array": f"{cfg.array_rows}x{cfg.array_cols}",
        "timing": {k: getattr(cfg.timing, k) for k in ("tCCD_L", "tBURST", "tRCD", "tRP",
                                                       "tREFI", "tRFC")},
        "seed": SEED, "date": datetime.date.today().isoformat(),
        "model_equals_rtl": model_equals_rtl, "mismatches": mismatches,
        "rows": rows, "build_seconds": round(t_build, 1),
        "wall_seconds": round(time.time() - t0, 1),
    }


def gemm_bound(K: int, N: int, array_cols: int) -> int:
    """Cycles of a perfect DMA + M=1 GEMM: the scratchpad takes one W-byte row per cycle and an
    M=1 GEMM reads one B row (C weights) per cycle, so ⌈N/C⌉·K cycles with every latency,
    refresh and instruction overhead removed."""
    return -(-N // array_cols) * K


def run(args: argparse.Namespace) -> dict:
    from llmaccel.hw.config import preset  # noqa: PLC0415
    from llmaccel.hw.errors import LlmaccelError  # noqa: PLC0415

    cfg = preset(args.config)
    x_in = ("sp", "dram") if args.x_in == "both" else (args.x_in,)
    result = measure(cfg, _select(args.shapes), args.backend, args.chunk, x_in)
    if result["model_equals_rtl"] is False:
        raise LlmaccelError("the RTL differs from the cycle model: "
                            + "; ".join(result["mismatches"]))
    return result


def report(result: dict) -> str:
    rtl = result["backend"] != "golden"
    src = "RTL (Verilator) counters" if rtl else "golden cycle model"
    lines = [f"PIM GEMV vs DMA + GEMM core on {result['config']} ({result['banks']} banks, "
             f"{result['array']} array); cycles from the {src}", ""]
    cols = int(result["array"].split("x")[1])
    head = (f"{'GEMV':18} {'x in':4} {'PIM cyc':>8} {'DMA+GEMM':>9} {'speedup':>8} "
            f"{'bound':>7} {'vs bound':>8} {'PIM bus B':>9} {'in-bank B':>9} {'GEMM bus B':>10} "
            f"{'REF':>5} {'chunk':>5} {'bufs':>4}")
    lines += [head, "-" * len(head)]
    for r in result["rows"]:
        bound = gemm_bound(r["K"], r["N"], cols)
        lines.append(f"{r['name']:18} {r['x_in'].upper():4} {r['pim_cycles']:>8} "
                     f"{r['gemm_cycles']:>9} {r['speedup']:>7.2f}x {bound:>7} "
                     f"{bound / r['pim_cycles']:>7.2f}x {r['pim_dram_bytes']:>9} "
                     f"{r['pim_in_bank_bytes']:>9} {r['gemm_dram_bytes']:>10} "
                     f"{r['pim_refreshes']!s:>2}/{r['gemm_refreshes']!s:<2} "
                     f"{r['gemm_chunk_blocks']:>5} {r['gemm_buffers']:>4}")
    lines.append("")
    lines.append("x in: where x starts (SP: on chip, as in decode; DRAM: both programs DMA it "
                 "in). bus B: DMA bytes across the channel (dram_read_bytes + dram_write_bytes); "
                 "in-bank B: weight bytes the PIM units read (pim_macs); bound: cycles of a "
                 "perfect DMA+GEMM (one W-byte weight row per cycle into SP and into the array, "
                 "no latency, no refresh), vs bound: bound / PIM cycles; REF: refreshes during "
                 "the PIM / DMA+GEMM run; chunk: weight column blocks per DMA + GEMM step; "
                 "bufs: SP buffers in the ring.")
    lines.append("y bit-exact (PIM == DMA+GEMM == NumPy) for every GEMV.")
    if rtl:
        lines.append(f"RTL cycles and counters == golden replay: {result['model_equals_rtl']}")
    lines.append(f"{result['date']}, {result['wall_seconds']} s")
    return "\n".join(lines)
