"""Instruction emitters with the memory accesses each instruction makes.

Thin wrappers over :class:`ProgramBuilder.emit` that compute the SRAM/DRAM ranges from the
operands, so every lowering step states only what it wants done.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmaccel.hw.accelerator import read_port
from llmaccel.hw.config import AccelConfig
from llmaccel.hw.isa import Opcode, Space, Src2Mode

from .program import Access, CompileError, ProgramBuilder

__all__ = ["Emitter", "Opnd"]


@dataclass(frozen=True)
class Opnd:
    """A row stream: element address of row 0 and the element stride between rows."""

    space: Space
    addr: int
    stride: int

    @property
    def mem(self) -> str:
        return "SP" if self.space is Space.SP else "ACC"

    def field(self) -> dict:
        return {"space": self.space, "addr": self.addr, "stride": self.stride}


def sp(addr: int, stride: int) -> Opnd:
    return Opnd(Space.SP, addr, stride)


def acc(addr: int, stride: int) -> Opnd:
    return Opnd(Space.ACC, addr, stride)


class Emitter:
    """Builds instructions for one program."""

    def __init__(self, cfg: AccelConfig, builder: ProgramBuilder):
        self.cfg = cfg
        self.b = builder
        self.W = cfg.row_width

    # ---------------------------------------------------------------------------------------
    def _stream(self, o: Opnd, rows: int, width: int | None = None,
                client: str | None = None) -> Access:
        """The elements ``rows`` rows of ``o`` span; ``client`` names the SRAM read client (for
        its bank read port) when the stream is read."""
        w = self.W if width is None else width
        ends = (o.addr, o.addr + (rows - 1) * o.stride)
        port = read_port(o.space, client) if client else 0
        return Access(o.mem, min(ends), max(ends) + w, port)

    def vec(self, opcode: Opcode, dst: Opnd, src1: Opnd, rows: int, *, src2: Opnd | None = None,
            mode: Src2Mode = Src2Mode.VEC, imm: int = 0, shift: int = 0) -> None:
        """Element-wise op (VADD … VISQRT, VLUT, VRECIP, VMASK)."""
        reads = [self._stream(src1, rows, client="vec1")]
        fields = {"dst": dst.field(), "src1": src1.field(), "rows": rows, "shift": shift}
        if opcode in (Opcode.VADD, Opcode.VSUB, Opcode.VMUL, Opcode.VMAX, Opcode.VMIN):
            if mode is Src2Mode.IMM:
                fields["src2"] = {"mode": Src2Mode.IMM}
            else:
                assert src2 is not None
                fields["src2"] = {"mode": mode, **src2.field()}
                reads.append(self._stream(src2, rows, 1 if mode is Src2Mode.SCALAR else None,
                                          client="vec2"))
            fields["imm"] = imm
        elif opcode in (Opcode.VLUT, Opcode.VRECIP):
            fields["imm"] = imm
        self.b.emit(opcode, reads=tuple(reads), writes=(self._stream(dst, rows),), **fields)

    def mask(self, dst: Opnd, src1: Opnd, rows: int, a: int, b: int, c: int) -> None:
        self.b.emit(Opcode.VMASK, reads=(self._stream(src1, rows, client="vec1"),),
                    writes=(self._stream(dst, rows),), dst=dst.field(), src1=src1.field(),
                    rows=rows, mask_a=a, mask_b=b, imm=c)

    def reduce(self, opcode: Opcode, dst: Opnd, src1: Opnd, rows: int, horizontal: bool) -> None:
        self.b.emit(opcode, reads=(self._stream(src1, rows, client="vec1"),),
                    writes=(self._stream(dst, 1),),
                    dst=dst.field(), src1=src1.field(), rows=rows, horizontal=int(horizontal))

    def trans(self, dst: Opnd, src1: Opnd, blocks: int) -> None:
        span = self.W * self.W
        self.b.emit(Opcode.VTRANS, reads=(self._stream(src1, blocks, span, "vec1"),),
                    writes=(self._stream(dst, blocks, span),), dst=dst.field(),
                    src1=src1.field(), rows=blocks)

    def lutld(self, table: int, src_acc: int) -> None:
        self.b.emit(Opcode.VLUTLD, reads=(Access("ACC", src_acc, src_acc + 256,
                                                 read_port(Space.ACC, "vec1")),),
                    src1={"space": Space.ACC, "addr": src_acc, "stride": 0}, imm=table)

    # ---------------------------------------------------------------------------------------
    def gemm(self, *, m: int, n: int, k: int, a: int, a_stride: int, b: int, b_stride: int,
             c: int, c_stride: int, accumulate: bool = False) -> None:
        cfg, W = self.cfg, self.W
        if not cfg.gemm_core:
            raise CompileError(f"GEMM: config {cfg.name!r} has no GEMM core (gemm_core=False)")
        mb, nb = -(-m // cfg.array_rows), -(-n // cfg.array_cols)
        ra = Access("SP", a, a + (mb - 1) * a_stride + k * W, read_port(Space.SP, "gemm_a"))
        rb = Access("SP", b, b + (nb - 1) * b_stride + k * W, read_port(Space.SP, "gemm_b"))
        rc = Access("ACC", c, c + (mb - 1) * c_stride + n * W, read_port(Space.ACC, "gemm"))
        self.b.emit(Opcode.GEMM, reads=(ra, rb, rc) if accumulate else (ra, rb), writes=(rc,),
                    m=m, n=n, k=k, a_addr=a, a_stride=a_stride, b_addr=b, b_stride=b_stride,
                    c_addr=c, c_stride=c_stride, accumulate=int(accumulate))

    # ---------------------------------------------------------------------------------------
    def _dma_ranges(self, space, dram, dram_stride, sram, sram_stride, rows, length, esize,
                    bcast=False, port=0):
        d_ends = (dram, dram + (rows - 1) * dram_stride)
        d_span = esize if bcast else length * esize
        dr = Access("DRAM", min(d_ends), max(d_ends) + d_span)
        s_ends = (sram, sram + (rows - 1) * sram_stride)
        sr = Access("SP" if space is Space.SP else "ACC", min(s_ends), max(s_ends) + length,
                    port)
        return dr, sr

    def load(self, space: Space, *, dram: int, dram_stride: int, sram: int, sram_stride: int,
             rows: int, length: int, compulsory: bool = True, bcast: bool = False) -> None:
        esize = 4 if space is Space.ACC else 1
        dr, sr = self._dma_ranges(space, dram, dram_stride, sram, sram_stride, rows, length,
                                  esize, bcast)
        self.b.emit(Opcode.DMA_LOAD, reads=(dr,), writes=(sr,), space=space, dram_addr=dram,
                    dram_stride=dram_stride, sram_addr=sram, sram_stride=sram_stride, rows=rows,
                    len=length, bcast=int(bcast))
        self.b.count_dma(rows * (1 if bcast else length) * esize, write=False,
                         compulsory=compulsory)

    def gather(self, space: Space, *, table: int, table_bytes: int, idx_acc: int,
               idx_scale: int, sram: int, sram_stride: int, rows: int, length: int,
               dram_stride: int) -> None:
        esize = 4 if space is Space.ACC else 1
        s_ends = (sram, sram + (rows - 1) * sram_stride)
        sr = Access("SP" if space is Space.SP else "ACC", min(s_ends), max(s_ends) + length)
        reads = (Access("DRAM", table, table + table_bytes),
                 Access("ACC", idx_acc, idx_acc + 1, read_port(Space.ACC, "load")))
        self.b.emit(Opcode.DMA_GATHER, reads=reads, writes=(sr,), space=space, dram_addr=table,
                    dram_stride=dram_stride, sram_addr=sram, sram_stride=sram_stride, rows=rows,
                    len=length, idx_addr=idx_acc, idx_scale=idx_scale)
        self.b.count_dma(rows * length * esize, write=False, compulsory=True)

    def store(self, space: Space, *, dram: int, dram_stride: int, sram: int, sram_stride: int,
              rows: int, length: int, compulsory: bool = True) -> None:
        esize = 4 if space is Space.ACC else 1
        dr, sr = self._dma_ranges(space, dram, dram_stride, sram, sram_stride, rows, length,
                                  esize, port=read_port(space, "store"))
        self.b.emit(Opcode.DMA_STORE, reads=(sr,), writes=(dr,), space=space, dram_addr=dram,
                    dram_stride=dram_stride, sram_addr=sram, sram_stride=sram_stride, rows=rows,
                    len=length)
        self.b.count_dma(rows * length * esize, write=True, compulsory=compulsory)

    # ---------------------------------------------------------------------------------------
    def wrgb(self, sp_addr: int, gb_addr: int, length: int) -> None:
        sr = Access("SP", sp_addr, sp_addr + length, read_port(Space.SP, "pim"))
        self.b.emit(Opcode.PIM_WRGB, reads=(sr,),
                    sram_addr=sp_addr, gb_addr=gb_addr, len=length)

    def mac(self, *, row: int, col: int, ncols: int, kc: int, gb_chunk: int, slot: int,
            accumulate: bool = False) -> None:
        grow = self.cfg.dram_banks * self.cfg.row_bytes
        self.b.emit(Opcode.PIM_MAC, reads=(Access("DRAM", row * grow, (row + 1) * grow),),
                    row=row, col=col, ncols=ncols, kc=kc, gb_chunk=gb_chunk, slot=slot,
                    accumulate=int(accumulate))

    def pim_read(self, *, slot: int, nslots: int, acc_addr: int) -> None:
        n = nslots * self.cfg.dram_banks
        self.b.emit(Opcode.PIM_READ, writes=(Access("ACC", acc_addr, acc_addr + n),),
                    slot=slot, nslots=nslots, sram_addr=acc_addr)

    def halt(self) -> None:
        self.b.flush_deferred()
        self.b.emit(Opcode.HALT)
