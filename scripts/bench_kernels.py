"""Code interpreter kernels: first execution with a warm pool vs a cold start, and executions per second.

    .venv/bin/python scripts/bench_kernels.py [--rounds 5] [--execs 200]

Each measure goes through CodeInterpreter.execute, sandbox included (bubblewrap when installed).
"first execution" runs `import pandas, matplotlib.pyplot; print(1)` in a new thread: with a warm pool the
kernel is already started and has those modules loaded; cold, the kernel starts when asked.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import uuid

from assistd.config import Settings
from assistd.tools.code_interpreter import CodeInterpreter

FIRST = "import pandas, matplotlib.pyplot\nprint(1)"


def wait_pool(ci: CodeInterpreter, size: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ci.pool.warm_count() >= size:
            return
        time.sleep(0.02)
    raise SystemExit("the pool did not fill")


def first_execution(ci: CodeInterpreter, warm: bool, code: str = FIRST) -> float:
    if warm:
        wait_pool(ci, 1)
    thread = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    result = ci.execute("bench", thread, code, [])
    elapsed = time.perf_counter() - started
    assert not result.error, result.logs
    ci.close_session(thread)
    return elapsed


def warm_rate(ci: CodeInterpreter, count: int) -> float:
    thread = "bench-rate"
    ci.execute("bench", thread, "x = 0", [])
    started = time.perf_counter()
    for _ in range(count):
        ci.execute("bench", thread, "x += 1", [])
    elapsed = time.perf_counter() - started
    assert ci.execute("bench", thread, "print(x)", []).logs.strip() == str(count)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    warm_ci = CodeInterpreter(Settings(kernel_pool_size=1))
    warm_ci.start()
    cold_ci = CodeInterpreter(Settings(kernel_pool_size=0))
    cold_ci.start()  # no kernel ahead; the shared font cache as a server has it
    try:
        for name, on, why in warm_ci.sandbox_report():
            print(f"  {name:24} {'on ' if on else 'OFF'} {why}")
        warm = [first_execution(warm_ci, warm=True) for _ in range(args.rounds)]
        cold = [first_execution(cold_ci, warm=False) for _ in range(args.rounds)]
        bare = [first_execution(cold_ci, warm=False, code="print(1)") for _ in range(args.rounds)]
        rate = warm_rate(warm_ci, args.execs)
    finally:
        warm_ci.shutdown()
        cold_ci.shutdown()
    print(f"first execution, warm pool : median {statistics.median(warm) * 1000:7.1f} ms  (n={len(warm)})")
    print(f"first execution, cold start: median {statistics.median(cold) * 1000:7.1f} ms  (n={len(cold)})")
    print(f"cold start, print(1) only  : median {statistics.median(bare) * 1000:7.1f} ms  (n={len(bare)})")
    print(f"warm kernel, trivial code  : {rate:7.1f} executions/s  (n={args.execs})")


if __name__ == "__main__":
    main()
