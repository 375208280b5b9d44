"""Functional hashing: :class:`FunctionalHasher`, the digest of what a candidate computes on fixed
probe inputs (its quantised outputs), with the RNGs seeded during the call and restored after."""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping

import numpy as np

from .. import _checks
from ..errors import ConfigError
from .digest import Hasher, check_quant, check_seed, enter_container, is_array

__all__ = ["FunctionalHasher"]

#: Generated probes hold at most this many numbers (1 GiB of float32): probes are a small fixed
#: batch, and a larger request is a mistake to refuse before torch allocates it.
MAX_PROBE_ELEMENTS = 2**28


class FunctionalHasher:
    """Hash of what a candidate computes: its quantised outputs on fixed probe inputs.

    Two candidates that compute the same function (e.g. an MLP and the same MLP with its hidden
    units permuted) get the same digest, up to the quantisation of their outputs; candidates whose
    outputs differ by more than the rounding get different digests.

    Parameters
    ----------
    probe_inputs : torch.Tensor, tuple/list of tensors, or dict of tensors, optional
        The candidate is called as ``candidate(probe)``, ``candidate(*probe)`` or
        ``candidate(**probe)``. Default: ``torch.randn(n_probes, *input_shape)`` from a generator
        seeded with ``seed`` (needs ``input_shape``).
    n_probes : int
        Probe batch size when generating.
    input_shape : int or tuple of int
        Shape of one probe input (without the batch dimension) when generating; every size >= 1,
        and ``n_probes * prod(input_shape)`` at most 2**28.
    seed : int
        Seeds the probe inputs, the RNGs during the call, and the digest.
    mantissa_bits : int or None
        Quantisation of the float outputs (see :func:`hash_array`); None hashes exact bits.
    probe_version : int
        Part of the digest: bump it when the probes or their meaning change.

    Notes
    -----
    ``hash`` calls the candidate under ``torch.inference_mode()`` with the torch (CPU and CUDA),
    numpy and Python RNGs seeded with ``seed``, and restores their previous states afterwards. It
    does not change an ``nn.Module``'s train/eval mode. The probes are moved to the device of the
    module's first parameter or buffer (cached per device).
    Outputs may be tensors, numpy arrays, Python scalars, or tuples/lists/dicts of these; a
    mapping with a ``"logits"`` entry (a Hugging Face ``ModelOutput``) is reduced to its logits.
    """

    def __init__(self, probe_inputs: Any = None, *, n_probes: int = 10, input_shape: tuple | None = None,
                 seed: int = 0, mantissa_bits: int | None = 7, probe_version: int = 1) -> None:
        import torch

        self.seed = check_seed(seed)
        check_quant(mantissa_bits, None)
        self.mantissa_bits = mantissa_bits
        if isinstance(probe_version, bool) or not isinstance(probe_version, int):
            raise TypeError("probe_version must be an int")
        self.probe_version = probe_version
        if probe_inputs is None:
            if input_shape is None:
                raise ConfigError("give probe_inputs, or input_shape to generate them")
            n = _checks.check_int(n_probes, "n_probes", 1)
            dims = _checks.check_shape(input_shape, "input_shape", lo=1)
            shape = _checks.check_shape((n, *dims), "probe batch shape (n_probes, *input_shape)", lo=1,
                                        max_elements=MAX_PROBE_ELEMENTS)
            gen = torch.Generator().manual_seed(self.seed)
            probe_inputs = torch.randn(shape, generator=gen, dtype=torch.float32)
        self.probe_inputs = probe_inputs
        self._on_device: dict[str, Any] = {}
        # The probes are part of the key: a different probe set must never share digests.
        self._probe_key = Hasher(self.seed).update(_to_hashable(probe_inputs)).digest()

    def _probes_for(self, device: Any) -> Any:
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = _map_tensors(self.probe_inputs, lambda t: t.to(device))
        return self._on_device[key]

    def outputs(self, candidate: Callable) -> Any:
        """The candidate's outputs on the probes (under inference mode, with the RNGs seeded)."""
        import torch

        device = _module_device(candidate)
        probes = self._probes_for(device) if device is not None else self.probe_inputs
        states = _save_rng()
        try:
            _seed_rng(self.seed)
            with torch.inference_mode():
                if isinstance(probes, Mapping):
                    return candidate(**probes)
                if isinstance(probes, (tuple, list)):
                    return candidate(*probes)
                return candidate(probes)
        finally:
            _restore_rng(states)

    def hash(self, candidate: Callable, *, task: Any = None, fidelity: Any = None) -> bytes:
        """16-byte digest of (task, fidelity, probe_version, probes, quantised outputs)."""
        out = _to_hashable(_reduce_output(self.outputs(candidate)))
        h = Hasher(self.seed)
        h.update(task).update(fidelity).update(self.probe_version).update(self._probe_key)
        h.update(out, mantissa_bits=self.mantissa_bits)
        return h.digest()

    __call__ = hash


def _module_device(candidate: Any) -> Any:
    for attr in ("parameters", "buffers"):
        fn = getattr(candidate, attr, None)
        if callable(fn):
            try:
                return next(iter(fn())).device
            except (StopIteration, TypeError):
                continue
    return None


def _map_tensors(obj: Any, fn: Callable) -> Any:
    if _checks.is_torch(obj):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _reduce_output(out: Any) -> Any:
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    return out


def _to_hashable(obj: Any, path: set[int] | None = None) -> Any:
    """Outputs as things Hasher takes: mappings to plain dicts (ModelOutput), tensors kept;
    ValueError for a container that contains itself."""
    if is_array(obj) or isinstance(obj, (np.generic, str, bytes, int, float, bool, type(None))):
        return obj
    if isinstance(obj, Mapping):
        path = enter_container(obj, path)
        out: Any = {k: _to_hashable(v, path) for k, v in obj.items()}
    elif isinstance(obj, (tuple, list)):
        path = enter_container(obj, path)
        items = [_to_hashable(v, path) for v in obj]
        out = type(obj)(items) if type(obj) in (tuple, list) else tuple(items)
    else:
        raise TypeError(f"cannot hash an output of type {type(obj).__name__}")
    path.discard(id(obj))
    return out


def _save_rng() -> dict:
    import torch

    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _seed_rng(seed: int) -> None:
    import torch

    torch.manual_seed(seed)  # CPU and every CUDA device
    np.random.seed(seed % (1 << 32))
    random.seed(seed)


def _restore_rng(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
