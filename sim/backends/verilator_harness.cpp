// Host harness for the Verilated accelerator top level, loaded by sim/backends/rtl.py with ctypes.
//
// Everything that happens per clock cycle happens here, in C++: Wishbone classic transfers,
// bulk loads and reads through the memory window (MEM_SEL / MEM_ADDR / MEM_DATA of
// hw/regs.py), and the run loop that starts a program and clocks the model until it stops.
// Python calls one function per host operation, so loading a DRAM image, running a program or
// reading back every memory costs one ctypes call each.
//
// The generated header "llm_ports.h" (written by rtl.py next to the Verilog) maps the harness's
// names onto the top level's ports and register offsets:
//   LLM_CLK, LLM_RST, WB_ADR, WB_DAT_W, WB_DAT_R, WB_SEL, WB_CYC, WB_STB, WB_WE, WB_ACK,
//   LLM_DONE and LLM_DONE_PULSE (optional), REG_CTRL, REG_STATUS, REG_MEM_SEL, REG_MEM_ADDR, REG_MEM_DATA,
//   STATUS_RUNNING, CTRL_START, WB_ADR_MASK.
// LLM_MAIN builds a standalone executable that replays a run script with no Python at all
// (the reference point of `llmaccel bench simspeed`).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "verilated.h"
#include "Vtop.h"
#include "llm_ports.h"

#if defined(LLM_TRACE_FST)
#include "verilated_fst_c.h"
typedef VerilatedFstC TraceFile;
#elif defined(LLM_TRACE_VCD)
#include "verilated_vcd_c.h"
typedef VerilatedVcdC TraceFile;
#endif

namespace {

// Cycles a bus transfer may wait for ACK before the harness gives up.
constexpr uint64_t kAckTimeout = 100000;

struct Sim {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vtop> top;
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    std::unique_ptr<TraceFile> tfp;
#endif
    uint64_t ticks = 0;   // clock cycles simulated since construction
    int bus_error = 0;    // set when a transfer timed out
    bool low_seen = false;   // the done output was low in some cycle since START
    bool done_seen = false;  // ... and then high: the run has ended
};

// Sample the done output in the current cycle (before its rising edge). A pulse output
// (LLM_DONE_PULSE) ends a run when high; a level output only after it was low since START.
inline void sample_done(Sim* s) {
#ifdef LLM_DONE
    if (!s->top->LLM_DONE)
        s->low_seen = true;
#ifdef LLM_DONE_PULSE
    else
        s->done_seen = true;
#else
    else if (s->low_seen)
        s->done_seen = true;
#endif
#else
    (void)s;
#endif
}

inline void eval_dump(Sim* s) {
    s->top->eval();
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    if (s->tfp) s->tfp->dump(s->ctx->time());
#endif
    s->ctx->timeInc(1);
}

// One clock cycle: inputs set by the caller are seen at the rising edge that ends it.
inline void tick(Sim* s) {
    s->top->LLM_CLK = 0;
    eval_dump(s);
    sample_done(s);
    s->top->LLM_CLK = 1;
    eval_dump(s);
    ++s->ticks;
}

// One Wishbone classic transfer. The slave's ACK and read data are sampled in the cycle whose
// rising edge completes the transfer (after the falling edge, before the rising one).
uint32_t transfer(Sim* s, bool we, uint32_t byte_addr, uint32_t wdata) {
    Vtop* t = s->top.get();
    t->WB_ADR = (byte_addr >> 2) & WB_ADR_MASK;
    t->WB_DAT_W = wdata;
    t->WB_WE = we;
    t->WB_SEL = 0xF;
    t->WB_CYC = 1;
    t->WB_STB = 1;
    uint32_t rdata = 0;
    for (uint64_t n = 0;; ++n) {
        t->LLM_CLK = 0;
        eval_dump(s);
        sample_done(s);
        const bool ack = t->WB_ACK;
        rdata = t->WB_DAT_R;
        t->LLM_CLK = 1;
        eval_dump(s);
        ++s->ticks;
        if (ack) break;
        if (n >= kAckTimeout) {
            s->bus_error = 1;
            break;
        }
    }
    t->WB_CYC = 0;
    t->WB_STB = 0;
    t->WB_WE = 0;
    return rdata;
}

void select_window(Sim* s, uint32_t sel, uint32_t addr) {
    transfer(s, true, REG_MEM_SEL, sel);
    transfer(s, true, REG_MEM_ADDR, addr);
}

}  // namespace

