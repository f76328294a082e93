"""The DRAM channel: banks, open-page scheduler with full timing, refresh, PIM engines.

:class:`DramChannel` is what DMA engines, the controller's fetch and the PIM front-end reach
DRAM through. ``sim/golden/dram_model.py`` implements the same policy command by command and
predicts every command cycle exactly; ``sim/golden/dram_monitor.py`` checks a command trace
against every timing parameter. docs/dram_pim.md describes the policy in prose.

Cycle 0 is the first cycle after reset. Every cycle at most one command is issued on the command
bus (``o_cmd``), chosen combinationally from registered state:

1. **Refresh** is due every tREFI cycles (cycles k·tREFI). While it is pending nothing but
   refresh work issues: PRE to the lowest open bank whose PRE is legal, then REF once every bank
   is closed and may be activated (tRP after its PRE, tRC after its ACT); REF makes every bank
   wait tRFC before the next ACT.
2. **PIM mode** (the PIM port holds the channel and was granted it): the per-bank engines' PRE
   or ACT requests, banks still on the oldest unfinished MAC first, then lowest bank first;
   engines whose row is open read one column each per tCCD_L (tRCD respected) without using
   the bus, all banks at once.
3. **Normal mode**: the head request of every port (one per port; a port's requests are served
   in order). A row hit (column command) beats a row miss; among equals the lowest port wins.
   A miss does not close a row another port's head hits. Fairness: a head that has waited
   ``starve_limit`` cycles becomes urgent; urgent heads take turns (round robin) as the *owner*,
   and until the owner's column command issues only the owner's commands do. A head therefore
   waits at most ``starve_limit`` plus the service of one head per port
   (:func:`~llmaccel.sim.golden.dram_model.starvation_bound`; responses taken when valid).

A read issued in cycle t returns its data on the port's ``rsp`` stream from cycle
t + tCL + tBURST (the burst occupies the data bus in cycles t+tCL … t+tCL+tBURST-1); a write
moves its data in cycles t … t+tBURST-1 and has no response. A read issues only while its port
has room for the response (``rsp_depth`` per port), so ``rsp`` backpressure never loses data.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from .config import PIM_COL_BITS, AccelConfig
from .dram_bank import DramBank, DramCmd, col_word_layout, wait_counter
from .pim_mac import PimMac
from .pim_unit import pim_port_signature
from .ports import dram_port_signature

__all__ = [
    "STARVE_LIMIT",
    "DramChannel",
    "DramCmd",
    "addr_fields",
    "cmd_layout",
    "host_signature",
    "image_columns",
    "mac_layout",
    "rsp_depth",
]

#: Default number of cycles a port's head request may wait before it becomes urgent.
STARVE_LIMIT = 64


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def rsp_depth(cfg: AccelConfig) -> int:
    """Responses a port may have outstanding (issued reads plus queued data): enough that a
    port whose ``rsp`` is always ready never waits for room."""
    t = cfg.timing
    return -(-(t.tCL + t.tBURST) // t.tCCD_S) + 2


def addr_fields(cfg: AccelConfig) -> dict[str, tuple[int, int]]:
    """``{field: (lsb, width)}`` of ``col``, ``bank`` and ``row`` inside a column address
    (byte address // 32), read off :meth:`AccelConfig.dram_addr` — the only definition of the
    mapping — and checked to be a concatenation of bit fields."""
    cb = cfg.col_bytes
    sizes = {"col": cfg.cols_per_row, "bank": cfg.dram_banks, "row": cfg.bank_rows}
    unit = {"col": cfg.dram_addr(0, 0, 1 % cfg.cols_per_row) // cb if cfg.cols_per_row > 1
            else None,
            "bank": cfg.dram_addr(1 % cfg.dram_banks, 0) // cb if cfg.dram_banks > 1 else None,
            "row": cfg.dram_addr(0, 1 % cfg.bank_rows) // cb if cfg.bank_rows > 1 else None}
    fields = {}
    used = 0
    for name in ("col", "bank", "row"):
        width = (sizes[name] - 1).bit_length()
        lsb = unit[name].bit_length() - 1 if unit[name] else used
        fields[name] = (lsb, width)
        used = max(used, lsb + width)
    for bank, row, col in ((cfg.dram_banks - 1, cfg.bank_rows - 1, cfg.cols_per_row - 1),
                           (cfg.dram_banks // 2, cfg.bank_rows // 3, cfg.cols_per_row // 2)):
        a = 0
        for name, v in (("col", col), ("bank", bank), ("row", row)):
            a |= v << fields[name][0]
        if a * cb != cfg.dram_addr(bank, row, col):
            raise ValueError(f"the DRAM mapping must be a concatenation of bit fields, not "
                             f"{cfg.dram_addr(bank, row, col)!r} for {(bank, row, col)}")
    return fields


def image_columns(cfg: AccelConfig, image: bytes | None) -> list[list[int]] | None:
    """Per-bank initial memory contents (entry ``row · cols_per_row + col``) of a DRAM image
    given in byte-address order."""
    if image is None:
        return None
    import numpy as np  # noqa: PLC0415 (only needed for images)

    img = np.frombuffer(bytes(image), dtype=np.uint8)
    if img.size > cfg.dram_bytes:
        raise ValueError(f"image must fit the {cfg.dram_bytes}-byte DRAM, not {img.size!r} "
                         f"bytes")
    full = np.zeros(cfg.dram_bytes, dtype=np.uint8)
    full[:img.size] = img
    banks, rows, cols = cfg.dram_banks, cfg.bank_rows, cfg.cols_per_row
    b = np.arange(banks)[:, None, None]
    r = np.arange(rows)[None, :, None]
    c = np.arange(cols)[None, None, :]
    f = addr_fields(cfg)
    col_addr = (c << f["col"][0]) | (b << f["bank"][0]) | (r << f["row"][0])
    words = full.reshape(-1, cfg.col_bytes)[col_addr.reshape(banks, rows * cols)]
    out = []
    for bank in range(banks):
        w = words[bank]
        if not w.any():
            out.append([0] * (rows * cols))
            continue
        out.append([int.from_bytes(x.tobytes(), "little") for x in w])
    return out


def cmd_layout(cfg: AccelConfig) -> data.StructLayout:
    """The ``o_cmd`` monitor output: the bus command of this cycle."""
    return data.StructLayout({
        "kind": DramCmd, "bank": _bits(cfg.dram_banks), "row": _bits(cfg.bank_rows),
        "col": _bits(cfg.cols_per_row)})


def mac_layout(cfg: AccelConfig) -> data.ArrayLayout:
    """The ``o_mac`` monitor output: per bank, the PIM column read of this cycle."""
    return data.ArrayLayout(data.StructLayout({"valid": 1, "col": PIM_COL_BITS}),
                            cfg.dram_banks)


def host_signature(cfg: AccelConfig) -> wiring.Signature:
    """Host backdoor, seen from the host: column address, read/write enables, byte-masked
    write data, read data one cycle after ``re``. No timing; for use while no column command
    is in flight (the machine idle), because it takes the banks' ports from the scheduler. A
    column at or above the top of DRAM is not written, and reading it returns undefined
    data."""
    word = col_word_layout(cfg)
    return wiring.Signature({
        "addr": Out(_bits(cfg.dram_bytes // cfg.col_bytes)),
        "re": Out(1),
        "we": Out(1),
        "wdata": Out(word),
        "wmask": Out(cfg.col_bytes),
        "rdata": In(word),
    })


class DramChannel(wiring.Component):
    """One DRAM channel with ``cfg.dram_banks`` banks and a PIM engine per bank.

    Parameters
    ----------
    cfg:
        Geometry and timing.
    n_ports:
        Number of requester ports.
    image:
        Optional initial contents, bytes in byte-address order (:meth:`AccelConfig.dram_map`).
    starve_limit:
        Cycles after which a waiting head request becomes urgent (see the module docstring).

    Ports
    -----
    ports[i]: In(dram_port_signature(cfg))
        Requester ports: ``req`` stream of column requests (column address, write, data, byte
        mask), ``rsp`` stream of read data in request order. ``req.ready`` is high while the
        port's skid register (one request waiting behind the head) is empty and PIM does not
        hold the channel; it depends on registers only.
    host: In(host_signature(cfg))
        Backdoor for loading images and reading results while the channel is idle: it shares
        each bank's one read and one write port with the scheduler and takes them, so a column
        command in the same cycle would read or write the host's column instead of its own.
    pim: In(pim_port_signature(cfg))
        From the :class:`~.pim_unit.PimUnit`.
    o_cmd: Out(cmd_layout(cfg))
        The bus command issued this cycle (``kind = NONE`` when none): for the timing monitor
        and for counters.
    o_mac: Out(array of {valid, col})
        Per bank, the PIM column read issued this cycle (in the bank's open row).
    """

    def __init__(self, cfg: AccelConfig, n_ports: int, image: bytes | None = None, *,
                 starve_limit: int = STARVE_LIMIT):
        if not isinstance(n_ports, int) or n_ports < 1:
            raise ValueError(f"n_ports must be a positive integer, not {n_ports!r}")
        if not isinstance(starve_limit, int) or starve_limit < 1:
            raise ValueError(f"starve_limit must be a positive integer, not {starve_limit!r}")
        self.cfg = cfg
        self.n_ports = n_ports
        self.starve_limit = starve_limit
        self._fields = addr_fields(cfg)
        self._init = image_columns(cfg, image)
        super().__init__({
            "ports": In(dram_port_signature(cfg)).array(n_ports),
            "host": In(host_signature(cfg)),
            "pim": In(pim_port_signature(cfg)),
            "o_cmd": Out(cmd_layout(cfg)),
            "o_mac": Out(mac_layout(cfg)),
        })

    def _split(self, addr):
        f = self._fields
        return tuple(addr[f[n][0]:f[n][0] + f[n][1]] for n in ("bank", "row", "col"))

    def elaborate(self, platform):
        m = Module()
        cfg, t = self.cfg, self.cfg.timing
        B, P, G = cfg.dram_banks, self.n_ports, cfg.dram_bank_groups
        cb = (cfg.cols_per_row - 1).bit_length()

        banks = [DramBank(cfg, self._init[b] if self._init else None) for b in range(B)]
        engines = [PimMac(cfg) for _ in range(B)]
        for b in range(B):
            m.submodules[f"bank{b}"] = banks[b]
            m.submodules[f"pim{b}"] = engines[b]

        def entry(row, col):
            return (row << cb) | col if cb else row

        is_open = Array(bk.is_open for bk in banks)
        open_row = Array(bk.open_row for bk in banks)
        act_ok = Array(bk.act_ok for bk in banks)
        pre_ok = Array(bk.pre_ok for bk in banks)
        col_ok = Array(bk.col_ok for bk in banks)
        ccd_ok = Array(bk.ccd_ok for bk in banks)

        # ---------------------------------------------------------------------------------
        # Channel-wide timing state (down-counters: zero means legal).
        rrd_wait = Array(wait_counter(f"rrd_wait{g}", t.tRRD_L, t.tRRD_S) for g in range(G))
        faw = [wait_counter(f"faw{i}", t.tFAW) for i in range(4)]
        ccd_wait = Array(wait_counter(f"ccd_wait{g}", t.tCCD_L, t.tCCD_S) for g in range(G))
        bus_busy = wait_counter("bus_busy", t.tCL + t.tBURST, t.tBURST)
        faw_ok = faw[0] == 0

        retire = Signal(3)                  # MACs retired (every bank done), modulo 8
        ref_cnt = Signal(range(t.tREFI))
        ref_pending = Signal()
        granted = Signal()

        # The command chosen this cycle.
        kind = Signal(DramCmd)
        cbank = Signal(range(B))
        crow = Signal.like(banks[0].open_row)
        ccol = Signal(max(cb, 1))
        cport = Signal(range(P))
        mac_go = Signal(B)

        # ---------------------------------------------------------------------------------
        # Port heads.
        hv = Signal(P)
        head_layout = data.StructLayout({
            "bank": range(B), "row": len(crow), "col": max(cb, 1), "write": 1,
            "wdata": col_word_layout(cfg), "wmask": cfg.col_bytes})
        head = [Signal(head_layout, name=f"head{p}") for p in range(P)]
        # Behind each head, a skid register: a request accepted while the head waits. A port
        # is ready while its skid register is empty, which is a register, so no requester's
        # next state waits for the scheduler's decision (see ``ready`` below).
        sv = Signal(P)
        skid = [Signal(head_layout, name=f"skid{p}") for p in range(P)]
        age = [Signal(range(self.starve_limit + 1), name=f"age{p}") for p in range(P)]
        depth = rsp_depth(cfg)
        pend_rsp = [Signal(range(depth + 1), name=f"pend_rsp{p}") for p in range(P)]
        hit = Signal(P)
        urgent = Signal(P)          # registered: hv[p] & (age[p] == starve_limit)
        col_legal = Signal(P)
        pre_legal = Signal(P)
        act_legal = Signal(P)
        for p in range(P):
            h = head[p]
            # Every bank's open row compared with the head's row, then the head's bank picks
            # its answer: the comparisons run beside the bank decode rather than after it.
            row_hit = Array(bk.is_open & (bk.open_row == h.row) for bk in banks)
            m.d.comb += hit[p].eq(hv[p] & row_hit[h.bank])
        for p in range(P):
            h = head[p]
            g = h.bank % G if G > 1 else 0
            protected = 0
            for q in range(P):
                if q != p:
                    protected = protected | (hit[q] & (head[q].bank == h.bank))
            bus_ok = Mux(h.write, bus_busy == 0, (bus_busy <= t.tCL) & (pend_rsp[p] < depth))
            m.d.comb += [
                col_legal[p].eq(hit[p] & col_ok[h.bank] & ccd_ok[h.bank] & (ccd_wait[g] == 0)
                                & bus_ok),
                pre_legal[p].eq(hv[p] & is_open[h.bank] & ~hit[p] & pre_ok[h.bank]
                                & (urgent[p] | ~protected)),
                act_legal[p].eq(hv[p] & ~is_open[h.bank] & act_ok[h.bank]
                                & (rrd_wait[g] == 0) & faw_ok),
            ]
        # Fairness: an urgent head becomes the owner (round robin after the previous owner)
        # and, until its column command issues, only the owner's commands may issue.
        owner_valid = Signal()
        owner = Signal(range(P))
        last_owner = Signal(range(P), init=P - 1)
        pick = Signal(range(P))
        for last in range(P):
            with m.If(last_owner == last):
                order = [(last + 1 + k) % P for k in range(P)]
                for q in reversed(order):
                    with m.If(urgent[q]):
                        m.d.comb += pick.eq(q)
        sel = Mux(owner_valid, owner, pick)
        sel_valid = owner_valid | (urgent != 0)
        allowed = Signal(P)
        with m.If(sel_valid):
            m.d.comb += allowed.eq(1 << sel)
        with m.Else():
            m.d.comb += allowed.eq(~0)

        # ---------------------------------------------------------------------------------
        # Command selection.
        def issue(k, bank, row, col=0, port=0):
            return [kind.eq(k), cbank.eq(bank), crow.eq(row), ccol.eq(col), cport.eq(port)]

        open_vec = Signal(B)
        act_vec = Signal(B)
        for b in range(B):
            m.d.comb += [open_vec[b].eq(banks[b].is_open), act_vec[b].eq(banks[b].act_ok)]

        with m.If(ref_pending):
            chain = m.If
            for b in range(B):
                with chain(banks[b].is_open & banks[b].pre_ok):
                    m.d.comb += issue(DramCmd.PRE, b, banks[b].open_row)
                chain = m.Elif
            with m.Elif((open_vec == 0) & (act_vec == (1 << B) - 1)):
                m.d.comb += issue(DramCmd.REF, 0, 0)
        with m.Elif(granted):
            # Banks still working on the oldest MAC go first (lowest bank among equals), so a
            # bank that fell behind (e.g. re-opened last after a refresh) catches up instead
            # of the leaders running ahead until they wait for it.
            chain = m.If
            for oldest in (True, False):
                for b in range(B):
                    e, bk = engines[b], banks[b]
                    g = b % G
                    is_old = (e.seq == (retire + 1)[:3]) if oldest else 1
                    with chain(is_old & e.want_pre & bk.pre_ok):
                        m.d.comb += issue(DramCmd.PRE, b, bk.open_row)
                    with m.Elif(is_old & e.want_act & bk.act_ok & (rrd_wait[g] == 0) & faw_ok):
                        m.d.comb += issue(DramCmd.ACT, b, e.act_row)
                    chain = m.Elif
        with m.Else():
            chain = m.If
            for p in range(P):
                h = head[p]
                with chain(allowed[p] & col_legal[p]):
                    m.d.comb += issue(Mux(h.write, DramCmd.WR, DramCmd.RD), h.bank, h.row,
                                      h.col, p)
                chain = m.Elif
            for p in range(P):
                h = head[p]
                with chain(allowed[p] & pre_legal[p]):
                    m.d.comb += issue(DramCmd.PRE, h.bank, open_row[h.bank], 0, p)
                chain = m.Elif
                with chain(allowed[p] & act_legal[p]):
                    m.d.comb += issue(DramCmd.ACT, h.bank, h.row, 0, p)

        # A plain expression rather than an assignment inside the branches above: Icarus does
        # not evaluate a combinational process at time 0 unless one of its inputs changes.
        for b in range(B):
            m.d.comb += mac_go[b].eq(granted & ~ref_pending & engines[b].want_col
                                     & banks[b].col_ok & banks[b].ccd_ok)
        m.d.comb += [self.o_cmd.kind.eq(kind), self.o_cmd.bank.eq(cbank),
                     self.o_cmd.row.eq(crow), self.o_cmd.col.eq(ccol)]

        # Port p's column command issues this cycle: the first port, in the normal mode's
        # order, whose column command is allowed and legal (column commands come before every
        # PRE and ACT there). The same as ``is_col & (cport == p)`` outside refresh and PIM
        # mode, written out so that neither the ports' ``ready`` (and through it the
        # requesters' next state) nor the column access to the block RAMs waits for the whole
        # command's encoding, PIM mode and refresh included.
        col_go = Signal(P)
        earlier = 0
        for p in range(P):
            m.d.comb += col_go[p].eq(~granted & ~ref_pending & allowed[p] & col_legal[p]
                                     & ~earlier)
            earlier = earlier | (allowed[p] & col_legal[p])

        # ---------------------------------------------------------------------------------
        # Banks and engines.
        #
        # A column command reaches the block RAMs a cycle after it issues, from registers
        # (``late``): the command is chosen combinationally from the scheduler's state, and on
        # an FPGA its path on to the address pins of every bank's block RAMs was the longest in
        # the design. Nothing observable moves: a read's data still reach the port's FIFO
        # tCL + tBURST - 1 cycles after the RD (the read pipeline below is a stage shorter),
        # writes stay in command order, and a PIM read never meets a delayed access (the
        # channel is granted to PIM only a cycle after no head is valid, so after every column
        # command). With tCL + tBURST = 2 there is no stage to spare and the command drives
        # the block RAMs directly.
        L = t.tCL + t.tBURST - 1             # cycles from RD issue to the FIFO write
        late = L >= 2
        # The column access: an AND-OR over the ports by ``col_go`` (one-hot or zero). Without
        # a column command the address and data are don't-cares and the byte mask is zero.
        sel_entry, sel_bank, sel_wdata, sel_wmask = 0, 0, 0, 0
        for p in range(P):
            h, go = head[p], col_go[p]
            sel_entry = sel_entry | Mux(go, entry(h.row, h.col), 0)
            sel_bank = sel_bank | Mux(go, h.bank, 0)
            sel_wdata = sel_wdata | Mux(go, h.wdata.as_value(), 0)
            sel_wmask = sel_wmask | Mux(go & h.write, h.wmask, 0)
        col_entry = Signal.like(banks[0].rd_addr)
        col_bank = Signal(range(B))
        col_wdata = Signal.like(banks[0].wr_data)
        col_wmask = Signal(cfg.col_bytes)
        domain = m.d.sync if late else m.d.comb
        domain += [col_entry.eq(sel_entry), col_bank.eq(sel_bank), col_wdata.eq(sel_wdata),
                   col_wmask.eq(sel_wmask)]
        # The host backdoor shares each bank's read and write port with the scheduler and wins
        # (the host uses it only while the machine is idle, so it meets no column command of
        # a running program): a host read takes every bank's read port, a host write every
        # bank's write address and data, which keeps the selects and the 256-bit write-data
        # multiplexer common to all banks. Columns at and above the top of DRAM (a bank_rows
        # that is not a power of two leaves row values unused) are ignored.
        hf = self._fields
        hbank = self.host.addr[hf["bank"][0]:hf["bank"][0] + hf["bank"][1]]
        hrow = self.host.addr[hf["row"][0]:hf["row"][0] + hf["row"][1]]
        hcol = self.host.addr[hf["col"][0]:hf["col"][0] + hf["col"][1]]
        host_ok = self.host.addr < cfg.dram_bytes // cfg.col_bytes
        host_re = Signal()
        host_we = Signal()
        m.d.comb += [host_re.eq(self.host.re & host_ok), host_we.eq(self.host.we & host_ok)]
        host_bank_r = Signal(range(B))
        m.d.sync += host_bank_r.eq(hbank)
        wr_addr = Signal.like(banks[0].wr_addr)
        wr_data = Signal.like(banks[0].wr_data)
        m.d.comb += [wr_addr.eq(Mux(host_we, entry(hrow, hcol), col_entry)),
                     wr_data.eq(Mux(host_we, self.host.wdata, col_wdata))]
        for b in range(B):
            bk, e = banks[b], engines[b]
            to_me = (cbank == b) & (kind != DramCmd.NONE)
            with m.If(kind == DramCmd.REF):
                m.d.comb += bk.cmd.eq(DramCmd.REF)
            with m.Elif(to_me):
                m.d.comb += bk.cmd.eq(kind)
            with m.Elif(mac_go[b]):
                m.d.comb += bk.cmd.eq(DramCmd.MAC)
            sched_rd_addr = Mux(granted, e.mem_addr, col_entry)
            sched_wr_mask = Mux(col_bank == b, col_wmask, 0)
            m.d.comb += [
                bk.cmd_row.eq(crow),
                bk.rd_en.eq(1),
                bk.rd_addr.eq(Mux(host_re, entry(hrow, hcol), sched_rd_addr)),
                bk.wr_addr.eq(wr_addr),
                bk.wr_data.eq(wr_data),
                bk.wr_mask.eq(Mux(host_we, Mux(hbank == b, self.host.wmask, 0), sched_wr_mask)),
                e.is_open.eq(bk.is_open),
                e.open_row.eq(bk.open_row),
                e.col_go.eq(mac_go[b]),
                e.mem_data.eq(bk.rd_data),
                e.disp.eq(self.pim.mac.valid & self.pim.mac.ready),
                e.disp_instr.eq(self.pim.mac.payload),
                e.gb_wr.eq(self.pim.gb_wr),
                e.slot_rd_en.eq(self.pim.slot_rd_en),
                e.slot_rd_addr.eq(self.pim.slot_rd_addr[b]),
                self.pim.slot_rd_data[b].eq(e.slot_rd_data),
                self.o_mac[b].valid.eq(mac_go[b]),
                self.o_mac[b].col.eq(e.mem_col),
            ]

        # ---------------------------------------------------------------------------------
        # Channel-wide counters.
        def dec(x):
            return Mux((x == 0), 0, x - 1)

        def upd(x, cycles):
            d = dec(x)
            return Mux((d > cycles - 1), d, cycles - 1)

        is_col = (kind == DramCmd.RD) | (kind == DramCmd.WR)
        kgroup = cbank % G if G > 1 else 0
        for g in range(G):
            with m.If((kind == DramCmd.ACT) & (kgroup == g)):
                m.d.sync += rrd_wait[g].eq(upd(rrd_wait[g], t.tRRD_L))
            with m.Elif(kind == DramCmd.ACT):
                m.d.sync += rrd_wait[g].eq(upd(rrd_wait[g], t.tRRD_S))
            with m.Else():
                m.d.sync += rrd_wait[g].eq(dec(rrd_wait[g]))
            with m.If(is_col & (kgroup == g)):
                m.d.sync += ccd_wait[g].eq(upd(ccd_wait[g], t.tCCD_L))
            with m.Elif(is_col):
                m.d.sync += ccd_wait[g].eq(upd(ccd_wait[g], t.tCCD_S))
            with m.Else():
                m.d.sync += ccd_wait[g].eq(dec(ccd_wait[g]))
        with m.If(kind == DramCmd.ACT):
            m.d.sync += [faw[i].eq(dec(faw[i + 1])) for i in range(3)]
            m.d.sync += faw[3].eq(t.tFAW - 1)
        with m.Else():
            m.d.sync += [f.eq(dec(f)) for f in faw]
        with m.If(kind == DramCmd.RD):
            m.d.sync += bus_busy.eq(upd(bus_busy, t.tCL + t.tBURST))
        with m.Elif(kind == DramCmd.WR):
            m.d.sync += bus_busy.eq(upd(bus_busy, t.tBURST))
        with m.Else():
            m.d.sync += bus_busy.eq(dec(bus_busy))

        with m.If(kind == DramCmd.REF):
            m.d.sync += ref_pending.eq(0)
        with m.If(ref_cnt == t.tREFI - 1):
            m.d.sync += [ref_cnt.eq(0), ref_pending.eq(1)]
        with m.Else():
            m.d.sync += ref_cnt.eq(ref_cnt + 1)

        # ---------------------------------------------------------------------------------
        # Requests in, responses out.
        rd_issue = kind == DramCmd.RD
        vsr = [Signal(data.StructLayout({"valid": 1, "port": range(P), "bank": range(B)}),
                      name=f"rd_pipe{k}") for k in range(L)]
        m.d.sync += [vsr[0].valid.eq(rd_issue), vsr[0].port.eq(cport), vsr[0].bank.eq(cbank)]
        for k in range(1, L):
            m.d.sync += vsr[k].eq(vsr[k - 1])
        # The block RAM's data arrive a cycle after its address, which is a cycle after the RD
        # when ``late``. The host's reads share the multiplexer: they come only while no
        # column command runs (see the backdoor above), so when no RD's data arrive it
        # selects the bank of the host's read of the cycle before.
        rd_at = vsr[1 if late else 0]
        rd_word = Array(bk.rd_data for bk in banks)[Mux(rd_at.valid, rd_at.bank, host_bank_r)]
        m.d.comb += self.host.rdata.eq(rd_word)
        dsr = [Signal(col_word_layout(cfg), name=f"rd_data{k}")
               for k in range(L - (2 if late else 1))]
        if dsr:
            m.d.sync += dsr[0].eq(rd_word)
            for k in range(1, len(dsr)):
                m.d.sync += dsr[k].eq(dsr[k - 1])
        fifo_word = dsr[-1] if dsr else rd_word
        fifo_valid = vsr[-1]

        hold = self.pim.hold
        for p in range(P):
            port = self.ports[p]
            h = head[p]
            m.submodules[f"rsp_fifo{p}"] = rf = fifo.SyncFIFO(width=8 * cfg.col_bytes,
                                                              depth=depth)
            m.d.comb += [rf.w_en.eq(fifo_valid.valid & (fifo_valid.port == p)),
                         rf.w_data.eq(fifo_word.as_value()),
                         port.rsp.valid.eq(rf.r_rdy),
                         port.rsp.payload.eq(rf.r_data),
                         rf.r_en.eq(port.rsp.ready)]
            issued = col_go[p]
            popped = port.rsp.valid & port.rsp.ready
            m.d.sync += pend_rsp[p].eq(pend_rsp[p] + (rd_issue & (cport == p)) - popped)
            # Ready while the skid register is empty: from registers only. (It used to be "the
            # head is free or its column command issues this cycle", which ran the whole
            # scheduling decision into every requester's next state: on an FPGA the load
            # port's head, the row compare, the store port's ready and the store engine's
            # column walker were one path across the device, docs/fpga.md.) A request
            # accepted while the head is taken waits in the skid register and becomes the head
            # in the cycle after the head's column command, as a request accepted in that
            # command's cycle did before; so the heads, and with them the commands, are as
            # before for a requester that keeps ``valid`` high, and only the handshakes come
            # earlier.
            accept = Signal(name=f"accept{p}")
            head_free = ~hv[p] | issued
            m.d.comb += [port.req.ready.eq(~hold & ~sv[p]),
                         accept.eq(port.req.valid & port.req.ready)]
            bank, row, col = self._split(port.req.payload.addr)
            arriving = Signal(head_layout, name=f"arriving{p}")
            m.d.comb += [arriving.bank.eq(bank), arriving.row.eq(row),
                         arriving.col.eq(col if cb else 0),
                         arriving.write.eq(port.req.payload.write),
                         arriving.wdata.eq(port.req.payload.wdata),
                         arriving.wmask.eq(port.req.payload.wmask)]
            with m.If(sv[p] & head_free):
                m.d.sync += [sv[p].eq(0), h.eq(skid[p])]
            with m.Elif(accept & head_free):
                m.d.sync += h.eq(arriving)
            with m.Elif(accept):
                m.d.sync += [sv[p].eq(1), skid[p].eq(arriving)]
            # ``urgent`` is kept as a register next to ``age`` rather than compared from it,
            # which takes the comparison off the scheduler's path to the command.
            with m.If(head_free & (sv[p] | accept)):
                m.d.sync += [hv[p].eq(1), age[p].eq(0), urgent[p].eq(0)]
            with m.Elif(issued):
                m.d.sync += [hv[p].eq(0), urgent[p].eq(0)]
            with m.Elif(hv[p] & ~urgent[p]):
                m.d.sync += [age[p].eq(age[p] + 1),
                             urgent[p].eq(age[p] == self.starve_limit - 1)]

        sel_issued = sel_valid & col_go.bit_select(sel, 1)
        with m.If(sel_issued):
            m.d.sync += owner_valid.eq(0)
        with m.Elif(~owner_valid & (urgent != 0)):
            m.d.sync += [owner_valid.eq(1), owner.eq(pick)]
        with m.If(~owner_valid & (urgent != 0)):
            m.d.sync += last_owner.eq(pick)

        # ---------------------------------------------------------------------------------
        # PIM ownership and MAC dispatch / retirement.
        m.d.sync += granted.eq(hold & (granted | ((hv == 0) & (bus_busy == 0))))
        m.d.comb += self.pim.grant.eq(granted)
        pend_free = 1
        for e in engines:
            pend_free = pend_free & e.pend_free
        m.d.comb += self.pim.mac.ready.eq(granted & pend_free)
        done_cnt = [Signal(3, name=f"done_cnt{b}") for b in range(B)]
        all_done = 1
        for b in range(B):
            m.d.sync += done_cnt[b].eq(done_cnt[b] + engines[b].done)
            all_done = all_done & (done_cnt[b] != retire)
        m.d.comb += self.pim.mac_done.eq(all_done)
        m.d.sync += retire.eq(retire + all_done)
        return m
