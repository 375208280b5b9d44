"""Worker process of the bad-input harness: runs cases of some entry groups, one JSON line each.

    python fuzz_worker.py --tmp DIR GROUP [GROUP ...]  < case ids (JSON list, or nothing: all)

Protocol (on the original stdout; the process's own stdout is sent to stderr so that nothing the
code under test prints can break it), one flushed line per event::

    {"start": CASE, "limit": SECONDS}
    {"result": {"case": CASE, "ok": bool, "reason": str, ...}}
    {"done": true}

Limits, set here before anything is imported: RLIMIT_AS (virtual memory, default 6 GiB) so that
an absurd size fails at once instead of swapping, and a per-case alarm (``CaseTimeout``). A
case that crashes the process (a signal) or hangs in native code is reported by the parent, which
reads the last "start" line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import sysconfig
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MEMORY_LIMIT = int(os.environ.get("EVOFORGE_FUZZ_MEMORY_GIB", "6")) << 30
DEFAULT_LIMIT = float(os.environ.get("EVOFORGE_FUZZ_CASE_TIMEOUT", "3"))
SLOW_ERROR = float(os.environ.get("EVOFORGE_FUZZ_SLOW_ERROR", "2"))  # an error after this long: long work first
CLI_FAST = float(os.environ.get("EVOFORGE_FUZZ_CLI_SECONDS", "5"))
CLI_SUBPROCESS_LIMIT = 60.0

ALLOWED_NAMES = "TypeError, ValueError, OSError, LookupError, EvoforgeError"


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so that ``except Exception`` in the code under test
    does not swallow it."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


@contextlib.contextmanager
def alarm(seconds: float):
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# ---- where an exception comes from --------------------------------------------------------------

_STDLIB = tuple({os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")})


def _is_stdlib(filename: str) -> bool:
    if filename.startswith("<"):  # frozen importlib, dataclass-generated __init__, exec'd code
        return True
    f = os.path.realpath(filename)
    return f.startswith(_STDLIB) and "site-packages" not in f and "dist-packages" not in f


def _pkg_dir() -> str:
    import evoforge

    return os.path.realpath(os.path.dirname(evoforge.__file__)) + os.sep


def _lib_dirs() -> tuple[str, ...]:
    """numpy's and torch's own code: an error raised there surfaces at the evoforge frame that called them."""
    out = []
    for name in ("numpy", "torch"):
        mod = sys.modules.get(name)
        if mod is not None:
            out.append(os.path.realpath(os.path.dirname(mod.__file__)) + os.sep)
    return tuple(out)


def _skipped(filename: str) -> bool:
    return _is_stdlib(filename) or os.path.realpath(filename).startswith(_lib_dirs())


def _short(filename: str) -> str:
    if filename.startswith("<"):
        return filename
    f = os.path.realpath(filename)
    for marker in ("/site-packages/", "/python/evoforge/", "/tests/fuzz/"):
        if marker in f:
            return ("evoforge/" if marker == "/python/evoforge/" else
                    "tests/fuzz/" if marker == "/tests/fuzz/" else "") + f.split(marker, 1)[1]
    return f


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0][:300] if s else ""


def judge_exception(e: BaseException) -> dict:
    """The rule for a raised exception: one of the allowed types, detected by evoforge: the innermost
    traceback frame outside the standard library, numpy and torch is in the evoforge package (errors
    of the native module surface at the evoforge wrapper that called it), and an IndexError or a
    KeyError comes from a ``raise`` statement there (not from an index that happened to be wrong)."""
    from evoforge.errors import EvoforgeError

    tb = traceback.extract_tb(e.__traceback__)
    inner = tb[-1] if tb else None
    info = {"exc": type(e).__module__ + "." + type(e).__qualname__ if type(e).__module__ != "builtins"
            else type(e).__qualname__,
            "msg": _first_line(e),
            "where": f"{_short(inner.filename)}:{inner.lineno}" if inner else "?"}
    if isinstance(e, MemoryError):
        return {**info, "ok": False, "reason": "MemoryError: tried to allocate instead of refusing the size"}
    allowed = isinstance(e, (TypeError, ValueError, OSError, LookupError, EvoforgeError))
    if not allowed:
        return {**info, "ok": False, "reason": f"{info['exc']} is not one of {ALLOWED_NAMES}"}
    pkg = _pkg_dir()
    deciding = next((fr for fr in reversed(tb) if not _skipped(fr.filename)), None)
    if deciding is None or not os.path.realpath(deciding.filename).startswith(pkg):
        lib = _short(deciding.filename) if deciding is not None else "?"
        return {**info, "ok": False,
                "reason": f"raised outside evoforge (in {lib}:{deciding.lineno if deciding else '?'}), "
                          "not detected by evoforge"}
    info["where"] = f"{_short(deciding.filename)}:{deciding.lineno}"
    if type(e) in (IndexError, KeyError) and not (deciding.line or "").lstrip().startswith("raise"):
        return {**info, "ok": False,
                "reason": f"implicit {type(e).__name__} from evoforge code (`{(deciding.line or '').strip()}`), "
                          "not a checked error"}
    return {**info, "ok": True, "reason": ""}


# ---- comparing results (non-contiguous input) ---------------------------------------------------


def canon(x: Any, depth: int = 0) -> Any:
    """A hashable, exactly comparable form of a result (arrays by their bytes)."""
    if depth > 30:
        return ("<deep>",)
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if x is None or isinstance(x, (bool, int, str, bytes)):
        return x
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, Path):
        return ("path", str(x))
    if torch is not None and isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        return ("tensor", str(x.dtype), tuple(t.shape), t.numpy().tobytes())
    if np is not None and isinstance(x, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(x)
        return ("nd", a.dtype.str, a.shape, a.tobytes() if a.dtype != object else repr(a.tolist()))
    if isinstance(x, (tuple, list)):
        return (type(x).__name__, tuple(canon(v, depth + 1) for v in x))
    if isinstance(x, dict):
        return ("dict", tuple(sorted(((repr(k), canon(v, depth + 1)) for k, v in x.items()), key=lambda kv: kv[0])))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, tuple((f.name, canon(getattr(x, f.name), depth + 1))
                                        for f in dataclasses.fields(x)))
    if hasattr(x, "state_dict"):
        return (type(x).__name__, canon(dict(x.state_dict()), depth + 1))
    return (type(x).__name__, repr(x))


# ---- running one case -------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    id: str
    entry: Any  # entry_points.Entry, or None for CLI cases
    arg: str | None = None
    kind: str | None = None
    label: str | None = None
    cli: tuple | None = None  # ("inprocess" | "subprocess", name, argv)

    @property
    def limit(self) -> float:
        if self.cli is not None:
            import entry_points as ep

            if self.cli[0] == "subprocess":
                return CLI_SUBPROCESS_LIMIT + 10
            return CLI_FAST * (3 if self.cli[1] in ep.CLI_NEEDS_MODEL else 1) + 1
        return float(self.entry.timeout or DEFAULT_LIMIT)


def all_cases(groups: list[str]) -> list[Case]:
    import entry_points as ep
    import fuzz_values as fv

    out: list[Case] = []
    for e in ep.ENTRIES:
        if e.group not in groups:
            continue
        out.append(Case(f"{e.name}:valid", e))
        for arg, kind in e.args.items():
            skip = set(e.skip.get(arg, ()))
            for label in fv.labels(kind):
                if label not in skip:
                    out.append(Case(f"{e.name}:{arg}={label}", e, arg, kind, label))
    if "cli" in groups:
        for name, argv in ep.CLI_CASES:
            out.append(Case(f"cli:{name}", None, cli=("inprocess", name, tuple(argv))))
        by_name = dict(ep.CLI_CASES)
        for name in ep.CLI_SUBPROCESS:
            out.append(Case(f"cli-subprocess:{name}", None, cli=("subprocess", name, tuple(by_name[name]))))
    return out


def _project(entry: Any, result: Any) -> Any:
    return entry.project(result) if entry.project is not None else result


def run_case(case: Case, ctx: Any) -> dict:
    import fuzz_values as fv

    entry = case.entry
    res: dict = {"case": case.id}
    t_call = 0.0
    try:
        with alarm(case.limit):
            try:
                call = entry.build(ctx)
                ref_call = entry.build(ctx) if case.label in fv.NONCONTIG else None
                kw = dict(call.kw)
                if case.arg is not None:
                    if case.arg not in kw:
                        raise AssertionError(f"the valid call has no argument {case.arg!r}")
                    kw[case.arg] = fv.make(case.kind, case.label, kw[case.arg], ctx)
            except CaseTimeout:
                raise
            except BaseException as e:  # noqa: BLE001
                return {**res, "ok": False, "outcome": "harness",
                        "reason": f"harness error building the call: {type(e).__name__}: {_first_line(e)}",
                        "where": "".join(traceback.format_exception(e)[-3:]).strip()[-500:]}
            t0 = time.perf_counter()
            try:
                out = call.fn(**kw)
                t_call = time.perf_counter() - t0
            except CaseTimeout:
                raise
            except BaseException as e:  # noqa: BLE001
                t_call = time.perf_counter() - t0
                j = judge_exception(e)
                res.update(outcome="raised", secs=round(t_call, 3), **j)
                if case.label is None:
                    res.update(ok=False, reason=f"the VALID call raised {j['exc']}: {j['msg']}")
                elif case.label in fv.NONCONTIG:
                    res.update(ok=False, reason=f"non-contiguous input ({case.label}) raised {j['exc']} instead of "
                                                f"giving the contiguous result")
                elif j["ok"] and t_call > SLOW_ERROR:
                    res.update(ok=False, reason=f"refused only after {t_call:.1f} s: long work before the error")
                return res
            res.update(outcome="returned", secs=round(t_call, 3), ok=True, reason="")
            if ref_call is not None:
                want = canon(_project(entry, ref_call.fn(**ref_call.kw)))
                got = canon(_project(entry, out))
                if want != got:
                    res.update(ok=False, reason=f"non-contiguous input ({case.label}) gave a different result than "
                                                "the contiguous copy")
            return res
    except CaseTimeout:
        return {**res, "ok": False, "outcome": "timeout",
                "reason": f"took too long: no result or error within {case.limit:g} s"}
    finally:
        ctx.run_cleanups()


# ---- CLI cases --------------------------------------------------------------------------------


def _cli_placeholders(ctx: Any) -> dict[str, str]:
    """The paths a CLI case's argv names: private copies of the fixtures (a case may write into them)."""
    import entry_points as ep

    f = ctx.files
    blank = ctx.fresh() / "blank.txt"
    blank.write_text(" \n\n\t \n")
    return {"model": ep.tiny_model_dir_with_tokenizer(ctx), "text": str(ctx.copy(f.text)),
            "empty": str(ctx.copy(f.empty)), "blank": str(blank), "garbage": str(ctx.copy(f.garbage)),
            "afile": str(ctx.copy(f.afile)), "dir": str(ctx.copy(f.emptydir)), "missing": str(f.missing),
            "garbagedir": str(ctx.copy(f.garbagedir)), "new": str(ctx.fresh() / "out")}


