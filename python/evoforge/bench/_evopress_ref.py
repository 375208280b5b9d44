"""Running the EvoPress reference implementation (IST-DASLab/EvoPress, Apache-2.0) for
:mod:`evoforge.bench.evopress_peer`: a temporary copy of it, patched at run time, run as a
subprocess whose output lines are time-stamped as they arrive and whose peak RSS is measured.

Nothing of the reference is copied into evoforge: the peer folder (``../shared/peers/evopress`` or
``$EVOFORGE_PEERS/evopress``) is copied to a temporary directory and edited there by exact string
replacements that raise :class:`PeerPatchError` when the expected text is not found (the peer
changed; the benchmark must then be looked at, not silently measure something else).

What is patched, and why (see ``../shared/peers/README.md``):

* every device: ``src/data_utils.py`` imports ``datasets`` at module level, only for its hub
  loaders; the calibration comes from a local ``.pt`` file (the reference's own file format:
  a list of LongTensor [1, S]), so the import is guarded.
* CPU, ``evo_prune_search.py``: the hard-coded ``cuda`` device -> ``cpu``; the periodic and final
  evaluations switched off (they score whole data sets and would dominate a generation on a CPU).
* CPU, ``prune.py``: ``cuda:{rank}`` -> ``cpu`` and a single-process ``gloo`` group instead of NCCL
  (RANK 0, WORLD_SIZE 1, a free local port).

On CUDA the reference runs as published (``prune.py`` under ``torchrun`` with one GPU), with the
data-loading guard only; its periodic evaluation then runs on one calibration sequence and is left
out of the generation times (they start at its ``ppl_train`` line).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PeerPatchError", "Proc", "peer_dir", "prepare_copy", "run_logged", "parse_search", "write_levels",
           "write_calibration", "dummy_tokenizer", "dir_bytes"]

_DATA_IMPORT = ("src/data_utils.py", "from datasets import load_dataset\n",
                "try:  # evoforge bench: calibration comes from a local file\n"
                "    from datasets import load_dataset\n"
                "except ImportError:\n"
                "    load_dataset = None\n")
_SEARCH_CPU = [
    ("evo_prune_search.py", '    device = f"cuda"\n', '    device = "cpu"  # evoforge bench: CPU\n'),
    ("evo_prune_search.py", "        if generation % args.eval_every == 0:\n",
     "        if False:  # evoforge bench: no periodic evaluation\n"),
    ("evo_prune_search.py",
     "    # Final evaluation\n    for eval_dataset_name, eval_dataset in zip(args.eval_datasets, eval_datasets):\n",
     "    # Final evaluation\n    for eval_dataset_name, eval_dataset in []:  # evoforge bench: none\n"),
    ("evo_prune_search.py", "\n    ppl_train = compute_perplexity(model, calibration_data)\n",
     "\n    ppl_train = float('nan')  # evoforge bench: no final evaluation\n"),
]
_PRUNE_CPU = [
    ("prune.py", 'dist.init_process_group(backend="nccl", init_method="env://")',
     'dist.init_process_group(backend="gloo", init_method="env://")  # evoforge bench: one CPU process'),
    ("prune.py", '    device = f"cuda:{rank}"\n', '    device = "cpu"  # evoforge bench: CPU\n'),
]


class PeerPatchError(RuntimeError):
    """The reference's source no longer holds the text a run-time patch replaces."""


def peer_dir(override: str | os.PathLike | None = None) -> Path:
    """The reference's folder: ``override``, else ``$EVOFORGE_PEERS/evopress``, else
    ``../shared/peers/evopress`` from the working directory (benchmarks run from the repo root)."""
    if override is not None:
        return Path(override)
    root = os.environ.get("EVOFORGE_PEERS")
    return (Path(root) if root else Path.cwd().parent / "shared" / "peers") / "evopress"


def _replace(root: Path, rel: str, old: str, new: str) -> None:
    p = root / rel
    text = p.read_text()
    n = text.count(old)
    if n != 1:
        raise PeerPatchError(f"{rel}: expected exactly one occurrence of {old.strip()[:80]!r} to patch, found {n}; "
                             "the reference changed, update evoforge/bench/_evopress_ref.py")
    p.write_text(text.replace(old, new))


