"""Threads: results independent of num_threads, concurrent callers, the GIL released during
compute, Ctrl-C stopping a long call.

Not tested here: an exception raised inside a worker thread reaching Python. The scan tasks
(cpp/src/scan/topk.cpp run_scan and the kernels) neither allocate nor throw, so no input from
Python makes a worker throw; the capture path (thread_pool.cpp, first exception_ptr kept and
rethrown after the join) can only be exercised from C++.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

import recfast
from recfast import reference

from helpers import assert_topk_equivalent, random_data

METRICS = ["cosine", "dot"]


def _with_planted_ties(x, rng):
    """Copy a few items to far-apart positions so tied scores straddle chunk boundaries."""
    n = x.shape[0]
    src = rng.integers(0, n, 8)
    for s in src:
        for dst in rng.integers(0, n, 3):
            x[dst] = x[s]
    return x


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "b, n, d",
    [(1, 100_000, 128), (3, 100_000, 17), (9, 30_000, 64), (100, 20_000, 128), (300, 5_000, 33)],
)
def test_results_do_not_depend_on_num_threads(simd_level, metric, b, n, d):
    rng = np.random.default_rng(b + n + d)
    q, x = random_data(b + d, b, n, d)
    x = _with_planted_ties(x, rng)
    q[0] = x[5]  # a query equal to an item: its planted twins tie exactly at the top
    mask = rng.random((b, n)) < 0.05
    ex = sp.csr_matrix(mask)
    k = 20
    base = recfast.topk(q, x, k, metric=metric, exclude=ex, num_threads=1)
    assert_topk_equivalent(
        base, reference.topk(q, x, k, metric=metric, exclude=ex), q, x, metric, k, ex
    )
    for threads in (2, 3, 8, None):
        got = recfast.topk(q, x, k, metric=metric, exclude=ex, num_threads=threads)
        np.testing.assert_array_equal(got.ids, base.ids, err_msg=f"num_threads={threads}")
        np.testing.assert_array_equal(got.scores, base.scores, err_msg=f"num_threads={threads}")


def test_concurrent_python_threads():
    """Eight Python threads calling at once on different inputs all get their own results."""
    jobs = []
    for j in range(24):
        b = [1, 4, 9, 50, 130][j % 5]
        n = [3000, 20_000, 60_000][j % 3]
        d = [8, 33, 128][(j // 3) % 3]
        q, x = random_data(500 + j, b, n, d)
        metric = METRICS[j % 2]
        ex = [np.arange(j, n, 7 + j)] * b if j % 4 == 0 else None
        threads = [None, 1, 2, 3][j % 4]
        jobs.append((q, x, 10 + j, metric, ex, threads))

    def run(job):
        q, x, k, metric, ex, threads = job
        return recfast.topk(q, x, k, metric=metric, exclude=ex, num_threads=threads)

    expected = [run(job) for job in jobs]
    for job, want in zip(jobs, expected):
        q, x, k, metric, ex, _ = job
        assert_topk_equivalent(
            want, reference.topk(q, x, k, metric=metric, exclude=ex), q, x, metric, k, ex
        )
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _round in range(2):
            results = list(pool.map(run, jobs))
            for n_job, (got, want) in enumerate(zip(results, expected)):
                np.testing.assert_array_equal(got.ids, want.ids, err_msg=f"job {n_job}")
                np.testing.assert_array_equal(got.scores, want.scores, err_msg=f"job {n_job}")


# The child below runs one native call far longer than it takes to interrupt it (2**26 items,
# all one row with a zero row stride, so they cost no memory: ~35 TFLOP at B = 2048, d = 128, many
# seconds on any CPU) and lets the parent interrupt it, so that no check depends on the
# machine's speed, only on the order of events:
#
# 1. The switch interval is made so long that another Python thread gets the GIL only when the
#    thread holding it gives it up on its own (the interpreter never forces a switch).
# 2. A watcher thread waits until the main thread is about to call recfast.topk, then observes,
#    WATCHES times, the flag the main thread holds up for exactly as long as the call runs,
#    sleeping (giving up the GIL) between observations. It can do this only while the main
#    thread is inside the call and has released the GIL; were the GIL held during the compute,
#    the watcher would first run after the call and see the flag down.
# 3. It prints how many of its observations fell inside the call; the parent then sends SIGINT
#    and the call must end with KeyboardInterrupt, not complete.
# 4. After the interruption the worker pool still works: a small call gives the same result as
#    before the long one, equivalent to the NumPy reference.
WATCHES = 20
_CHILD = textwrap.dedent(
    f"""
    import sys, threading, time
    import numpy as np
    import recfast
    import recfast.reference
    sys.path.insert(0, sys.argv[1])
    from helpers import assert_topk_equivalent

    threads = None if sys.argv[2] == "None" else int(sys.argv[2])
    rng = np.random.default_rng(0)
    small_q = rng.standard_normal((20, 16)).astype(np.float32)
    small_x = rng.standard_normal((5000, 16)).astype(np.float32)
    before = recfast.topk(small_q, small_x, 5, num_threads=threads)  # starts the pool
    d = 128
    q = rng.standard_normal((2048, d)).astype(np.float32)
    x = np.broadcast_to(rng.standard_normal(d).astype(np.float32), (2**26, d))

    state = {{"in_call": False}}
    go = threading.Event()

    def watcher():
        go.wait()
        inside = 0
        for _ in range({WATCHES}):
            inside += state["in_call"]
            time.sleep(0.001)  # gives the GIL up; taking it back needs it free again
        print("inside", inside, flush=True)

    sys.setswitchinterval(1e6)  # no forced switches: the GIL changes hands only when given up
    w = threading.Thread(target=watcher)
    w.start()
    state["in_call"] = True
    go.set()
    try:
        recfast.topk(q, x, 10, num_threads=threads)
        state["in_call"] = False
        print("completed", flush=True)
    except KeyboardInterrupt:
        state["in_call"] = False
        print("interrupted", flush=True)
    w.join()
    sys.setswitchinterval(0.005)
    after = recfast.topk(small_q, small_x, 5, num_threads=threads)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.scores, before.scores)
    want = recfast.reference.topk(small_q, small_x, 5)
    assert_topk_equivalent(after, want, small_q, small_x, "cosine", 5)
    print("ok", flush=True)
    """
)

# Hang guards only: a correct build passes in about a second, whatever the machine's speed.
_GUARD_S = 120


def _interrupt_a_long_call(threads: str) -> tuple[str, str, str, int]:
    """Run the child; send SIGINT once its watcher has reported. Returns (the watcher's line,
    the rest of stdout, stderr, exit code)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, os.path.dirname(__file__), threads],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], _GUARD_S)
        if not ready:
            pytest.fail(
                f"the watcher thread did not run within {_GUARD_S} s of the call "
                "starting (is the GIL held during the compute?)"
            )
        line = proc.stdout.readline().strip()
        if line.startswith("inside"):
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=_GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the call still ran {_GUARD_S} s after SIGINT: it was not interrupted")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return line, out, err, proc.returncode


