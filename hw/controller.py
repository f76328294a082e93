"""The controller: fetch, decode checks, dispatch to the unit queues, wait masks, counters."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.hdl import ResetInserter
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import AccelConfig
from .dram_bank import DramCmd
from .dram_channel import cmd_layout, mac_layout
from .instr_checker import WORK_BITS, InstrChecker, product_operands
from .isa import (
    INSTR_BITS,
    INSTR_BYTES,
    OPCODES,
    DmaInstr,
    ErrorCode,
    GemmInstr,
    Header,
    Opcode,
    PimInstr,
    Space,
    Unit,
    VecInstr,
)
from .ports import acc_read_signature, dram_port_signature
from .registered_fifo import RegisteredFIFO
from .regs import COUNTERS, Status

__all__ = ["FETCH_DEPTH", "LATE_STOP", "UNITS", "Controller", "counter_width"]

#: Execution units in wait-mask bit order (bit i of ``wait`` is ``UNITS[i]``).
UNITS = (Unit.LOAD, Unit.STORE, Unit.GEMM, Unit.PIM, Unit.VEC)
#: Instruction words fetched ahead: requests in flight plus words buffered.
FETCH_DEPTH = 8
#: A gather decided at run time (``late``): cycles from the first cycle its wait mask and every
#: earlier load have completed to the cycle ``stop`` rises (read the index, register it,
#: compute the DRAM range, check it).
LATE_STOP = 4

_FORMATS = {Unit.LOAD: DmaInstr, Unit.STORE: DmaInstr, Unit.GEMM: GemmInstr,
            Unit.PIM: PimInstr, Unit.VEC: VecInstr}
_NAMES = {Unit.LOAD: "load", Unit.STORE: "store", Unit.GEMM: "gemm", Unit.PIM: "pim",
          Unit.VEC: "vec"}


def counter_width(cfg: AccelConfig) -> int:
    """Width of the per-unit issue/completion counters: a run without branches executes at
    most one instruction per DRAM column, so they never wrap within a run."""
    return (cfg.dram_bytes // INSTR_BYTES).bit_length() + 1


def _queue_layout(cfg: AccelConfig, unit: Unit) -> data.StructLayout:
    cw = counter_width(cfg)
    return data.StructLayout({
        "instr": _FORMATS[unit],
        "mask": unsigned(len(UNITS)),
        "target": data.ArrayLayout(unsigned(cw), len(UNITS)),
    })


class Controller(wiring.Component):
    """Fetches, checks and dispatches a program; enforces wait masks; counts.

    **Fetch.** From START, column read requests for PROG_BASE, PROG_BASE + 32, … go out on
    ``fetch`` while fewer than :data:`FETCH_DEPTH` words are requested or buffered. Read data
    enter a FIFO (:class:`~.registered_fifo.RegisteredFIFO`, ``SyncFIFO``'s cycles with a
    registered head; ``rsp.ready`` is always high: the credit keeps room). Fetching stops at the
    end of DRAM, after a word whose opcode is HALT has arrived, and when the run stops;
    responses still in flight when a run ends are dropped.

    **Check.** Words flow from the FIFO through :class:`~.instr_checker.InstrChecker` (two
    stages). The verdict at its output is the golden model's, so the first illegal instruction
    is found at dispatch, in program order.

    **Dispatch** (the checker's output, one instruction per cycle at most), in cycle *d*:

    * an instruction of unit *U* enters queue *U* (``cfg.queue_depth`` entries) if it is not
      full, with a *target* per unit: the number of instructions dispatched to each unit before
      it. It may start (``valid`` towards the unit) once, for every unit *V* in its wait mask,
      that many instructions of *V* have completed — the completion counters are registered,
      so the earliest start is the cycle after the awaited ``o_done``. A DMA_STORE completes
      when its ``o_done`` has pulsed *and* the channel has issued every write it requested
      (``WR`` on ``i_dram_cmd``), so a later load or PIM read on another port sees the data.
    * ``NOP`` waits until every instruction of the units in its mask has completed (a fence);
      ``HALT`` stops dispatching, and the run ends once every unit has drained.
    * after a ``DMA_GATHER`` nothing is dispatched until the load unit pulses
      ``i_gather_checked``; with ``i_gather_error`` the run stops with DRAM_RANGE at the
      gather's PC.
    * an illegal instruction (or the PC leaving DRAM, PC_RANGE) stops dispatching; the run
      ends with ERROR and ERROR_PC once every dispatched instruction has completed, so the
      state is the golden model's. A gather whose destination is out of SRAM but whose index
      address is fine is decided at run time: once its wait mask and the load unit are
      satisfied the controller reads the index itself and reports DRAM_RANGE (index negative
      or transfer outside DRAM) or SRAM_RANGE, in the golden model's order.
    * ``i_watchdog`` ≠ 0: once a run has been RUNNING for that many cycles (also while it
      drains after HALT or an error), the queues are flushed, dispatch stops, and once the
      units are idle the run ends with WATCHDOG (ERROR_PC: the next PC to dispatch). Units
      always finish what they accepted, so a run always ends.

    The run ends (STATUS DONE or ERROR from the next cycle) in the first cycle in which the
    controller is stopped, every dispatched instruction has completed, no gather check or
    run-time gather decision is pending and no fetch request is waiting to be accepted.

    **Counters** (``o_counters``, :data:`~.regs.COUNTERS` order, 64-bit ports holding
    ``cfg.counter_bits``-bit counters that wrap) count while the run is RUNNING: ``cycles``;
    ``retired_*`` from ``o_done`` (a gather that fails its range check is not retired; NOP
    and HALT count as ``retired_ctrl`` at dispatch); ``busy_*`` cycles with the unit's
    ``o_busy``; ``stall_*`` cycles the queue head waits for its wait mask;
    ``gemm_macs`` (m·n·k), ``pim_macs`` (ncols·banks·32), ``dram_read_bytes`` and
    ``dram_write_bytes`` (DMA element bytes, as GoldenMachine's Stats count them) at dispatch
    (a gather's when its index has been checked); ``dram_activates`` and ``dram_refreshes``
    from the channel's commands; ``sram_conflicts`` from ``i_sram_conflict``;
    ``dram_row_hits`` / ``dram_row_misses`` classify every RD and WR: a miss is the first
    column command to a bank after an ACT (PIM column reads count as column commands for this,
    not as hits or misses). ``i_clear`` zeroes them. Increments are registered: a count lands
    a cycle after its event, so the counters are final one cycle after STATUS leaves RUNNING.

    Parameters
    ----------
    cfg : AccelConfig

    Ports
    -----
    i_start, i_clear : In(1)
        One-cycle pulses from the host (START is ignored while RUNNING).
    i_base, i_watchdog : In(32)
        PROG_BASE and WATCHDOG.
    o_status : Out(Status-shaped 2 bits), o_error : Out(ErrorCode), o_error_pc : Out(32)
    o_counters : Out(array of 64-bit counters)
    fetch : Out(dram_port_signature(cfg))
        Instruction fetch requester (reads only).
    o_load, o_store, o_gemm, o_pim, o_vec : Out(stream.Signature(<format>))
        Instructions to the units; ``valid`` once the wait mask is satisfied.
    i_done, i_busy : In(5)
        The units' ``o_done`` and ``o_busy``, bit i for ``UNITS[i]``.
    i_gather_checked, i_gather_error : In(1)
        From the load unit.
    i_store_write : In(1)
        A write request handshake on the store unit's DRAM port.
    i_dram_cmd : In(cmd_layout(cfg)), i_dram_mac : In(mac_layout(cfg))
        The channel's command monitor outputs.
    acc_rd : In(acc_read_signature(cfg))
        Accumulator read port for run-time gather decisions.
    i_sram_conflict : In(1)
        The SRAMs' ``o_conflict`` (two units on one bank port this cycle), counted in
        ``sram_conflicts``.
    """

    def __init__(self, cfg: AccelConfig):
        self.cfg = cfg
        members = {
            "i_start": In(1),
            "i_clear": In(1),
            "i_base": In(32),
            "i_watchdog": In(32),
            "o_status": Out(2),
            "o_error": Out(ErrorCode),
            "o_error_pc": Out(32),
            "o_counters": Out(data.ArrayLayout(unsigned(64), len(COUNTERS))),
            "fetch": Out(dram_port_signature(cfg)),
            "i_done": In(len(UNITS)),
            "i_busy": In(len(UNITS)),
            "i_gather_checked": In(1),
            "i_gather_error": In(1),
            "i_store_write": In(1),
            "i_dram_cmd": In(cmd_layout(cfg)),
            "i_dram_mac": In(mac_layout(cfg)),
            "acc_rd": In(acc_read_signature(cfg)),
            "i_sram_conflict": In(1),
        }
        for u in UNITS:
            members[f"o_{_NAMES[u]}"] = Out(stream.Signature(_FORMATS[u]))
        super().__init__(members)

    def unit_port(self, unit: Unit):
        return getattr(self, f"o_{_NAMES[unit]}")

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        W = cfg.row_width
        lw = (W - 1).bit_length()
        cw = counter_width(cfg)
        nu = len(UNITS)

        status = Signal(2, init=Status.IDLE)
        err = Signal(ErrorCode)
        err_pc = Signal(33)
        running = Signal()
        stop = Signal()            # no more dispatch: HALT, an error, or the watchdog
        abort = Signal()           # the watchdog fired: queues flushed
        start = Signal()
        m.d.comb += [running.eq(status == Status.RUNNING),
                     start.eq(self.i_start & ~running),
                     self.o_status.eq(status), self.o_error.eq(err),
                     self.o_error_pc.eq(err_pc)]

        issued = [Signal(cw, name=f"issued_{_NAMES[u]}") for u in UNITS]
        completed = [Signal(cw, name=f"completed_{_NAMES[u]}") for u in UNITS]

        # ---------------------------------------------------------------------------------
        # Fetch.
        req, rsp = self.fetch.req, self.fetch.rsp
        fpc = Signal(33)           # address of the next fetch request
        fcnt = Signal(range(FETCH_DEPTH + 1))   # words requested or buffered
        inflight = Signal(range(FETCH_DEPTH + 2))
        discard = Signal(range(FETCH_DEPTH + 2))
        halt_seen = Signal()
        req_hold = Signal()        # a request is offered and not yet accepted
        f_ok = (fpc[:5] == 0) & (fpc + INSTR_BYTES <= cfg.dram_bytes)
        new_req = running & ~stop & ~halt_seen & f_ok & (fcnt < FETCH_DEPTH)
        req_hs = Signal()
        m.d.comb += [
            req.valid.eq(req_hold | new_req),
            req.payload.addr.eq(fpc[5:]),
            req.payload.write.eq(0),
            req_hs.eq(req.valid & req.ready),
            rsp.ready.eq(1),
        ]
        m.d.sync += req_hold.eq(req.valid & ~req.ready)

        # The checker's first stage multiplies operands of the head word, so the head comes
        # from a register rather than a LUT RAM read (same cycles as SyncFIFO), and the
        # operands are decoded as the word enters the FIFO and kept beside it: the first stage
        # is then the multipliers alone (FPGA timing).
        ops_in = product_operands(m, cfg, rsp.payload.as_value(), name="fetch_ops")
        ops_bits = len(ops_in.as_value())
        m.submodules.fetch_fifo = ffifo = ResetInserter(start)(
            RegisteredFIFO(width=INSTR_BITS + ops_bits, depth=FETCH_DEPTH))
        keep = rsp.valid & (discard == 0)
        m.d.comb += [ffifo.w_en.eq(keep),
                     ffifo.w_data.eq(Cat(rsp.payload.as_value(), ops_in.as_value()))]
        rsp_hdr = Header(rsp.payload.as_value()[:11])
        with m.If(start):
            m.d.sync += halt_seen.eq(0)
        with m.Elif(keep & (rsp_hdr.opcode == Opcode.HALT)):
            m.d.sync += halt_seen.eq(1)
        inflight_next = inflight + req_hs - rsp.valid
        m.d.sync += inflight.eq(inflight_next)
        with m.If(start):
            m.d.sync += discard.eq(inflight_next)
        with m.Elif(rsp.valid & (discard != 0)):
            m.d.sync += discard.eq(discard - 1)

        # ---------------------------------------------------------------------------------
        # Checker.
        m.submodules.checker = chk = InstrChecker(cfg)
        cpc = Signal(33)           # PC of the FIFO head
        pop = chk.i.valid & chk.i.ready
        m.d.comb += [chk.i.valid.eq(ffifo.r_rdy),
                     chk.i.payload.word.eq(ffifo.r_data[:INSTR_BITS]),
                     chk.i.payload.ops.eq(ffifo.r_data[INSTR_BITS:]),
                     chk.i.payload.pc.eq(cpc), ffifo.r_en.eq(chk.i.ready),
                     chk.i_flush.eq(start)]
        with m.If(start):
            m.d.sync += [fpc.eq(self.i_base), cpc.eq(self.i_base), fcnt.eq(0)]
        with m.Else():
            with m.If(req_hs):
                m.d.sync += fpc.eq(fpc + INSTR_BYTES)
            with m.If(pop):
                m.d.sync += cpc.eq(cpc + INSTR_BYTES)
            m.d.sync += fcnt.eq(fcnt + req_hs - pop)

        # ---------------------------------------------------------------------------------
        # Queues.
        queues = {}
        flush_q = Signal()
        m.d.comb += flush_q.eq(start | (abort & running))
        stall = {}
        # The completion counts of the next cycle (the counters' next values, below).
        completed_next = [Signal(cw, name=f"completed_next_{_NAMES[u]}") for u in UNITS]

        def satisfied(entry):
            """An entry's wait mask holds against next cycle's completion counts."""
            ok = 1
            for j in range(nu):
                ok = ok & (~entry.mask[j] | (completed_next[j] >= entry.target[j]))
            return ok

        for u in UNITS:
            lay = _queue_layout(cfg, u)
            # The head's wait mask and targets feed the unit's valid, and its instruction the
            # unit's first decode, so the head is a register, not a LUT RAM read (FPGA
            # timing; RegisteredFIFO has SyncFIFO's cycles).
            q = ResetInserter(flush_q)(RegisteredFIFO(width=lay.size, depth=cfg.queue_depth))
            m.submodules[f"queue_{_NAMES[u]}"] = q
            queues[u] = q
            head = data.View(lay, q.r_data)
            # Whether the head's wait mask holds is a register too, evaluated a cycle ahead:
            # against the counters' next values, for each word the head can hold next (the
            # word behind it, the word written, or itself), chosen by what the FIFO does at
            # the edge. The compares then start at registers and end at a register, not in
            # the unit's valid, its accept logic and the pop into the head (FPGA timing; the
            # same cycles: it equals the compare of the head against the counters).
            ok = Signal(name=f"wait_ok_{_NAMES[u]}")
            m.d.sync += ok.eq(Mux(q.head_from_mem, satisfied(data.View(lay, q.r_after)),
                                  Mux(q.head_from_write, satisfied(data.View(lay, q.w_data)),
                                      satisfied(head))))
            stall[u] = Signal(name=f"stall_{_NAMES[u]}")
            port = self.unit_port(u)
            m.d.comb += [
                stall[u].eq(q.r_rdy & ~ok),
                port.valid.eq(q.r_rdy & ok & ~abort),
                port.payload.eq(head.instr),
                q.r_en.eq(port.valid & port.ready),
            ]

        # ---------------------------------------------------------------------------------
        # Completions. A store completes once its o_done has pulsed and the channel has issued
        # every write accepted before that o_done (``tag``, the count of writes accepted before
        # it). Stores complete in order. The store port holds at most two accepted writes the
        # channel has not issued (its head and skid registers), so at most two distinct tags
        # are pending at a time: a pending tag t has wr_iss < t <= wr_acc. Stores without
        # writes share the youngest pending tag, so each pending entry is (tag, count), oldest
        # first in entry 0.
        wr_acc = Signal(32)
        wr_iss = Signal(32)
        pend_n = [Signal(cw, name=f"pend_n{i}") for i in range(2)]
        pend_tag = [Signal(32, name=f"pend_tag{i}") for i in range(2)]
        si = UNITS.index(Unit.STORE)
        cmd = self.i_dram_cmd
        st_done = self.i_done[si]
        # ok[i]: entry i is pending and its writes have issued (tags grow: ok[1] implies ok[0]).
        ok = [(pend_n[i] != 0) & (wr_iss >= pend_tag[i]) for i in range(2)]
        clear = [(pend_n[i] == 0) | ok[i] for i in range(2)]
        new_ok = st_done & (wr_iss >= wr_acc) & clear[0] & clear[1]
        comp_n = [Signal(2, name=f"comp_{_NAMES[u]}") for u in UNITS]
        st_comp = Signal(cw)
        m.d.comb += st_comp.eq(Mux(ok[0], pend_n[0], 0) + Mux(ok[1], pend_n[1], 0) + new_ok)
        for i in range(nu):
            if i != si:
                m.d.comb += comp_n[i].eq(self.i_done[i])
        # The entries left after this cycle's completions, then the new o_done's tag appended
        # (to the youngest entry when it has the same tag).
        left = [Signal(cw, name=f"left_n{i}") for i in range(2)]
        left_tag = [Signal(32, name=f"left_tag{i}") for i in range(2)]
        with m.If(~clear[0]):
            m.d.comb += [left[0].eq(pend_n[0]), left_tag[0].eq(pend_tag[0]),
                         left[1].eq(pend_n[1]), left_tag[1].eq(pend_tag[1])]
        with m.Elif(~clear[1]):
            m.d.comb += [left[0].eq(pend_n[1]), left_tag[0].eq(pend_tag[1])]
        with m.If(start):
            m.d.sync += [wr_acc.eq(0), wr_iss.eq(0), pend_n[0].eq(0), pend_n[1].eq(0)]
        with m.Else():
            m.d.sync += [wr_acc.eq(wr_acc + self.i_store_write),
                         wr_iss.eq(wr_iss + (cmd.kind == DramCmd.WR)),
                         pend_n[0].eq(left[0]), pend_tag[0].eq(left_tag[0]),
                         pend_n[1].eq(left[1]), pend_tag[1].eq(left_tag[1])]
            with m.If(st_done & ~new_ok):
                with m.If(left[0] == 0):
                    m.d.sync += [pend_n[0].eq(1), pend_tag[0].eq(wr_acc)]
                with m.Elif((left[1] == 0) & (left_tag[0] == wr_acc)):
                    m.d.sync += pend_n[0].eq(left[0] + 1)
                with m.Elif(left[1] == 0):
                    m.d.sync += [pend_n[1].eq(1), pend_tag[1].eq(wr_acc)]
                with m.Else():
                    # Two tags pending: the new one is the younger (no third is possible).
                    m.d.sync += pend_n[1].eq(left[1] + 1)

        # ---------------------------------------------------------------------------------
        # Dispatch.
        o = chk.o.payload
        hdr = Header(o.word[:11])
        mask = hdr.wait.as_value()
        unit_oh = Signal(nu)                   # the instruction's unit, one-hot
        is_nop = hdr.opcode == Opcode.NOP
        is_halt = hdr.opcode == Opcode.HALT
        is_gather = hdr.opcode == Opcode.DMA_GATHER
        # Expressions rather than a Switch: Icarus evaluates continuous assignments at time 0,
        # ``always @*`` blocks only once an input changes.
        # Without a GEMM core (cfg.gemm_core) the checker rejects every GEMM, so nothing enters
        # its queue: the queue, its counts and the GEMM counters are constant and vanish.
        for i, u in enumerate(UNITS):
            hit = 0
            for opc, info in OPCODES.items():
                if info.unit is u and (cfg.gemm_core or u is not Unit.GEMM):
                    hit = hit | (hdr.opcode == opc)
            m.d.comb += unit_oh[i].eq(hit)

        def fence(msk):
            ok = 1
            for j in range(nu):
                ok = ok & (~msk[j] | (completed[j] == issued[j]))
            return ok

        drained = Signal()
        m.d.comb += drained.eq(fence(Const((1 << nu) - 1, nu)))
        dpc = Signal(33)                       # PC of the next instruction to dispatch
        dpc_bad = (dpc[:5] != 0) | (dpc + INSTR_BYTES > cfg.dram_bytes)
        gather_wait = Signal()
        gather_pc = Signal(33)
        gather_work = Signal(WORK_BITS)
        late_busy = Signal()
        can = Signal()
        m.d.comb += can.eq(running & ~stop & ~gather_wait & ~late_busy)

        space_ok = Signal(nu)
        for i, u in enumerate(UNITS):
            m.d.comb += space_ok[i].eq(queues[u].w_rdy)
        error = o.error != ErrorCode.NONE
        go_unit = Signal()
        go_ctrl = Signal()
        go_late = Signal()
        go_err = Signal()
        go_pc = Signal()
        m.d.comb += [
            go_pc.eq(can & dpc_bad),
            go_err.eq(can & chk.o.valid & error & ~o.late),
            go_late.eq(can & chk.o.valid & error & o.late),
            go_unit.eq(can & chk.o.valid & ~error & (unit_oh != 0)
                       & ((unit_oh & space_ok) != 0)),
            go_ctrl.eq(can & chk.o.valid & ~error & (is_halt | (is_nop & fence(mask)))),
            chk.o.ready.eq(go_unit | go_ctrl),
        ]
        for i, u in enumerate(UNITS):
            q = queues[u]
            entry = data.View(_queue_layout(cfg, u), q.w_data)
            m.d.comb += [
                entry.instr.eq(o.word[:data.Layout.cast(_FORMATS[u]).size]),
                entry.mask.eq(mask),
                q.w_en.eq(go_unit & unit_oh[i]),
            ]
            for j in range(nu):
                m.d.comb += entry.target[j].eq(issued[j])

        for i in range(nu):
            m.d.comb += completed_next[i].eq(
                Mux(start, 0, completed[i] + (st_comp if i == si else comp_n[i])))
            m.d.sync += completed[i].eq(completed_next[i])
        with m.If(start):
            m.d.sync += [dpc.eq(self.i_base), gather_wait.eq(0)]
            m.d.sync += [c.eq(0) for c in issued]
        with m.Else():
            with m.If(go_unit | go_ctrl):
                m.d.sync += dpc.eq(dpc + INSTR_BYTES)
            for i in range(nu):
                m.d.sync += issued[i].eq(issued[i] + (go_unit & unit_oh[i]))
            with m.If(go_unit & is_gather):
                m.d.sync += [gather_wait.eq(1), gather_pc.eq(o.pc), gather_work.eq(o.work)]
            with m.Elif(self.i_gather_checked):
                m.d.sync += gather_wait.eq(0)

        # Run-time decision for a gather whose destination is out of range (see above).
        late_mask = Signal(nu)
        late_ins = Signal(DmaInstr)
        late_pc = Signal(33)
        late_index = Signal(32)
        late_idx = Signal(32)
        late_base = Signal(52)
        late_neg = Signal()
        late_ext = Signal(50)
        late_bad = Signal()
        lbase = late_base.as_signed()
        lext = late_ext.as_signed()
        lo = lbase + Mux(lext < 0, lext, 0)
        hi = lbase + Mux(lext > 0, lext, 0) + \
            Mux(late_ins.space == Space.ACC, late_ins.len << 2, late_ins.len) - 1
        m.d.comb += late_bad.eq(late_neg | (lo < 0) | (hi >= cfg.dram_bytes))
        late_err = Signal()
        late_code = Signal(ErrorCode)
        m.d.comb += [self.acc_rd.addr.eq(late_ins.idx_addr >> lw),
                     late_index.eq(self.acc_rd.data[late_ins.idx_addr[:lw]] if lw
                                   else self.acc_rd.data[0])]
        with m.FSM(name="late") as late_fsm:
            with m.State("IDLE"), m.If(go_late):
                m.d.sync += [late_mask.eq(mask | (1 << UNITS.index(Unit.LOAD))),
                             late_ins.eq(o.word[:data.Layout.cast(DmaInstr).size]),
                             late_pc.eq(o.pc)]
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(abort | start):
                    m.next = "IDLE"
                with m.Elif(fence(late_mask)):
                    m.next = "READ"
            with m.State("READ"):
                # The index out of the block RAM is registered before it is scaled: the RAM's
                # output, the lane select, the product and the sum were one cycle (FPGA timing).
                m.d.sync += [late_idx.eq(late_index),
                             late_ext.eq((late_ins.rows - 1) * late_ins.dram_stride)]
                m.next = "BASE"
            with m.State("BASE"):
                m.d.sync += [late_base.eq(late_ins.dram_addr
                                          + late_idx.as_signed() * late_ins.idx_scale),
                             late_neg.eq(late_idx.as_signed() < 0)]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.next = "IDLE"
        m.d.comb += [
            late_busy.eq(~late_fsm.ongoing("IDLE")),
            self.acc_rd.en.eq(late_fsm.ongoing("WAIT") & ~abort & ~start & fence(late_mask)),
            late_err.eq(late_fsm.ongoing("CHECK")),
            late_code.eq(Mux(late_bad, ErrorCode.DRAM_RANGE, ErrorCode.SRAM_RANGE)),
        ]

        # ---------------------------------------------------------------------------------
        # Run state.
        run_cycles = Signal(32)
        abort_drained = 1
        for i, u in enumerate(UNITS):
            abort_drained = abort_drained & ~self.i_busy[i] & ~queues[u].r_rdy
        ending = running & stop & ~req_hold & \
            Mux(abort, abort_drained, drained & ~gather_wait & ~late_busy)
        watchdog = running & ~abort & ~ending & (self.i_watchdog != 0) & \
            (run_cycles >= self.i_watchdog)
        with m.If(start):
            m.d.sync += [status.eq(Status.RUNNING), err.eq(ErrorCode.NONE), err_pc.eq(0),
                         stop.eq(0), abort.eq(0), run_cycles.eq(0)]
        with m.Else():
            m.d.sync += run_cycles.eq(run_cycles + running)
            with m.If(ending):
                m.d.sync += status.eq(Mux(err == ErrorCode.NONE, Status.DONE, Status.ERROR))
            with m.If(watchdog):
                m.d.sync += [stop.eq(1), abort.eq(1), err.eq(ErrorCode.WATCHDOG),
                             err_pc.eq(dpc)]
            with m.Elif(running & gather_wait & self.i_gather_checked & self.i_gather_error
                        & ~stop):
                m.d.sync += [stop.eq(1), err.eq(ErrorCode.DRAM_RANGE), err_pc.eq(gather_pc)]
            with m.Elif(late_err):
                m.d.sync += [stop.eq(1), err.eq(late_code), err_pc.eq(late_pc)]
            with m.Elif(go_ctrl & is_halt):
                m.d.sync += stop.eq(1)
            with m.Elif(go_err):
                m.d.sync += [stop.eq(1), err.eq(o.error), err_pc.eq(o.pc)]
            with m.Elif(go_pc):
                m.d.sync += [stop.eq(1), err.eq(ErrorCode.PC_RANGE), err_pc.eq(dpc)]

        # ---------------------------------------------------------------------------------
        # Counters.
        cnt = self.o_counters
        inc = {name: Signal(WORK_BITS, name=f"inc_{name}") for name in COUNTERS}
        m.d.comb += inc["cycles"].eq(1)
        m.d.comb += inc["retired_ctrl"].eq(go_ctrl)
        for i, u in enumerate(UNITS):
            n = _NAMES[u]
            done = self.i_done[i] & ~(self.i_gather_error if u is Unit.LOAD else 0)
            m.d.comb += [inc[f"retired_{n}"].eq(done), inc[f"busy_{n}"].eq(self.i_busy[i]),
                         inc[f"stall_{n}"].eq(stall[u])]
        gemm_go = go_unit & (hdr.opcode == Opcode.GEMM) if cfg.gemm_core else 0
        mac_go = go_unit & (hdr.opcode == Opcode.PIM_MAC)
        load_go = go_unit & (hdr.opcode == Opcode.DMA_LOAD)
        store_go = go_unit & (hdr.opcode == Opcode.DMA_STORE)
        gather_ok = gather_wait & self.i_gather_checked & ~self.i_gather_error
        m.d.comb += [
            inc["gemm_macs"].eq(Mux(gemm_go, o.work, 0)),
            inc["pim_macs"].eq(Mux(mac_go, o.work, 0)),
            inc["dram_read_bytes"].eq(Mux(load_go, o.work, 0) | Mux(gather_ok, gather_work, 0)),
            inc["dram_write_bytes"].eq(Mux(store_go, o.work, 0)),
            inc["dram_activates"].eq(cmd.kind == DramCmd.ACT),
            inc["dram_refreshes"].eq(cmd.kind == DramCmd.REF),
            inc["sram_conflicts"].eq(self.i_sram_conflict),
        ]
        # Row hits and misses: ``fresh[b]`` is set by an ACT to bank b and cleared by its next
        # column command (RD, WR or a PIM column read).
        B = cfg.dram_banks
        fresh = Signal(B)
        is_col = (cmd.kind == DramCmd.RD) | (cmd.kind == DramCmd.WR)
        for b in range(B):
            to_b = cmd.bank == b
            with m.If((cmd.kind == DramCmd.ACT) & to_b):
                m.d.sync += fresh[b].eq(1)
            with m.Elif((is_col & to_b) | self.i_dram_mac[b].valid):
                m.d.sync += fresh[b].eq(0)
        miss = fresh.bit_select(cmd.bank, 1)
        m.d.comb += [inc["dram_row_hits"].eq(is_col & ~miss),
                     inc["dram_row_misses"].eq(is_col & miss)]
        # The increments are registered before they are added: they come from across the
        # design (the DRAM channel's command, every SRAM client's request), and a 64-bit add
        # behind them would be one of the longest paths on an FPGA. A count therefore lands
        # one cycle after the event, and the run's last increments one cycle after STATUS
        # turns DONE or ERROR. A host reads STATUS and a counter in two bus transactions, so
        # any counter it reads after seeing the run end is final.
        # ``cfg.counter_bits`` wide, zero-extended to the 64-bit port (they wrap there).
        for k, name in enumerate(COUNTERS):
            inc_q = Signal(WORK_BITS, name=f"inc_q_{name}")
            c = Signal(cfg.counter_bits, name=f"cnt_{name}")
            m.d.comb += cnt[k].eq(c)
            m.d.sync += inc_q.eq(Mux(running & ~self.i_clear, inc[name], 0))
            with m.If(self.i_clear):
                m.d.sync += c.eq(0)
            with m.Else():
                m.d.sync += c.eq(c + inc_q)
        return m
