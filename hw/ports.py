"""Signatures every unit uses to reach the SRAMs and the DRAM channel.

* SRAM ports are Amaranth memory ports seen from the unit: a unit that reads the scratchpad has a
  member ``In(sp_read_signature(cfg))`` (it drives ``addr``/``en`` and receives ``data`` one
  cycle later); writes carry a per-lane enable. Addresses here are *row* addresses.
* A DRAM requester port is a request stream (column address, write flag, data, byte mask) and a
  response stream returning read data in request order.
* A unit takes its instructions as ``i_cmd: In(stream.Signature(<format struct>))`` — the
  hw/isa.py struct itself — and pulses ``o_done`` once per instruction, in order. The controller
  only sends instructions that passed its decode checks (alignment, ranges), so units may assume
  legal fields.
"""

from __future__ import annotations

from amaranth import signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig

__all__ = [
    "acc_read_signature",
    "acc_row_layout",
    "acc_write_signature",
    "dram_port_signature",
    "dram_request_layout",
    "sp_read_signature",
    "sp_row_layout",
    "sp_write_signature",
]


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def sp_row_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """One scratchpad row: ``W`` int8 elements."""
    return data.ArrayLayout(signed(8), cfg.row_width)


def acc_row_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """One accumulator row: ``W`` int32 elements."""
    return data.ArrayLayout(signed(32), cfg.row_width)


def sp_read_signature(cfg: AccelConfig) -> memory.ReadPort.Signature:
    return memory.ReadPort.Signature(addr_width=_bits(cfg.sp_rows), shape=sp_row_layout(cfg))


def sp_write_signature(cfg: AccelConfig) -> memory.WritePort.Signature:
    return memory.WritePort.Signature(addr_width=_bits(cfg.sp_rows), shape=sp_row_layout(cfg),
                                      granularity=1)


def acc_read_signature(cfg: AccelConfig) -> memory.ReadPort.Signature:
    return memory.ReadPort.Signature(addr_width=_bits(cfg.acc_rows), shape=acc_row_layout(cfg))


def acc_write_signature(cfg: AccelConfig) -> memory.WritePort.Signature:
    return memory.WritePort.Signature(addr_width=_bits(cfg.acc_rows),
                                      shape=acc_row_layout(cfg), granularity=1)


def dram_request_layout(cfg: AccelConfig) -> data.StructLayout:
    """A column request: ``addr`` is the byte address divided by 32 (a column index); a write
    writes the bytes of ``wdata`` whose ``wmask`` bit is set; a read ignores both."""
    return data.StructLayout({
        "addr": unsigned(_bits(cfg.dram_bytes // cfg.col_bytes)),
        "write": unsigned(1),
        "wdata": data.ArrayLayout(unsigned(8), cfg.col_bytes),
        "wmask": unsigned(cfg.col_bytes),
    })


def dram_port_signature(cfg: AccelConfig) -> wiring.Signature:
    """A DRAM requester as seen from the requester (it drives ``req``, receives ``rsp``)."""
    return wiring.Signature({
        "req": Out(stream.Signature(dram_request_layout(cfg))),
        "rsp": In(stream.Signature(data.ArrayLayout(unsigned(8), cfg.col_bytes))),
    })
