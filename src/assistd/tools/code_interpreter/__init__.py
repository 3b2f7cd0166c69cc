"""The execution half of the code interpreter tool: sandboxed Jupyter kernels, one per thread."""

from assistd.tools.code_interpreter.interpreter import CodeInterpreter, ExecutionResult

__all__ = ["CodeInterpreter", "ExecutionResult"]