def judge_cli(rc: Any, err: str, secs: float, loaded: bool, needs_model: bool, limit: float) -> tuple[bool, str]:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if needs_model:  # the model's own loading bar may show
        lines = [ln for ln in lines if not ln.lstrip("\r").startswith(("Loading weights", "Loading checkpoint"))]
        lines = [ln for ln in lines if "Loading weights" not in ln]
    problems = []
    if rc != 2:
        problems.append(f"exit status {rc!r}, not 2")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, not 1")
    elif not (lines[0].startswith("evoforge") and "error" in lines[0]):
        problems.append("the stderr line does not start with 'evoforge' and say 'error'")
    if loaded and not needs_model:
        problems.append("loaded the model before refusing the argument")
    if secs > limit:
        problems.append(f"took {secs:.1f} s (more than {limit:g} s)")
    return not problems, "; ".join(problems)


def _spy_model_loading(loaded: list) -> Any:
    """Record in ``loaded`` every model that did load, where the CLI really loads it: the loader
    ``evoforge.compress.load_model`` (the CLI calls it as ``evoforge.compress.load_model``, the
    compression modules by the name they imported), patched in every evoforge module that holds it,
    and, as a backstop for another loader, Hugging Face's ``PreTrainedModel.from_pretrained``. A
    model refused inside the loader (missing, garbage) does not count. Returns the undo."""
    import evoforge.compress.models as models
    from transformers import modeling_utils

    real_load = models.load_model

    def load_spy(*a, **k):
        out = real_load(*a, **k)
        loaded.append(True)
        return out

    holders = [m for n, m in list(sys.modules.items())
               if (n == "evoforge" or n.startswith("evoforge.")) and getattr(m, "load_model", None) is real_load]
    for m in holders:
        m.load_model = load_spy
    real_fp = modeling_utils.PreTrainedModel.__dict__["from_pretrained"]

    def fp_spy(cls, *a, **k):
        out = real_fp.__func__(cls, *a, **k)
        loaded.append(True)
        return out

    modeling_utils.PreTrainedModel.from_pretrained = classmethod(fp_spy)

    def undo() -> None:
        modeling_utils.PreTrainedModel.from_pretrained = real_fp
        for m in holders:
            m.load_model = real_load

    return undo


