"""How the batches of a rescoring run are made and run.

* batch sizing (:func:`auto_batch_size`: from free GPU memory and a probe batch);
* fan-out of batches to a Dask cluster (:func:`fan_out`), or in process, several
  batches at once on the CPU's cores (:func:`parallel_batches`);
* :func:`chunked`, :func:`prefetch` (inputs read by a background thread while the model
  works), :func:`progress_bar`.

Heavy libraries (torch, dask) are imported inside the functions so that building the
``get-md`` parser stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable, Iterable, Iterator, Optional

from get_md.errors import WorkflowError

from .model import ModelRef, run_model

logger = logging.getLogger("get_md.workflows")

#: Default batch sizes (structures per model call) when none is given.
DEFAULT_CPU_BATCH = 16
MAX_AUTO_BATCH = 4096


def auto_batch_size(
    spec: ModelRef,
    sample: Callable[[int], Any],
    requested: Optional[int],
    atoms_per_item: int,
    n_items: Optional[int] = None,
    parallel: int = 1,
) -> int:
    """Structures per model call.

    ``requested`` wins when given. On CPU the default is :data:`DEFAULT_CPU_BATCH`,
    or fewer when ``n_items`` (if known) would not fill ``parallel`` batches of it, so
    that every core of :func:`fan_out` gets work (9 poses, 2 cores: batches of 5 and 4).
    On CUDA a probe batch (``sample(n)`` returns a batched graph of n items) is run to
    measure peak memory per atom, and the batch is sized to use about half of the
    free memory (peak activations grow linearly with atoms in a radius graph).
    """
    if requested is not None:
        if requested < 1:
            raise WorkflowError(f"--batch-size must be >= 1, got {requested}")
        return int(requested)
    if not spec.device.startswith("cuda"):
        if n_items is not None and n_items > 0 and parallel > 1:
            return max(1, min(DEFAULT_CPU_BATCH, -(-int(n_items) // int(parallel))))
        return DEFAULT_CPU_BATCH
    import torch

    dev = torch.device(spec.device)
    probe_n = 2
    graph = sample(probe_n)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    run_model(spec, graph)
    torch.cuda.synchronize(dev)
    peak = max(1, torch.cuda.max_memory_allocated(dev) - base)
    per_atom = peak / max(1, graph.num_atoms)
    free, _total = torch.cuda.mem_get_info(dev)
    n = int(0.5 * free / (per_atom * max(1, atoms_per_item)))
    n = max(1, min(MAX_AUTO_BATCH, n))
    logger.info("auto batch size on %s: %d (%.1f KiB/atom measured, %.1f GiB free)",
                spec.device, n, per_atom / 1024, free / 2**30)
    return n


def make_client(workers: Optional[int], scheduler: Optional[str], processes: bool = True):
    """A dask.distributed Client on a new LocalCluster (``workers``) or an existing
    scheduler (``scheduler`` address), and the cluster to close (or None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise WorkflowError(
            "--workers / --scheduler need Dask: pip install 'dask[distributed]' "
            "(or pip install 'get-md[dask]')"
        ) from e
    if scheduler:
        return Client(scheduler), None
    if workers is None or workers < 1:
        raise WorkflowError(f"--workers must be >= 1, got {workers}")
    try:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                               dashboard_address=None)
    except RuntimeError as e:
        if processes and "failed to start" in str(e):
            # Dask's worker processes import the calling script again: without a main guard
            # each of them starts the same run, which stops at its output lock
            raise WorkflowError(
                f"Dask could not start its {workers} worker process(es) ({e}). Called from a script, "
                "put the call to rescore_poses / rescore_trajectory under "
                "'if __name__ == \"__main__\":' (worker processes run the script again); or pass "
                "dask_processes=False (threads)") from e
        raise
    return Client(cluster), cluster


def _worker_threads(n_workers: int) -> None:
    """Share the machine's cores between worker processes (once per process)."""
    import torch

    if getattr(_worker_threads, "done", False):
        return
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, n_workers)))
    _worker_threads.done = True  # type: ignore[attr-defined]


def _call_in_worker(func, n_workers, args):
    if n_workers > 0:  # own worker processes on this machine: share the cores
        _worker_threads(n_workers)
    return func(*args)