extern "C" {

// Create a model (with a waveform file when the library was built with tracing and ``trace``
// is not empty) and hold it in reset for a few cycles.
void* llm_open(const char* trace) {
    Sim* s = new Sim;
    s->ctx = std::make_unique<VerilatedContext>();
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    s->ctx->traceEverOn(true);
#endif
    s->top = std::make_unique<Vtop>(s->ctx.get(), "top");
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    if (trace && trace[0]) {
        s->tfp = std::make_unique<TraceFile>();
        s->top->trace(s->tfp.get(), 99);
        s->tfp->open(trace);
    }
#else
    (void)trace;
#endif
    Vtop* t = s->top.get();
    t->WB_CYC = 0;
    t->WB_STB = 0;
    t->WB_WE = 0;
    t->LLM_RST = 1;
    for (int i = 0; i < 4; ++i) tick(s);
    t->LLM_RST = 0;
    tick(s);
    return s;
}

void llm_close(void* h) {
    Sim* s = static_cast<Sim*>(h);
    if (!s) return;
    s->top->final();
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    if (s->tfp) s->tfp->close();
#endif
    delete s;
}

// 1 when the library was built with waveform support.
int llm_has_trace(void) {
#if defined(LLM_TRACE_FST) || defined(LLM_TRACE_VCD)
    return 1;
#else
    return 0;
#endif
}

uint64_t llm_ticks(void* h) { return static_cast<Sim*>(h)->ticks; }

// Nonzero once a transfer has timed out (the model is then unusable); reading clears it.
int llm_bus_error(void* h) {
    Sim* s = static_cast<Sim*>(h);
    const int e = s->bus_error;
    s->bus_error = 0;
    return e;
}

uint32_t llm_read(void* h, uint32_t byte_addr) {
    return transfer(static_cast<Sim*>(h), false, byte_addr, 0);
}

void llm_write(void* h, uint32_t byte_addr, uint32_t data) {
    transfer(static_cast<Sim*>(h), true, byte_addr, data);
}

void llm_idle(void* h, uint64_t cycles) {
    Sim* s = static_cast<Sim*>(h);
    for (uint64_t i = 0; i < cycles; ++i) tick(s);
}

// Write ``n`` words through the memory window starting at window address ``addr`` of ``sel``.
void llm_mem_write(void* h, uint32_t sel, uint32_t addr, const uint32_t* words, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    select_window(s, sel, addr);
    for (uint64_t i = 0; i < n && !s->bus_error; ++i) transfer(s, true, REG_MEM_DATA, words[i]);
}

// Sparse write: ``nruns`` runs, run k being ``lens[k]`` words at window address ``addrs[k]``,
// their data concatenated in ``words``.
void llm_mem_write_runs(void* h, uint32_t sel, const uint32_t* addrs, const uint32_t* lens,
                        uint64_t nruns, const uint32_t* words) {
    Sim* s = static_cast<Sim*>(h);
    transfer(s, true, REG_MEM_SEL, sel);
    for (uint64_t k = 0; k < nruns && !s->bus_error; ++k) {
        transfer(s, true, REG_MEM_ADDR, addrs[k]);
        for (uint32_t i = 0; i < lens[k] && !s->bus_error; ++i)
            transfer(s, true, REG_MEM_DATA, *words++);
    }
}

void llm_mem_read(void* h, uint32_t sel, uint32_t addr, uint32_t* words, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    select_window(s, sel, addr);
    for (uint64_t i = 0; i < n && !s->bus_error; ++i)
        words[i] = transfer(s, false, REG_MEM_DATA, 0);
}

// Start the program (PROG_BASE and WATCHDOG already written) and clock the model until STATUS
// leaves RUNNING or ``limit`` cycles have passed. Returns the final STATUS, or -1 when the limit
// was reached (the model is still running) or a transfer timed out. STATUS is read when the
// done output says the run has ended, and every 4096 cycles regardless.
int llm_run(void* h, uint64_t limit) {
    Sim* s = static_cast<Sim*>(h);
    transfer(s, true, REG_CTRL, CTRL_START);
    s->low_seen = s->done_seen = false;
    const uint64_t t0 = s->ticks;
    while (!s->bus_error) {
        if (s->ticks - t0 >= limit) return -1;
        tick(s);
        if (!s->done_seen && (s->ticks - t0) % 4096) continue;
        s->done_seen = false;
        const uint32_t status = transfer(s, false, REG_STATUS, 0);
        if (status != STATUS_RUNNING) return static_cast<int>(status);
    }
    return -1;
}

}  // extern "C"

#ifdef LLM_MAIN
// Standalone replay of a recorded session, with no Python at all (the reference point of
// `llmaccel bench simspeed`): ``harness SCRIPT DATA`` where DATA holds little-endian words and
// each line of SCRIPT is one of
//   w REG VALUE              register write
//   r REG                    register read
//   m SEL ADDR N OFFSET      write N words of DATA from word OFFSET through the window
//   d SEL ADDR N             read N words through the window
//   x LIMIT                  start a run and clock it to the end
// It prints "ticks N seconds S" for the whole replay (the model's construction excluded).
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s SCRIPT DATA\n", argv[0]);
        return 2;
    }
    std::ifstream script(argv[1]);
    std::ifstream data(argv[2], std::ios::binary | std::ios::ate);
    if (!script || !data) {
        std::fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    const auto bytes = static_cast<size_t>(data.tellg());
    std::vector<uint32_t> words(bytes / 4 + 1);
    data.seekg(0);
    data.read(reinterpret_cast<char*>(words.data()), static_cast<std::streamsize>(bytes));
    std::vector<uint32_t> sink;
    void* h = llm_open("");
    const uint64_t ticks0 = llm_ticks(h);
    const auto t0 = std::chrono::steady_clock::now();
    std::string line;
    int status = 0;
    while (std::getline(script, line)) {
        std::istringstream in(line);
        std::string op;
        in >> op;
        uint64_t a = 0, b = 0, c = 0, d = 0;
        if (op == "w") {
            in >> a >> b;
            llm_write(h, static_cast<uint32_t>(a), static_cast<uint32_t>(b));
        } else if (op == "r") {
            in >> a;
            llm_read(h, static_cast<uint32_t>(a));
        } else if (op == "m") {
            in >> a >> b >> c >> d;
            llm_mem_write(h, static_cast<uint32_t>(a), static_cast<uint32_t>(b), &words[d], c);
        } else if (op == "d") {
            in >> a >> b >> c;
            sink.resize(c);
            llm_mem_read(h, static_cast<uint32_t>(a), static_cast<uint32_t>(b), sink.data(), c);
        } else if (op == "x") {
            in >> a;
            status = llm_run(h, a);
        }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("ticks %llu seconds %.6f status %d\n",
                static_cast<unsigned long long>(llm_ticks(h) - ticks0), secs, status);
    llm_close(h);
    return 0;
}
#endif