def test_gil_released_during_long_call():
    """Another Python thread runs, again and again, while a long top-k call computes."""
    line, out, err, rc = _interrupt_a_long_call("1")
    assert line == f"inside {WATCHES}", (
        f"the watcher thread ran outside the call ({line!r}): the GIL was not released",
        out,
        err,
    )
    assert out.split() == ["interrupted", "ok"], (out, err)
    assert rc == 0, err


@pytest.mark.parametrize("threads", ["None", "1", "3"])
def test_ctrl_c_stops_a_long_call(threads):
    """SIGINT during a long call raises KeyboardInterrupt from it; the pool works after."""
    line, out, err, rc = _interrupt_a_long_call(threads)
    assert line == f"inside {WATCHES}", (line, out, err)
    assert out.split() == ["interrupted", "ok"], (out, err)
    assert rc == 0, err


_FORK_CHILD = textwrap.dedent(
    """
    import os
    import numpy as np
    import recfast
    rng = np.random.default_rng(0)
    q = rng.standard_normal((50, 64)).astype(np.float32)
    x = rng.standard_normal((100_000, 64)).astype(np.float32)
    want = recfast.topk(q, x, 10, num_threads=2)  # starts the worker pool
    pid = os.fork()
    if pid == 0:
        got = recfast.topk(q, x, 10, num_threads=2)
        os._exit(0 if (got.ids == want.ids).all() and (got.scores == want.scores).all() else 3)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status))
    """
)


def test_fork_after_pool_started():
    """A forked child (multiprocessing's default on Linux) gets a fresh pool that works."""
    out = subprocess.run(
        [sys.executable, "-c", _FORK_CHILD], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "child 0", (out.stdout, out.stderr)
