"""Issue 12 ("Reliability"), the bad-input harness: every public function and every CLI subcommand
on a matrix of bad inputs (see README.md in this directory).

The cases run in worker processes (``fuzz_worker.py``, under memory and time limits), a few in
parallel, once per session; each case is one test here, named ``<entry>:<argument>=<bad input>``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import entry_points as ep  # noqa: E402
import fuzz_worker as fw  # noqa: E402  (its module level imports nothing heavy)

# workers: (name, entry groups), heaviest first; a group not named here gets a worker of its own
WORKERS: list[tuple[str, tuple[str, ...]]] = [
    ("compress", ("compress",)),
    ("cli", ("cli",)),
    ("search", ("search", "evaluate")),
    ("layers", ("layers",)),
    ("solvers-kl-plot", ("solvers", "kl", "plot")),
    ("hashing-cache", ("hashing", "cache")),
    ("numeric", ("evoforge", "pareto", "random", "mutation", "crossover", "selection", "deepga")),
]
_named = {g for _, gs in WORKERS for g in gs}
WORKERS += [(g, (g,)) for g in dict.fromkeys(e.group for e in ep.ENTRIES) if g not in _named]

JOBS = int(os.environ.get("EVOFORGE_FUZZ_JOBS", "0")) or max(2, os.cpu_count() or 2)
STARTUP = 180.0  # seconds a worker may take to import and build fixtures before its first case
GRACE = 15.0  # beyond a case's own limit, before the worker counts as hung (the alarm could not fire)

CASES: dict[str, list[str]] = {name: [c.id for c in fw.all_cases(list(groups))] for name, groups in WORKERS}
ALL = [(name, cid) for name, ids in CASES.items() for cid in ids]
assert len({cid for _, cid in ALL}) == len(ALL), "case ids must be unique"


def _fail(case: str, reason: str, **extra) -> dict:
    return {"case": case, "ok": False, "reason": reason, **extra}


def _log_tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _run_worker(name: str, groups: tuple[str, ...], ids: list[str], tmp: Path) -> dict[str, dict]:
    """Run the cases ``ids`` in worker processes: a worker that dies or hangs is replaced, and the case it
    was running is reported (a crash by a signal, a hang in native code, or an exit)."""
    results: dict[str, dict] = {}
    remaining = list(ids)
    run = 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("EVOFORGE_DEBUG", None)
    while remaining:
        run += 1
        work = tmp / name / f"run{run}"
        work.mkdir(parents=True)
        (work / "tmp").mkdir()  # the worker ends by os._exit: what it leaves in TMPDIR goes with pytest's tmp
        log = tmp / name / f"run{run}.log"
        with open(log, "wb") as logf:
            p = subprocess.Popen([sys.executable, str(HERE / "fuzz_worker.py"), "--tmp", str(work), *groups],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf, cwd=work,
                                 env={**env, "TMPDIR": str(work / "tmp")},
                                 start_new_session=True)
        p.stdin.write(json.dumps(remaining).encode())
        p.stdin.close()
        fd = p.stdout.fileno()
        buf = b""
        current, limit, started = None, STARTUP, time.monotonic()
        hung = False
        while True:
            wait = max(0.0, started + limit + (GRACE if current else 0.0) - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                hung = True
                os.killpg(p.pid, signal.SIGKILL)
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                try:
                    msg = json.loads(line)
                except ValueError:  # not a protocol line: ignore it (the protocol fd is the worker's own)
                    continue
                if "start" in msg:
                    current, limit, started = msg["start"], float(msg["limit"]), time.monotonic()
                elif "result" in msg:
                    results[msg["result"]["case"]] = msg["result"]
                    current, limit, started = None, STARTUP, time.monotonic()
        p.stdout.close()
        rc = p.wait()
        if hung and current is None:
            for cid in remaining:
                results.setdefault(cid, _fail(cid, f"the {name} worker did not start within {STARTUP:g} s",
                                              log=_log_tail(log)))
            break
        if current is not None and current not in results:
            if hung:
                why = (f"hung: no result within {limit + GRACE:g} s (the alarm at {limit:g} s could not interrupt "
                       "it: native code or a blocked thread); the worker was killed")
                outcome = "timeout"
            elif rc < 0:
                why = f"crashed the process: killed by signal {signal.Signals(-rc).name}"
                outcome = "crash"
            else:
                why = f"the worker process exited with status {rc} while running this case"
                outcome = "crash"
            results[current] = _fail(current, why, outcome=outcome, log=_log_tail(log))
        elif rc != 0 and not hung:
            for cid in remaining:
                if cid not in results:
                    results[cid] = _fail(cid, f"the {name} worker exited with status {rc} before this case",
                                         log=_log_tail(log))
        remaining = [cid for cid in remaining if cid not in results]
    return results


@pytest.fixture(scope="session")
def fuzz_results(request, tmp_path_factory) -> dict[str, dict]:
    """Every selected case's result (``-k`` selects cases: only their workers run, only them)."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if getattr(item, "callspec", None) is not None and "case" in item.callspec.params}
    tmp = tmp_path_factory.mktemp("fuzz")
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        futures = [pool.submit(_run_worker, name, groups, ids, tmp) for name, groups in WORKERS
                   if (ids := [cid for cid in CASES[name] if cid in selected])]
        results: dict[str, dict] = {}
        for f in futures:
            results.update(f.result())
    report = os.environ.get("EVOFORGE_FUZZ_REPORT")
    if report:  # every case's result as JSON lines, e.g. to group the failures by cause
        with open(report, "w") as f:
            for name, cid in ALL:
                if cid in results:
                    f.write(json.dumps({"worker": name, **results[cid]}, default=str) + "\n")
    return results


