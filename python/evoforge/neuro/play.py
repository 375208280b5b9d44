"""Play a saved policy: its returns over fresh episodes, and a video of the first one.

:func:`play` loads ``best_policy.npz`` (:mod:`evoforge.neuro.saved`) from a run directory (or the
file itself), runs it over K episodes in lockstep (:func:`~evoforge.neuro.rollout.evaluate_policy`)
and, when asked, replays the first of them (the same reset seed, so the same episode) in an
environment made with ``render_mode="rgb_array"``, writing its frames:

* ``.gif``: with Pillow (frames upscaled to at least 160 pixels high with nearest-neighbour
  sampling, so that MinAtar's 10 x 10 grids are visible; subsampled to at most ``max_frames``);
* ``.mp4``: with Gymnasium's ``RecordVideo``, which needs ``moviepy``; without it the call
  refuses before running anything, naming what to install (or to write a ``.gif``).

An environment that cannot render ``rgb_array`` is refused before the episodes run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from .envs import make_env
from .rollout import DEFAULT_MAX_STEPS, episode_seeds
from .saved import SavedPolicy, load_policy

__all__ = ["play", "BEST_POLICY", "VIDEO_FORMATS"]

#: The file of a run directory that holds its best policy.
BEST_POLICY = "best_policy.npz"
VIDEO_FORMATS = (".gif", ".mp4")


def _source(run: Any) -> Path:
    if not isinstance(run, (str, os.PathLike)):
        raise TypeError(f"run must be a run directory or a saved policy file, got {type(run).__name__}")
    p = Path(run)
    if p.is_dir():
        p = p / BEST_POLICY
        if not p.is_file():
            raise FileNotFoundError(f"{str(run)!r} holds no {BEST_POLICY} (not a finished `evoforge neuro` run)")
    return p


def check_video(path: Any) -> Path:
    """The video path, checked: a known suffix, a writable parent, and the writer installed."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"video must be a path, got {type(path).__name__}")
    p = Path(path)
    if p.suffix.lower() not in VIDEO_FORMATS:
        raise ConfigError(f"video {str(p)!r}: the file must end with one of {', '.join(VIDEO_FORMATS)}")
    if p.is_dir():
        raise IsADirectoryError(f"video {str(p)!r} is a directory")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"video {str(p)!r}: the directory {str(p.parent)!r} does not exist")
    if p.suffix.lower() == ".mp4" and importlib.util.find_spec("moviepy") is None:
        raise ImportError("no .mp4 writer installed: Gymnasium's RecordVideo needs moviepy (pip install moviepy); "
                          "or give a .gif path (written with Pillow)")
    if p.suffix.lower() == ".gif" and importlib.util.find_spec("PIL") is None:
        raise ImportError("no .gif writer installed: pip install pillow")
    return p


def play(run: Any, episodes: int = 10, *, video: Any = None, seed: int = 2**32 + 7, max_steps: int | None = None,
         max_frames: int = 600) -> dict:
    """Returns of the saved policy of ``run`` over ``episodes`` fresh episodes (reset seeds from
    ``seed``; the default is :meth:`EvolveResult.evaluate`'s; at most ``max_steps`` steps each, by
    default the run's limit, else the environment's) and, with ``video``, the first episode written
    there (the same episode: its return is ``returns[0]``). Returns ``{"returns", "mean", "std", "env",
    "video", "video_return", "frames"}``."""
    K = check_int(episodes, "episodes", 1, 1 << 16)
    seed = check_int(seed, "seed", 0, 2**64 - 1)
    max_frames = check_int(max_frames, "max_frames", 1, 1 << 20)
    vpath = check_video(video) if video is not None else None
    saved = load_policy(_source(run))
    env_id, env_kwargs = saved.meta.get("env"), dict(saved.meta.get("env_kwargs") or {})
    if not isinstance(env_id, str):
        raise ConfigError("the saved policy names no environment id")
    if max_steps is None:  # the run's own step limit, else the environment's
        max_steps = saved.meta.get("max_steps")
    if max_steps is not None:
        max_steps = check_int(max_steps, "max_steps", 1, 1 << 40)
    render_env = _render_env(env_id, env_kwargs) if vpath is not None else None
    try:
        returns = saved.evaluate(episodes=K, seed=seed, max_steps=max_steps)
        out = {"returns": returns.tolist(), "mean": float(returns.mean()), "std": float(returns.std()),
               "env": env_id, "video": None, "video_return": None, "frames": 0}
        if render_env is not None:
            limit = max_steps or getattr(render_env.spec, "max_episode_steps", None) or DEFAULT_MAX_STEPS
            ret, n = _record(saved, render_env, episode_seeds(seed, 1)[0], vpath, int(limit), max_frames)
            out.update(video=str(vpath), video_return=ret, frames=n)
        return out
    finally:
        if render_env is not None:
            render_env.close()


