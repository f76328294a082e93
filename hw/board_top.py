"""FPGA board top level: the accelerator behind a UART bridge, a reset and status LEDs."""

from __future__ import annotations

from amaranth import ClockDomain, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .accelerator import Accelerator
from .config import AccelConfig
from .uart_bridge import UartBridge

__all__ = ["BoardTop", "ecp5_pll_params", "uart_divisor"]


def uart_divisor(clk_hz: int, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; raises when the rate error exceeds
    2 % (an 8N1 receiver samples the stop bit 9.5 bit times after the start edge)."""
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"baud and clock must be positive, not {baud!r} / {clk_hz!r}")
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"baud {baud} is too fast for a {clk_hz} Hz clock (at least 4 "
                         f"cycles per bit are needed)")
    err = clk_hz / div / baud - 1
    if abs(err) > 0.02:
        raise ValueError(f"baud {baud} cannot be made from a {clk_hz} Hz clock: the nearest "
                         f"divisor {div} is {100 * err:+.1f} % off (at most ±2 %)")
    return div


def ecp5_pll_params(in_hz: int, out_hz: int) -> dict[str, int]:
    """EHXPLLL dividers for ``out_hz`` from ``in_hz`` with feedback from CLKOP: the exact
    ratio with the VCO (``out · CLKOP_DIV``) nearest 600 MHz within 400–800 MHz and the phase
    detector (``in / CLKI_DIV``) at least 10 MHz. Raises when no exact setting exists, naming
    the nearest frequencies that have one."""
    best = _pll_setting(in_hz, out_hz)
    if best is None:
        ok = [k / 2 for k in range(1, 801) if _pll_setting(in_hz, k * 500_000) is not None]
        near = sorted(sorted(ok, key=lambda f: (abs(f * 1e6 - out_hz), f))[:4])
        raise ValueError(
            f"the ECP5 PLL cannot make exactly {out_hz / 1e6:.9g} MHz from {in_hz / 1e6:.9g} MHz "
            f"(VCO 400–800 MHz, phase detector ≥ 10 MHz); nearest that it can (half-MHz "
            f"steps): {', '.join(f'{f:g}' for f in near)} MHz")
    return best


def _pll_setting(in_hz: int, out_hz: int) -> dict[str, int] | None:
    best = None
    for clki in range(1, 129):
        pfd = in_hz / clki
        if pfd < 10e6:
            break
        for fb in range(1, 81):
            if in_hz * fb != out_hz * clki:
                continue
            for op in range(1, 129):
                vco = out_hz * op
                if 400e6 <= vco <= 800e6:
                    score = abs(vco - 600e6)
                    if best is None or score < best[0]:
                        best = (score, {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op})
    return None if best is None else best[1]


class BoardTop(wiring.Component):
    """The accelerator on an FPGA board, reached over a serial port.

    :class:`~.accelerator.Accelerator` with its Wishbone slave driven by a
    :class:`~.uart_bridge.UartBridge`, all in one clock domain: the board clock, or on ECP5 an
    ``EHXPLLL`` output at ``core_hz``. Reset is held for 2^``por_bits`` cycles after
    configuration (and until the PLL locks) and while the reset button is pressed.

    Parameters
    ----------
    cfg : AccelConfig
    clk_hz : int
        Board oscillator frequency (ULX3S: 25 MHz, Arty A7: 100 MHz).
    baud : int
        Serial rate (8N1); the divisor is ``core clock / baud``.
    core_hz : int, optional
        Core clock made by an ECP5 PLL from the board clock; ``None`` runs the core on the
        board clock (and instantiates no vendor primitive, so the design simulates and lints).
    reset_active_low : bool
        Polarity of the reset button (ULX3S FIRE buttons: high when pressed; Arty: low).
    por_bits : int
        Power-on reset length.
    image : bytes, optional
        Initial DRAM contents baked into the bitstream (normally ``None``: the host loads the
        image over the serial port).
    timeout : int, optional
        Bridge frame timeout in cycles (default: about 0.2 s).
    top : class, optional
        The design behind the bridge, constructed as ``top(cfg, image)``; default
        :class:`~.accelerator.Accelerator`. Tests put a stand-in with the same bus here.
    global_reset : bool
        ECP5: drive the core's reset through a ``DCCA`` global buffer, so that it reaches its
        flip-flops over a global network instead of the fabric (``llmaccel synth --target
        ecp5`` sets it; like the PLL, a vendor primitive the simulators do not have).

    Ports
    -----
    clk_in : In(1)
        Board clock pin.
    rst_in : In(1)
        Reset button pin.
    uart_rx : In(1)
        Serial data from the host.
    uart_tx : Out(1)
        Serial data to the host.
    led : Out(8)
        0: heartbeat (core clock / 2^24), 1: the last run has ended (``o_done``), 2: a frame is
        being handled, 3: receive overrun, 4: framing error, 5: reset, 6–7: off.
    """

    def __init__(self, cfg: AccelConfig, *, clk_hz: int = 25_000_000, baud: int = 1_000_000,
                 core_hz: int | None = None, reset_active_low: bool = False, por_bits: int = 16,
                 image: bytes | None = None, timeout: int | None = None, top=None,
                 global_reset: bool = False):
        self.cfg = cfg
        self.clk_hz = clk_hz
        self.core_hz = core_hz or clk_hz
        self.pll = ecp5_pll_params(clk_hz, core_hz) if core_hz and core_hz != clk_hz else None
        self.baud = baud
        self.divisor = uart_divisor(self.core_hz, baud)
        self.reset_active_low = reset_active_low
        if not isinstance(por_bits, int) or not 1 <= por_bits <= 30:
            raise ValueError(f"por_bits must be between 1 and 30, not {por_bits!r}")
        self.por_bits = por_bits
        self.global_reset = global_reset
        self.timeout = timeout if timeout is not None else max(self.core_hz // 5,
                                                               20 * self.divisor)
        self.accel = (top or Accelerator)(cfg, image)
        self.bridge = UartBridge(self.divisor, timeout=self.timeout,
                                 addr_width=len(self.accel.bus.adr))
        super().__init__({"clk_in": In(1), "rst_in": In(1), "uart_rx": In(1, init=1),
                          "uart_tx": Out(1, init=1), "led": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        locked = Signal(init=1)
        if self.pll is None:
            m.d.comb += [ClockSignal("sync").eq(self.clk_in), ClockSignal("por").eq(self.clk_in)]
        else:
            core_clk = Signal()
            p = self.pll
            m.submodules.pll = Instance(
                "EHXPLLL",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                a_FREQUENCY_PIN_CLKI=f"{self.clk_hz / 1e6:.6f}",
                a_FREQUENCY_PIN_CLKOP=f"{self.core_hz / 1e6:.6f}",
                i_CLKI=self.clk_in, i_CLKFB=core_clk, o_CLKOP=core_clk, o_LOCK=locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
                i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0)
            m.d.comb += [ClockSignal("sync").eq(core_clk), ClockSignal("por").eq(core_clk)]

        # Reset: the button through a two-flop synchroniser, and a power-on counter that also
        # waits for the PLL. Neither has a reset of its own (FPGA registers start at init).
        s0_btn = Signal()
        s1_btn = Signal()
        btn = ~self.rst_in if self.reset_active_low else self.rst_in
        m.d.por += [s0_btn.eq(btn), s1_btn.eq(s0_btn)]
        por = Signal(self.por_bits)
        por_done = Signal()
        with m.If(~locked | s1_btn):
            m.d.por += [por.eq(0), por_done.eq(0)]
        with m.Elif(~por_done):
            m.d.por += [por.eq(por + 1), por_done.eq(por == (1 << self.por_bits) - 1)]
        if self.global_reset:
            # The reset reaches ~14 000 flip-flops' LSR pins: on a global network (an ECP5
            # DCCA buffer) rather than through the fabric, where it was the most congested net
            # of the whole design (docs/fpga.md). nextpnr promotes only clocks by itself.
            rst_global = Signal()
            m.submodules.reset_buffer = Instance("DCCA", i_CLKI=~por_done, i_CE=1,
                                                 o_CLKO=rst_global)
            m.d.comb += ResetSignal("sync").eq(rst_global)
        else:
            m.d.comb += ResetSignal("sync").eq(~por_done)

        m.submodules.accel = accel = self.accel
        m.submodules.bridge = bridge = self.bridge
        wiring.connect(m, bridge.bus, accel.bus)
        m.d.comb += [bridge.i_rx.eq(self.uart_rx), self.uart_tx.eq(bridge.o_tx)]

        beat = Signal(24)
        m.d.sync += beat.eq(beat + 1)
        m.d.comb += [self.led[0].eq(beat[-1]), self.led[1].eq(accel.o_done),
                     self.led[2].eq(bridge.o_active), self.led[3].eq(bridge.o_overrun),
                     self.led[4].eq(bridge.o_frame_error), self.led[5].eq(~por_done)]
        return m
