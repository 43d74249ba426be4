"""The one builder of the shell commands preflight prints as fixes: argv lists, quoted with ``shlex.join``.

A printed fix is a promise: pasted into bash as printed, it repairs the row, whatever the paths hold
(spaces, quotes, newlines).
"""

from __future__ import annotations

import shlex
from pathlib import Path

FETCH = ("python", "-m", "fetchers")


def shell(*argv: str | Path) -> str:
    """One command line; ``VAR=value`` words first set the environment for that command alone."""
    return shlex.join(str(a) for a in argv)


def fetch_command(*args: str | Path, data_root: Path | None = None, hub_online: bool = False) -> str:
    """``python -m fetchers ARGS`` (into ``data_root`` when one is named), online for the Hub if asked.

    ``hub_online``: the user's environment sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, under which
    huggingface_hub refuses every request; ``HF_HUB_OFFLINE=0`` outranks both for this one command.
    """
    env = ("HF_HUB_OFFLINE=0",) if hub_online else ()
    root = (f"--data-root={data_root}",) if data_root is not None else ()
    return shell(*env, *FETCH, *args, *root)


def move_aside(path: Path | str, suffix: str) -> str:
    """``mv PATH PATH<suffix>``: nothing a user has is deleted."""
    return shell("mv", path, f"{path}{suffix}")


def remove(path: Path | str) -> str:
    """``rm -- PATH``: only for a file of a cache (it is fetched again)."""
    return shell("rm", "--", path)
