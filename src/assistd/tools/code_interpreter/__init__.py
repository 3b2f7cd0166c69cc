"""The execution half of the code interpreter tool: sandboxed Jupyter kernels, one per session (a thread's or
a container's); interpreter.py says which module holds what."""

from assistd.tools.code_interpreter.interpreter import CodeInterpreter, ExecutionResult

__all__ = ["CodeInterpreter", "ExecutionResult"]
