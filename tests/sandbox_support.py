"""Sandbox tests run, never skip, where the mechanisms must exist: in CI (CI=true), and on any machine where
the server runs as root with bubblewrap installed (CI is such a machine). Elsewhere a missing mechanism is a
skip that says which."""

from __future__ import annotations

import os
import shutil

import pytest


def must_have_mechanisms() -> bool:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return ci or (os.geteuid() == 0 and shutil.which("bwrap") is not None)


def lacking(what: str) -> None:
    """A mechanism the test needs is missing: a failure where it must exist, a skip elsewhere."""
    message = f"this machine lacks the mechanism ({what})"
    if must_have_mechanisms():
        pytest.fail(message + ": in CI, or as root with bubblewrap installed, it must be there")
    pytest.skip(message)


def require_mechanism(present: bool, what: str) -> None:
    if not present:
        lacking(what)


def require_isolation() -> None:
    """Kernels run only in the sandbox: without it the interpreter refuses (see test_code_fail_closed)."""
    from assistd.config import Settings
    from assistd.tools.code_interpreter.interpreter import CodeInterpreter

    probe = CodeInterpreter(Settings(kernel_pool_size=0))
    reason = probe.unavailable_reason()
    probe.shutdown()
    if reason is not None:
        lacking(reason)