def parallel_batches(device: str = "cpu", requested: Optional[int] = None) -> int:
    """How many batches :func:`fan_out` scores at once in this process.

    ``requested`` wins when given; otherwise one per torch CPU thread on the CPU
    (each batch then runs single-threaded), one on a GPU. Several single-threaded
    model calls use the cores better than one call split over them: most of GET's
    operations are too small to parallelise well (figures in docs/performance.md).

    Example:
        >>> parallel_batches("cuda")
        1
    """
    if requested is not None:
        if int(requested) < 1:
            raise WorkflowError(f"--parallel must be >= 1, got {requested}")
        return int(requested)
    if str(device).startswith("cuda"):
        return 1
    import torch

    return max(1, torch.get_num_threads())


def _run_in_threads(func, tasks, on_result, parallel: int) -> None:
    """``fan_out`` in this process: ``parallel`` tasks at once on threads, each with
    ``threads // parallel`` torch threads; results handed on in task order."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import torch

    total = torch.get_num_threads()
    # torch's thread count is per thread (OpenMP): set it in each worker
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="get_md-batch",
                              initializer=torch.set_num_threads, initargs=(max(1, total // parallel),))
    pending: collections.deque = collections.deque()
    try:
        for key, args in tasks:
            pending.append((key, pool.submit(func, *args)))
            while len(pending) > parallel:  # one queued behind the running ones
                k, fut = pending.popleft()
                on_result(k, fut.result())
        while pending:
            k, fut = pending.popleft()
            on_result(k, fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(total)  # the workers' setting also changed torch's default


def fan_out(
    func: Callable[..., Any],
    tasks: Iterable[tuple[Any, tuple]],
    on_result: Callable[[Any, Any], None],
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    processes: bool = True,
    max_in_flight: Optional[int] = None,
    parallel: int = 1,
) -> None:
    """Run ``func(*args)`` for every ``(key, args)`` of ``tasks`` and pass each result to
    ``on_result(key, result)`` in the calling process.

    Without ``workers``/``scheduler`` the tasks run here: in order, or ``parallel`` at a
    time on threads (TorchScript releases the GIL; see :func:`parallel_batches`), the
    results still handed on in task order. With them, they run on a Dask cluster, at
    most ``max_in_flight`` at a time (default 2 per worker) so that ``tasks`` is
    consumed lazily (trajectory chunks are read as they are needed); results arrive in
    completion order. A failing task re-raises its error here.
    """
    if not workers and not scheduler:
        if parallel > 1:
            _run_in_threads(func, tasks, on_result, parallel)
            return
        for key, args in tasks:
            on_result(key, func(*args))
        return
    client, cluster = make_client(workers, scheduler, processes)
    try:
        from distributed import as_completed

        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or int(workers or 1))
        limit = max_in_flight or 2 * n_workers
        it = iter(tasks)
        keys: dict = {}
        queue = as_completed()

        def submit_next() -> bool:
            try:
                key, args = next(it)
            except StopIteration:
                return False
            fut = client.submit(_call_in_worker, func, n_workers if cluster is not None and processes else 0,
                                args, pure=False)
            keys[fut.key] = key
            queue.add(fut)
            return True

        for _ in range(limit):
            if not submit_next():
                break
        for fut in queue:
            result = fut.result()
            key = keys.pop(fut.key)
            fut.release()
            on_result(key, result)
            submit_next()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def chunked(it: Iterable, n: int) -> Iterator[list]:
    """Lists of ``n`` consecutive items (the last may be shorter)."""
    buf: list = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def prefetch(it: Iterable, depth: int = 1) -> Iterator:
    """Items of ``it``, produced ``depth`` ahead by a background thread.

    Lets file parsing (RDKit, mdtraj) run while the model, which releases the GIL in
    TorchScript, works on the previous batch. Exceptions of ``it`` are re-raised here;
    closing the generator stops the thread after its current item.
    """
    import queue

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        """Queue ``item`` unless the consumer has gone; whether it was queued."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for x in it:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(("error", e))

    thread = threading.Thread(target=work, name="get_md-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, x = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise x
            yield x
    finally:
        stop.set()


def progress_bar(enabled: Optional[bool], **kw):
    """A tqdm bar on stderr; ``enabled=None`` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(disable=not enabled, file=sys.stderr, **kw)