def _describe(r: dict) -> str:
    parts = [r.get("reason", "")]
    if r.get("exc"):
        parts.append(f"{r['exc']}: {r.get('msg', '')}")
    if r.get("where"):
        parts.append(f"at {r['where']}")
    if r.get("argv"):
        parts.append("argv: " + " ".join(r["argv"]))
    if r.get("stderr"):
        parts.append("stderr:\n" + r["stderr"].rstrip())
    if r.get("log"):
        parts.append("worker log (tail):\n" + r["log"].rstrip())
    return "\n".join(p for p in parts if p)


@pytest.mark.parametrize("case", [pytest.param(cid, id=cid) for _, cid in ALL])
def test_bad_input(case, fuzz_results):
    r = fuzz_results.get(case)
    assert r is not None, f"{case}: no result (the harness lost it)"
    if not r["ok"]:
        pytest.fail(_describe(r), pytrace=False)


def test_every_public_name_is_walked():
    """Each name of the public modules' ``__all__`` starts an entry of entry_points.ENTRIES, or is
    listed in entry_points.NOT_FUZZED with the reason."""
    import importlib

    import evoforge

    names = {e.name.split("#")[0] for e in ep.ENTRIES}

    def covered(full: str) -> bool:
        return full in ep.NOT_FUZZED or any(n == full or n.startswith(full + ".") for n in names)

    missing = [f"evoforge.{n}" for n in evoforge.__all__ if not covered(f"evoforge.{n}")]
    for m in ("pareto", "hashing", "cache", "random", "mutation", "crossover", "selection", "deepga", "search",
              "solvers", "kl", "layers", "compress", "evaluate", "plot", "merging", "merge",
              "interpreter", "programs", "neuro"):
        mod = importlib.import_module(f"evoforge.{m}")
        missing += [f"{m}.{n}" for n in getattr(mod, "__all__", ()) if not covered(f"{m}.{n}")]
    assert not missing, f"public names with no entry in tests/fuzz/entry_points.py: {missing}"


def test_every_subcommand_has_cases(capsys):
    """Every subcommand of the `evoforge` parser (and compress's build-db) has cases in CLI_CASES."""
    import re

    from evoforge import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = capsys.readouterr().out
    commands = set(re.search(r"\{([a-z,-]+)\}", usage).group(1).split(","))
    first = {argv[0] for _, argv in ep.CLI_CASES if argv}
    assert commands and commands <= first, f"subcommands without CLI cases: {sorted(commands - first)}"
    assert any(argv[:2] == ["compress", "build-db"] for _, argv in ep.CLI_CASES)
