"""Ray backend: one actor per device (GPU) or CPU slot of a Ray cluster, local or multi-node.

Needs the ``ray`` extra (``pip install evoforge[ray]``). Each actor builds its evaluator from the
factory once (e.g. loads its model replica and memory-maps the layer database from shared
storage); the factory is put in the object store once and shared by all actors. Chunks are
dispatched with load balancing, and an actor that dies or hangs (``timeout``) is killed,
replaced, and its chunks re-dispatched (see :mod:`evoforge.evaluate.dispatch`).

Connecting: ``address=None`` uses the Ray session this process already has (``ray.init`` done by
the caller), else starts a local one (on the loopback address, no dashboard); ``"auto"`` joins the cluster started on this machine with
``ray start``; ``"HOST:PORT"`` (or ``"ray://HOST:PORT"``) joins a remote head node. An address
that does not answer raises :class:`ConnectionError` within ``connect_timeout`` seconds instead
of Ray's own minutes of retries.
"""

from __future__ import annotations

import socket
from typing import Any

from ..errors import ConfigError, EvaluationError
from ..search.protocol import EvaluatorFactory
from .dispatch import DIED, FAILED, OK, WorkerPool
from .protocol import Replica, Task

__all__ = ["RayBackend", "connect"]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError("the Ray backend needs ray: pip install 'evoforge[ray]'") from e
    return ray


def _host_port(address: str) -> tuple[str, int]:
    a = address.split("://", 1)[-1]
    host, sep, port = a.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Ray address must be 'auto' or HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def connect(address: str | None = None, *, connect_timeout: float = 5.0, **init_options: Any) -> bool:
    """Connect this process to Ray; True when it started the connection (and should shut it down).

    See the module docstring for ``address``; ``init_options`` go to ``ray.init`` (e.g.
    ``num_cpus`` for a local instance).
    """
    ray = _import_ray()
    if address not in (None, "auto", "local"):
        host, port = _host_port(str(address))
        try:
            socket.create_connection((host, port), timeout=connect_timeout).close()
        except OSError as e:
            raise ConnectionError(f"no Ray cluster answers at {address!r} ({e}); start its head node with "
                                  "`ray start --head --port=6379` and pass HOST:6379, or use --address auto "
                                  "on a node of the cluster") from None
    if ray.is_initialized():
        return False
    if address is None:  # a new local instance: this machine only, no dashboard
        init_options = {"_node_ip_address": "127.0.0.1", "include_dashboard": False, **init_options}
    try:
        ray.init(address=address, **init_options)
    except ConnectionError as e:
        raise ConnectionError(f"could not connect to Ray at {address!r}: {e}") from None
    return True


class RayBackend(WorkerPool):
    """Evaluates batches on Ray actors.

    factory : picklable callable returning an evaluator, called once in each actor
    workers : number of actors (default: one per GPU of the cluster, else one per CPU)
    num_gpus, num_cpus : resources of each actor (default: 1 GPU when the cluster has GPUs, else
        1 CPU); with a GPU, Ray sets CUDA_VISIBLE_DEVICES so the factory sees it as ``cuda:0``
    threads : torch / evoforge threads per actor (default: its CPUs)
    address, connect_timeout, init_options : see :func:`connect`
    timeout, max_attempts, chunk_size, depth : see :class:`~evoforge.evaluate.dispatch.WorkerPool`
    start_timeout : seconds the actors may take to be scheduled and build their evaluators
    """

    def __init__(self, factory: EvaluatorFactory, workers: int | None = None, *, address: str | None = None,
                 num_cpus: float | None = None, num_gpus: float | None = None, threads: int | None = None,
                 timeout: float | None = None, max_attempts: int = 3, chunk_size: int | None = None,
                 start_timeout: float = 300.0, connect_timeout: float = 5.0,
                 init_options: dict | None = None, depth: int = 2) -> None:
        ray = _import_ray()
        self._owns_ray = connect(address, connect_timeout=connect_timeout, **(init_options or {}))
        try:
            res = ray.cluster_resources()
            if num_gpus is None:
                num_gpus = 1 if res.get("GPU", 0) >= 1 else 0
            if num_cpus is None:
                num_cpus = 0 if num_gpus else 1
            if workers is None:
                workers = int(res.get("GPU", 0) // num_gpus) if num_gpus else int(res.get("CPU", 1) // max(num_cpus, 1))
            super().__init__(factory, max(1, workers), timeout=timeout, max_attempts=max_attempts,
                             chunk_size=chunk_size, depth=depth)
            self.threads = threads if threads is not None else max(1, int(num_cpus or 1))
            self.start_timeout = float(start_timeout)
            self._actor_cls = ray.remote(Replica).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0,
                                                          max_task_retries=0)
            self._factory_ref = ray.put(factory)
            self._actors: list[Any] = [None] * self.n_workers
            self._pids = [0] * self.n_workers
            self._ensure(list(range(self.n_workers)))
        except BaseException:
            self.close()
            raise

    def _start(self, slots: list[int]) -> None:
        ray = _import_ray()
        for s in slots:
            self._actors[s] = self._actor_cls.remote(self._factory_ref, self.threads)
        refs = [self._actors[s].pid.remote() for s in slots]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout)
        if len(ready) < len(refs):
            res = ray.available_resources()
            for s in slots:
                self._kill(s)
            raise EvaluationError(f"{len(refs) - len(ready)} Ray actor(s) did not start within "
                                  f"{self.start_timeout:g} s (free resources: {res}); ask for fewer workers or "
                                  "fewer resources per worker")
        for s, ref in zip(slots, refs):
            try:
                self._pids[s] = ray.get(ref)
            except ray.exceptions.RayError as e:
                for t in slots:
                    self._kill(t)
                raise EvaluationError(f"Ray actor {s} could not build its evaluator: {e}") from None

    def _submit(self, slot: int, task: Task) -> Any:
        return self._actors[slot].run.remote(task)

    def _poll(self, tokens: list[Any], wait_s: float | None) -> list[tuple[Any, str, Any]]:
        ray = _import_ray()
        ready, _ = ray.wait(tokens, num_returns=1, timeout=wait_s)
        if ready:
            ready, _ = ray.wait(tokens, num_returns=len(tokens), timeout=0)
        out = []
        for ref in ready:
            try:
                out.append((ref, OK, ray.get(ref)))
            except ray.exceptions.RayTaskError as e:  # the evaluator raised: the caller's error
                out.append((ref, FAILED, e.as_instanceof_cause()))
            except ray.exceptions.RayError as e:  # the actor died (killed, crashed, out of memory)
                out.append((ref, DIED, type(e).__name__))
        return out

    def _kill(self, slot: int) -> None:
        actor = self._actors[slot]
        self._actors[slot] = None
        if actor is not None:
            _import_ray().kill(actor, no_restart=True)

    def _pid(self, slot: int) -> int:
        return self._pids[slot]

    def close(self) -> None:
        if getattr(self, "_closed", True) is False:
            super().close()
        if getattr(self, "_owns_ray", False):
            self._owns_ray = False
            _import_ray().shutdown()
