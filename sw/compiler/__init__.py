"""The compiler: a quantised GPT in, a DRAM image and per-step programs out."""

from .gpt import CompiledGPT, ProgramInfo
from .program import CompileError, DramFitError

__all__ = ["CompileError", "CompiledGPT", "DramFitError", "ProgramInfo"]