def prepare_copy(peer: Path, dest: Path, device: str) -> list[str]:
    """Copy ``peer`` to ``dest`` (writable) and patch the copy for ``device`` (``cpu`` or ``cuda...``);
    the patches applied, as ``file: new text`` lines."""
    if not (peer / "evo_prune_search.py").is_file():
        raise FileNotFoundError(f"the EvoPress reference was not found at {str(peer)!r} (evo_prune_search.py)")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(peer, dest, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)  # the peer folder is read-only; its copy must not be
    patches = [_DATA_IMPORT] + ([] if device.startswith("cuda") else _SEARCH_CPU + _PRUNE_CPU)
    for rel, old, new in patches:
        _replace(dest, rel, old, new)
    return [f"{rel}: {new.strip().splitlines()[-1].strip()}" for rel, _, new in patches]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A finished subprocess: exit status, wall seconds, peak RSS in bytes (the process tree's, from
    ``/usr/bin/time -v`` or psutil sampling), and its output lines with the seconds since start at
    which each arrived."""

    rc: int
    wall_s: float
    peak_rss: int | None
    lines: list[tuple[float, str]] = field(default_factory=list)

    def tail(self, n: int = 30) -> str:
        return "\n".join(s for _, s in self.lines[-n:])


def run_logged(cmd: list[str], *, cwd: Path, env: dict | None = None, log: Path | None = None,
               echo: bool = True, prefix: str = "") -> Proc:
    """Run ``cmd`` (stdout and stderr merged), time-stamping each line as it arrives; peak RSS from
    ``/usr/bin/time -v`` when present (of the command and its children), else psutil sampling."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", **(env or {})}
    timefile = None
    if Path("/usr/bin/time").is_file():
        timefile = (log.with_suffix(".time") if log else cwd / "time.txt")
        cmd = ["/usr/bin/time", "-v", "-o", str(timefile)] + cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(cwd), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    peak = [0]
    stop = threading.Event()
    if timefile is None:
        threading.Thread(target=_sample_rss, args=(proc.pid, peak, stop), daemon=True).start()
    lines: list[tuple[float, str]] = []
    fh = open(log, "w") if log else None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - t0
            line = line.rstrip("\n")
            lines.append((t, line))
            if fh:
                fh.write(f"{t:10.3f} {line}\n")
                fh.flush()
            if echo and line.strip():
                print(f"{prefix}{line[:200]}", flush=True)
        rc = proc.wait()
    finally:
        stop.set()
        if fh:
            fh.close()
        if proc.poll() is None:
            proc.kill()
    wall = time.perf_counter() - t0
    rss = peak[0] or None
    if timefile is not None and timefile.is_file():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timefile.read_text())
        rss = int(m.group(1)) * 1024 if m else None
    return Proc(rc, wall, rss, lines)


def _sample_rss(pid: int, peak: list, stop: threading.Event) -> None:
    try:
        import psutil
    except ImportError:
        return
    try:
        p = psutil.Process(pid)
        while not stop.is_set():
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak[0] = max(peak[0], rss)
            time.sleep(0.2)
    except psutil.Error:  # the process ended
        pass


def parse_search(proc: Proc) -> dict:
    """Per generation of ``evo_prune_search.py``'s output: its seconds (from the previous
    generation's end, or from its ``ppl_train`` line when the periodic evaluation ran, to its
    ``Train fitnesses`` line; the first generation from its ``Generation 1/N`` line) and the
    training KL it printed (``%.2e``: three significant digits). ``setup_s``: start to the first
    generation."""
    gens: list[dict] = []
    start = prev_end = None
    setup = None
    for t, line in proc.lines:
        if re.match(r"Generation \d+/\d+", line):
            setup = t if setup is None else setup
            start = prev_end if prev_end is not None else t
        elif line.startswith("ppl_train:") and start is not None:
            start = t
        elif line.startswith("Train fitnesses:") and start is not None:
            gens.append({"seconds": t - start, "kl": float(line.split(":", 1)[1])})
            prev_end, start = t, None
    return {"setup_s": setup, "generations": gens}


def write_levels(db: Any, dest: Path, dtype: Any = None) -> int:
    """Write the levels of an evoforge sparsity database ``db`` in the reference's on-disk format
    (``dest/<layer name>/<level>.pth``, a dense weight tensor per level, the offset from the target
    as the name); the bytes written. Positive levels must prune more (as in the reference)."""
    import torch

    total = 0
    for name in db.layers:
        levels = db.levels(name)
        costs = [db.cost(name, k) for k in levels]
        if any(b >= a for a, b in zip(costs, costs[1:])) or 0 not in levels:
            raise ValueError(f"{name}: levels {levels} with non-zeros {costs} do not form a sparsity ladder around 0")
        d = dest / name
        d.mkdir(parents=True, exist_ok=True)
        for k in levels:
            w = db.weight(name, k)
            p = d / f"{k}.pth"
            torch.save(w if dtype is None else w.to(dtype), p)
            total += p.stat().st_size
    return total


def write_calibration(tokens: Any, path: Path) -> None:
    """Tokens [N, S] as the reference reads a calibration file: a list of N LongTensors [1, S]."""
    import torch

    torch.save([tokens[i:i + 1].clone().long() for i in range(tokens.shape[0])], path)


def dummy_tokenizer(dest: Path, vocab_size: int) -> Path:
    """A word-level tokenizer the reference can load (it loads one even when its calibration comes
    from a token file, as here): for models without one (stories260k, random weights)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab={f"t{i}": i for i in range(min(vocab_size, 1024))}, unk_token="t0"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="t0").save_pretrained(str(dest))
    return dest


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def python() -> str:
    return sys.executable
