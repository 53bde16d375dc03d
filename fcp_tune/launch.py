"""Start N local processes with a ``torch.distributed`` process group, collect their results.

Used by ``fcp-tune run/profile/validate`` when not under torchrun, and by the tests. Gloo
processes are forked (fast: ~0.2 s for 8) with one compute thread each; NCCL processes are
spawned (fork is unsafe once CUDA is initialised). The group rendezvous through a file
store in a fresh temporary directory. If any rank raises or dies, the others are killed
at once and :class:`RankFailure` names the rank; a run that outlives ``timeout`` is killed
too. No child outlives the call: SIGTERM or SIGHUP to the parent raise :class:`Terminated`
there (every rank is killed, the temporary directory removed, on the way out), and each
rank asks the kernel to kill it when its parent dies however it dies (Linux
``PR_SET_PDEATHSIG``; elsewhere a watchdog thread polls the parent's pid).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

from fcp_tune.limits import check_int, check_local_procs

# Signals that ask a process to stop (batch schedulers, `kill`, a closed terminal).
STOP_SIGNALS = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
_PR_SET_PDEATHSIG = 1
# What ranks that train import lazily: torch.optim's first optimizer imports torch._dynamo.
OPTIMIZER_MODULES = ("torch._dynamo",)


class RankFailure(RuntimeError):
    """A rank raised, died, or the run timed out; ``rank`` is the first rank that failed."""

    def __init__(self, rank: int | None, message: str, details: str = "") -> None:
        super().__init__(message)
        self.rank = rank
        self.details = details


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived; ``signum`` says which. A ``BaseException`` so that no
    ``except Exception`` swallows it on its way to the command line (exit 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def signal_handlers(signums: tuple[int, ...], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """While inside, ``handler`` handles ``signums``; the previous handlers come back on exit.

    A no-op outside the main thread (Python installs handlers only there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` (once; later ones are ignored
    so the clean-up is not itself interrupted). A no-op outside the main thread."""
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise Terminated(signum)

    with signal_handlers(STOP_SIGNALS, handler):
        yield


def die_with_parent(parent_pid: int) -> None:
    """Make this process die when ``parent_pid`` does, whatever kills the parent.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, then a check that the parent did not die
    before the call. Elsewhere: a daemon thread that exits the process once the parent's
    pid is gone (re-parenting changes ``getppid``).
    """
    for s in STOP_SIGNALS:  # forked ranks inherit the parent's handlers; theirs are the defaults
        signal.signal(s, signal.SIG_DFL)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="fcp-tune-parent-watchdog", daemon=True).start()


def _child(fn, rank, world_size, args, backend, store_path, timeout_s, threads, results, events,
           parent_pid=None) -> None:
    if parent_pid is not None:
        die_with_parent(parent_pid)
    import torch
    import torch.distributed as dist

    try:
        torch.set_num_threads(threads)
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        store = dist.FileStore(store_path, world_size)
        dist.init_process_group(
            backend, store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
        )
        extra = (events,) if events is not None else ()
        result = fn(rank, world_size, *args, *extra)
        # Plain pickle copies tensor data; the queue's own reducer would pass shared-memory
        # file descriptors that die with this process.
        results.put(("ok", rank, pickle.dumps(result)))
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    except BaseException as exc:  # noqa: BLE001 - report every failure to the parent
        results.put(("error", rank, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        results.close()
        results.join_thread()
        os._exit(0)


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``RANK`` and ``WORLD_SIZE``) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def check_run_world(name: str, value: Any) -> int:
    """A world size this process can run: any positive count under torchrun, else one that
    :func:`run_local` may fork on this host (:func:`fcp_tune.limits.check_local_procs`).

    Commands call it before any costly preparation (a cost model for 100,000 ranks takes
    seconds), and :class:`fcp_tune.executor.RunConfig` keeps it as an invariant.
    """
    return check_int(name, value, 1) if under_torchrun() else check_local_procs(name, value)


def init_from_env(timeout: float | None = None) -> str:
    """Join the launcher's process group (NCCL when CUDA is present, else gloo); return the backend.

    Sets this process's GPU from ``LOCAL_RANK`` first. A group already initialised is kept.
    """
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        kwargs = {} if timeout is None else {"timeout": timedelta(seconds=timeout)}
        dist.init_process_group(backend, **kwargs)
    return backend


def run_local(
    fn: Callable[..., Any],
    nproc: int,
    args: Sequence[Any] = (),
    backend: str = "gloo",
    timeout: float = 120.0,
    threads: int = 1,
    collective_timeout: float | None = None,
    on_event: Callable[[Any], None] | None = None,
    preload: Sequence[str] = (),
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``nproc`` fresh processes; return results by rank.

    Args:
        fn: a module-level function (picklable for NCCL/spawn).
        nproc: number of processes (>= 1).
        backend: ``"gloo"`` (fork) or ``"nccl"`` (spawn, one GPU per rank).
        timeout: seconds for the whole run before every rank is killed.
        threads: ``torch.set_num_threads`` in each rank.
        collective_timeout: process-group timeout (default: ``timeout``).
        on_event: if given, ``fn`` receives a queue as its last argument; whatever a rank
            puts there is passed to ``on_event`` in the parent while the run goes on
            (progress bars).
        preload: modules to import in this process before forking, so that every gloo rank
            inherits them instead of importing its own copy. ``torch.optim`` imports
            ``torch._dynamo`` on first use (about 2 s of CPU a rank here), so a caller whose
            ranks build an optimizer passes :data:`OPTIMIZER_MODULES`. Spawned ranks (NCCL)
            import for themselves; there it does nothing.

    Raises:
        RankFailure: naming the first rank that raised or died, or the run's timeout.
        Terminated: SIGTERM or SIGHUP arrived (the ranks are killed and the store removed first).
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    ctx = mp.get_context("fork" if backend == "gloo" else "spawn")
    if backend == "gloo":
        for module in preload:
            importlib.import_module(module)
    results = ctx.Queue()
    events = ctx.Queue() if on_event is not None else None
    ct = collective_timeout if collective_timeout is not None else timeout
    with tempfile.TemporaryDirectory(prefix="fcp-tune-") as tmp:
        store_path = os.path.join(tmp, "store")
        procs = [
            ctx.Process(
                target=_child,
                args=(fn, r, nproc, tuple(args), backend, store_path, ct, threads, results, events, os.getpid()),
                daemon=True,
            )
            for r in range(nproc)
        ]
        with stop_signals_raise():
            try:
                for p in procs:
                    p.start()
                return _collect(procs, results, nproc, timeout, events, on_event)
            finally:
                _reap(procs)


def _drain(events, on_event) -> None:
    while events is not None:
        try:
            on_event(events.get_nowait())
        except queue.Empty:
            return


# Errors a rank raises when a *peer* went away: they point at the victim, not the cause.
_PEER_ERRORS = ("Connection closed by peer", "Connection reset", "Read error", "pair.cc", "Broken pipe",
                "NCCL communicator was aborted", "Timed out", "timed out",
                "(this is rank")  # fcp_tune.integration.agree_on_plan: another rank's planner failed


def _is_secondary(text: str) -> bool:
    return any(p in text for p in _PEER_ERRORS)


def _collect(procs, results, nproc: int, timeout: float, events=None, on_event=None) -> list[Any]:
    out: dict[int, Any] = {}
    errors: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    grace_until: float | None = None  # after the first failure, wait briefly to find its root
    while len(out) + len(errors) < nproc:
        _drain(events, on_event)
        try:
            msg = results.get(timeout=0.2)
        except queue.Empty:
            msg = None
        if msg is not None:
            if msg[0] == "error":
                errors[msg[1]] = (msg[2], msg[3])
                grace_until = grace_until or time.monotonic() + 2.0
            else:
                out[msg[1]] = pickle.loads(msg[2])
            continue
        dead = [r for r, p in enumerate(procs) if r not in out and r not in errors and p.exitcode is not None]
        if dead:
            grace_until = grace_until or time.monotonic() + 1.0
        now = time.monotonic()
        if grace_until is not None and now > grace_until:
            _raise_root(procs, out, errors)
        if now > deadline:
            missing = sorted(set(range(nproc)) - set(out))
            raise RankFailure(missing[0] if missing else None, f"timed out after {timeout:.0f} s waiting for ranks {missing}")
    if errors:
        _raise_root(procs, out, errors)
    _drain(events, on_event)
    return [out[r] for r in range(nproc)]


def _raise_root(procs, out: dict, errors: dict) -> None:
    """Blame the rank that caused the failure: a dead one, else a primary error, else the first."""
    dead = [r for r, p in enumerate(procs) if r not in out and r not in errors and p.exitcode is not None]
    others = sorted(set(errors) | set(dead))
    if dead:
        rank = dead[0]
        code = procs[rank].exitcode
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        message, details = f"rank {rank} died ({how}) without a result", ""
    else:
        primary = [r for r in sorted(errors) if not _is_secondary(errors[r][0])]
        rank = (primary or sorted(errors))[0]
        message, details = f"rank {rank} failed: {errors[rank][0]}", errors[rank][1]
    rest = [r for r in others if r != rank]
    if rest:
        message += f" (then ranks {', '.join(map(str, rest))} stopped too)"
    raise RankFailure(rank, message, details)


def _reap(procs) -> None:
    for p in procs:
        if p.pid is not None and p.exitcode is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except (ProcessLookupError, TypeError):
                pass
    for p in procs:
        if p.pid is not None:
            p.join(timeout=5)
