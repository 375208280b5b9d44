"""Local process pool backend: one worker process per slot on this machine.

Workers are started with the ``spawn`` method (safe with threads, torch and CUDA), build their
evaluator from the factory once, and talk to the driver over a pipe each. A worker that dies
(its pipe closes) or hangs (``timeout``) is killed and restarted and its chunks re-dispatched
(see :mod:`evoforge.evaluate.dispatch`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import EvaluationError
from ..search.protocol import EvaluatorFactory
from .dispatch import DIED, FAILED, OK, WorkerPool
from .protocol import Replica, Task

__all__ = ["ProcessPool"]


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return str(self.args[0])


def _worker_main(conn: Connection, factory_bytes: bytes, threads: int | None) -> None:
    try:
        replica = Replica(pickle.loads(factory_bytes), threads)
    except BaseException:  # noqa: BLE001 -- reported to the driver, which raises it
        conn.send(("start-error", traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if msg is None:
            return
        task_id, task = msg
        try:
            conn.send((task_id, OK, replica.run(task)))
        except BaseException as e:  # noqa: BLE001 -- the evaluator's error goes back to the driver
            tb = traceback.format_exc()
            try:
                payload = pickle.dumps(e)
            except Exception:  # noqa: BLE001 -- an exception that does not pickle: its text
                payload = None
            conn.send((task_id, FAILED, (payload, tb)))


class ProcessPool(WorkerPool):
    """Evaluates batches in ``workers`` local processes (default: one per core).

    factory : picklable callable returning an evaluator, called once in each worker
    threads : threads per worker for evoforge and torch (default: cores // workers, at least 1)
    timeout : seconds a worker may return nothing while it has work before it counts as hung
        (None: no limit); max_attempts, chunk_size, depth (chunks a worker holds at once: 1 for
        the asynchronous mode, where a worker takes its next candidate only when it is free): see
        :class:`~evoforge.evaluate.dispatch.WorkerPool`
    start_timeout : seconds a worker may take to build its evaluator
    """

    def __init__(self, factory: EvaluatorFactory, workers: int | None = None, *, threads: int | None = None,
                 timeout: float | None = None, max_attempts: int = 3, chunk_size: int | None = None,
                 start_timeout: float = 300.0, depth: int = 2) -> None:
        n = workers if workers is not None else (os.cpu_count() or 1)
        super().__init__(factory, n, timeout=timeout, max_attempts=max_attempts, chunk_size=chunk_size, depth=depth)
        try:
            self._factory_bytes = pickle.dumps(factory)
        except Exception as e:
            raise EvaluationError(f"the factory cannot be pickled for the worker processes ({e}); use a "
                                  "module-level function or class, or functools.partial of one") from e
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // self.n_workers)
        self.start_timeout = float(start_timeout)
        self._ctx = mp.get_context("spawn")
        self._procs: list[Any] = [None] * self.n_workers
        self._conns: list[Connection | None] = [None] * self.n_workers
        self._pids = [0] * self.n_workers
        self._next_id = 0
        self._ensure(list(range(self.n_workers)))

    def _start(self, slots: list[int]) -> None:
        for s in slots:
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(target=_worker_main, args=(child, self._factory_bytes, self.threads),
                                  name=f"evoforge-eval-{s}", daemon=True)
            p.start()
            child.close()  # the worker holds the only other end: its death closes the pipe
            self._procs[s], self._conns[s] = p, parent
        deadline = time.monotonic() + self.start_timeout
        for s in slots:
            conn = self._conns[s]
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                self._stop(slots)
                raise EvaluationError(f"evaluation worker {s} did not start within {self.start_timeout:g} s")
            try:
                kind, value = conn.recv()
            except (EOFError, OSError):
                kind, value = "start-error", f"the process exited ({self._exit_reason(s)})"
            if kind != "ready":
                self._stop(slots)
                raise EvaluationError(f"evaluation worker {s} could not build its evaluator:\n{value}")
            self._pids[s] = value

    def _stop(self, slots: list[int]) -> None:
        for s in slots:
            self._kill(s)

    def _submit(self, slot: int, task: Task) -> Any:
        self._next_id += 1
        token = (slot, self._next_id)
        try:
            self._conns[slot].send((self._next_id, task))
        except (OSError, ValueError):
            pass  # a dead worker: _poll reports it
        return token

    def _poll(self, tokens: list[Any], wait_s: float | None) -> list[tuple[Any, str, Any]]:
        slots = sorted({s for s, _ in tokens})
        by_conn = {self._conns[s]: s for s in slots}
        out = []
        for conn in wait(list(by_conn), wait_s):
            s = by_conn[conn]
            while True:
                try:
                    task_id, outcome, value = conn.recv()
                except (EOFError, OSError):
                    out += [(t, DIED, self._exit_reason(s)) for t in tokens if t[0] == s]
                    break
                if outcome == FAILED:
                    payload, tb = value
                    exc = pickle.loads(payload) if payload is not None else EvaluationError(tb)
                    exc.__cause__ = _RemoteTraceback(f"\n\nin evaluation worker {s}:\n{tb}")
                    value = exc
                out.append(((s, task_id), outcome, value))
                if not conn.poll(0):
                    break
        return out

    def _exit_reason(self, slot: int) -> str:
        p = self._procs[slot]
        if p is None:
            return "stopped"
        p.join(1.0)
        code = p.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        return f"exit code {code}"

    def _kill(self, slot: int) -> None:
        p, conn = self._procs[slot], self._conns[slot]
        self._procs[slot] = self._conns[slot] = None
        if conn is not None:
            conn.close()
        if p is not None:
            p.kill()
            p.join(5)

    def _pid(self, slot: int) -> int:
        return self._pids[slot]

    def close(self) -> None:
        # Ask idle workers to exit first (they release what they hold), then kill any left.
        for conn in self._conns:
            try:
                if conn is not None:
                    conn.send(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            if p is not None:
                p.join(2.0)
        super().close()