def run_cli_case(case: Case, ctx: Any) -> dict:
    import entry_points as ep

    mode, name, argv_t = case.cli
    ph = _cli_placeholders(ctx)
    argv = [a.format(**ph) for a in argv_t]
    needs_model = name in ep.CLI_NEEDS_MODEL
    res: dict = {"case": case.id, "argv": argv}
    if mode == "subprocess":
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("EVOFORGE_DEBUG", None)
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-m", "evoforge.cli", *argv], capture_output=True, text=True,
                               timeout=CLI_SUBPROCESS_LIMIT, env=env, cwd=str(ctx.fresh()))
        except subprocess.TimeoutExpired:
            return {**res, "ok": False, "outcome": "timeout", "reason": f"no exit within {CLI_SUBPROCESS_LIMIT:g} s"}
        secs = time.perf_counter() - t0
        rc = p.returncode if p.returncode >= 0 else f"signal {signal.Signals(-p.returncode).name}"
        ok, why = judge_cli(rc, p.stderr, secs, "Loading weights" in p.stderr, needs_model, CLI_SUBPROCESS_LIMIT)
        return {**res, "ok": ok, "reason": why, "rc": rc, "stderr": p.stderr[-1500:], "secs": round(secs, 2),
                "outcome": "cli"}
    from evoforge import cli

    loaded: list[bool] = []
    unspy = _spy_model_loading(loaded)
    err, out = io.StringIO(), io.StringIO()
    os.environ.pop("EVOFORGE_DEBUG", None)
    t0 = time.perf_counter()
    rc: Any = None
    try:
        with alarm(case.limit), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = cli.main(argv)
            except SystemExit as e:
                rc = e.code
    except CaseTimeout:
        return {**res, "ok": False, "outcome": "timeout", "reason": f"no exit within {case.limit:g} s",
                "stderr": err.getvalue()[-1500:]}
    except BaseException as e:  # noqa: BLE001 -- main() itself must never raise
        tb = "".join(traceback.format_exception(e))
        return {**res, "ok": False, "outcome": "raised", "exc": type(e).__name__, "msg": _first_line(e),
                "reason": f"cli.main raised {type(e).__name__} instead of exiting", "stderr": tb[-1500:]}
    finally:
        unspy()
    secs = time.perf_counter() - t0
    loaded = loaded or ["Loading weights" in err.getvalue()]
    ok, why = judge_cli(rc, err.getvalue(), secs, any(loaded), needs_model,
                        CLI_FAST * (3 if needs_model else 1))
    return {**res, "ok": ok, "reason": why, "rc": rc, "stderr": err.getvalue()[-1500:], "secs": round(secs, 2),
            "outcome": "cli"}


