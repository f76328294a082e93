## Arty A7-100T (XC7A100T-1CSG324C) pins of llmaccel's board top (hw/board_top.py).
## Port names are the board top's: clk_in, rst_in, uart_rx, uart_tx, led[7:0].
## `llmaccel synth --target xilinx` reads the clock period below to build the board top and
## checks that every port named here exists; the file is written for Vivado or openXC7
## place-and-route (Yosys itself does not read XDC). Only four LEDs exist: led[7:4] are
## unconnected (the board top drives led[5] as reset and led[7:6] low).
## Pin sites from the board's master XDC (Digilent Arty-A7-100-Master.xdc).

## 100 MHz oscillator
set_property -dict { PACKAGE_PIN E3 IOSTANDARD LVCMOS33 } [get_ports { clk_in }];
create_clock -add -name sys_clk_pin -period 10.00 -waveform {0 5} [get_ports { clk_in }];

## Reset: the red RESET button (ck_rst, low while pressed)
set_property -dict { PACKAGE_PIN C2 IOSTANDARD LVCMOS33 } [get_ports { rst_in }];

## USB-UART bridge (directions as seen from the FPGA)
set_property -dict { PACKAGE_PIN D10 IOSTANDARD LVCMOS33 } [get_ports { uart_tx }];
set_property -dict { PACKAGE_PIN A9 IOSTANDARD LVCMOS33 } [get_ports { uart_rx }];

## Green LEDs LD4..LD7: heartbeat, run ended, serial frame, overrun
set_property -dict { PACKAGE_PIN H5 IOSTANDARD LVCMOS33 } [get_ports { led[0] }];
set_property -dict { PACKAGE_PIN J5 IOSTANDARD LVCMOS33 } [get_ports { led[1] }];
set_property -dict { PACKAGE_PIN T9 IOSTANDARD LVCMOS33 } [get_ports { led[2] }];
set_property -dict { PACKAGE_PIN T10 IOSTANDARD LVCMOS33 } [get_ports { led[3] }];

set_false_path -from [get_ports { rst_in uart_rx }];
set_false_path -to [get_ports { uart_tx led[*] }];