def _render_env(env_id: str, env_kwargs: dict) -> Any:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, without a display
    try:
        env = make_env(env_id, {**env_kwargs, "render_mode": "rgb_array"})
    except ConfigError as e:
        raise ConfigError(f"{env_id!r} cannot render rgb_array frames for a video: {e}") from None
    modes = env.metadata.get("render_modes") or []
    if "rgb_array" not in modes:
        env.close()
        raise ConfigError(f"{env_id!r} does not render rgb_array frames (its render modes: {modes}): no video")
    try:  # a renderer's own dependency (pygame for classic control and Box2D) is missing only when it draws
        env.reset(seed=0)
        env.render()
    except Exception as e:
        env.close()
        if type(e).__name__ == "DependencyNotInstalled":
            raise ConfigError(f"{env_id!r} cannot render a video here: {e}") from None
        raise
    return env


def _frame(env: Any) -> np.ndarray | None:
    f = env.render()
    if f is None:
        return None
    f = np.asarray(f)
    if f.dtype != np.uint8:  # MinAtar gives float colours in [0, 1]
        f = np.clip(f * (255.0 if f.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return f


def _record(saved: SavedPolicy, env: Any, reset_seed: int, path: Path, max_steps: int, max_frames: int
            ) -> tuple[float, int]:
    """Run one episode from ``reset_seed``, writing its frames to ``path``; (its return, frames written)."""
    if path.suffix.lower() == ".mp4":
        return _record_mp4(saved, env, reset_seed, path, max_steps)
    frames, total = [], 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Gymnasium's checker warns about MinAtar's float frames and fps
        obs, _ = env.reset(seed=int(reset_seed))
        frames.append(_frame(env))
        for _ in range(max_steps):
            obs, r, term, trunc, _ = env.step(saved.act(obs))
            total += float(r)
            frames.append(_frame(env))
            if term or trunc:
                break
    frames = [f for f in frames if f is not None]
    if not frames:
        raise ConfigError("the environment rendered no frames")
    step = max(1, -(-len(frames) // max_frames))
    kept = frames[::step]
    fps = float(env.metadata.get("render_fps") or 30) / step
    _write_gif(kept, path, fps)
    return total, len(kept)


def _write_gif(frames: list, path: Path, fps: float) -> None:
    from PIL import Image

    h, w = frames[0].shape[:2]
    up = max(1, -(-160 // h))
    down = max(1, -(-w * up // 480))  # at most 480 pixels wide
    images = []
    for f in frames:
        im = Image.fromarray(f[..., :3] if f.ndim == 3 else f)
        if up > 1:
            im = im.resize((w * up, h * up), Image.NEAREST)
        if down > 1:
            im = im.resize((w * up // down, h * up // down), Image.BILINEAR)
        images.append(im.convert("P", palette=Image.ADAPTIVE))
    tmp = path.with_name(path.name + ".tmp.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=max(20, int(1000 / fps)), loop=0)
    os.replace(tmp, path)


def _record_mp4(saved: SavedPolicy, env: Any, reset_seed: int, path: Path, max_steps: int) -> tuple[float, int]:
    from gymnasium.wrappers import RecordVideo

    folder = Path(tempfile.mkdtemp(prefix="evoforge-video-"))
    total, n = 0.0, 0
    try:
        rec = RecordVideo(env, str(folder), episode_trigger=lambda i: i == 0, name_prefix="play",
                          disable_logger=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obs, _ = rec.reset(seed=int(reset_seed))
            for _ in range(max_steps):
                obs, r, term, trunc, _ = rec.step(saved.act(obs))
                total, n = total + float(r), n + 1
                if term or trunc:
                    break
            with contextlib.suppress(Exception):
                rec.stop_recording()
        written = sorted(folder.glob("*.mp4"))
        if not written:
            raise ConfigError("RecordVideo wrote no video")
        shutil.move(str(written[0]), path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return total, n + 1