# ---- main -------------------------------------------------------------------------------------


def _limit_memory() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    lim = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (lim, hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True)
    ap.add_argument("groups", nargs="+")
    args = ap.parse_args()
    args.tmp = os.path.abspath(args.tmp)
    os.makedirs(args.tmp, exist_ok=True)
    os.chdir(args.tmp)  # relative paths a case writes (an empty path is ".") land in the scratch directory
    _limit_memory()
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the code under test prints goes to the log, not into the protocol
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)

    def emit(obj: dict) -> None:
        proto.write(json.dumps(obj, default=str) + "\n")
        proto.flush()

    sys.path.insert(0, str(HERE))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy  # noqa: F401

    import evoforge  # noqa: F401
    import fuzz_values as fv

    wanted = sys.stdin.read().strip()
    cases = all_cases(args.groups)
    if wanted:
        order = json.loads(wanted)
        by_id = {c.id: c for c in cases}
        cases = [by_id[i] for i in order if i in by_id]
    ctx = fv.Ctx(Path(args.tmp))
    import entry_points as ep

    ep.warm_up(set(args.groups), ctx)
    for case in cases:
        emit({"start": case.id, "limit": case.limit})
        if case.cli is not None:
            r = run_cli_case(case, ctx)
        else:
            r = run_case(case, ctx)
        emit({"result": r})
    emit({"done": True})
    proto.close()
    os._exit(0)  # no interpreter teardown: leftover threads or pools of a bad case must not hang it


if __name__ == "__main__":
    sys.exit(main())
