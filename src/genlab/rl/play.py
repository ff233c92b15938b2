"""Watch an agent: episodes rendered by gymnasium (``rgb_array``, pygame) into an animated GIF."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from genlab.core.errors import ConfigError
from genlab.rl.envs import episode_seed, make_env
from genlab.rl.evaluate import Act


def play(
    act: Act,
    env_id: str,
    episodes: int = 1,
    seed: int = 0,
    gif: Path | None = None,
    every: int = 2,
    scale: float = 0.5,
    fps: int = 50,
) -> list[float]:
    """Run ``episodes`` episodes, one environment, and return their returns; with ``gif``, write
    every ``every``-th frame (scaled by ``scale``) of all of them to that file."""
    if episodes < 1 or every < 1 or not 0 < scale <= 1:
        raise ConfigError(f"need episodes >= 1, every >= 1 and 0 < scale <= 1, got {episodes}, {every}, {scale}")
    if gif:  # off-screen rendering: pygame needs no display, and keeps quiet
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    env = make_env(env_id, render_mode="rgb_array" if gif else None)
    frames: list[Image.Image] = []
    returns = []

    def grab() -> None:
        frame = Image.fromarray(np.asarray(env.render()))
        if scale != 1:
            frame = frame.resize((max(1, int(frame.width * scale)), max(1, int(frame.height * scale))))
        frames.append(frame)

    try:
        for k in range(episodes):
            obs, _ = env.reset(seed=episode_seed(seed, 0, k))
            total, t, done = 0.0, 0, False
            while not done:
                if gif and t % every == 0:
                    grab()
                action = int(np.asarray(act(np.asarray(obs, dtype=np.float32)[None]))[0])
                obs, reward, terminated, truncated, _ = env.step(action)
                total, t, done = total + float(reward), t + 1, terminated or truncated
            if gif:
                grab()  # the last state
            returns.append(total)
    finally:
        env.close()
    if gif:
        gif = Path(gif)
        gif.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(gif, save_all=True, append_images=frames[1:], duration=int(1000 * every / fps), loop=0)
    return returns


__all__ = ["play"]
