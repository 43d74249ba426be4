"""The one error root of the fetchers, and how any failure becomes a message plus a fix.

Everything a fetcher raises on purpose derives from :class:`FetchError`: ``message`` says what went
wrong (and what was left as it was), ``fix`` what to do, kept apart so the report can show each once.
:func:`explain` turns any exception (ours, an ``OSError`` from the file system, a client's error)
into that pair, so a failed fetch is always an asset's outcome with a fix that names the cause.
"""

from __future__ import annotations

import errno
from pathlib import Path

from preflight_core import commands
from preflight_core.findings import Fix, shown
from preflight_core.options import OPTIONS
from preflight_core.redact import redact


class FetchError(RuntimeError):
    """A fetch that cannot succeed as things are; ``message`` says why, ``fix`` what to do (text, commands)."""

    def __init__(self, message: str, fix: Fix | str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix if isinstance(fix, Fix) else Fix(fix)

    def __str__(self) -> str:
        return f"{self.message.rstrip('.')}. Fix: {self.fix.text}" if self.fix else self.message


class FetchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a fetch: the one line to print says what was left and that a rerun resumes.

    A KeyboardInterrupt still (pytest and Python treat it as an interrupt); its text names no
    exception type, so pytest shows it as one line, without a traceback.
    """


PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = PROJECT / str(OPTIONS["data-root"].default)  # relative to the project, as under pytest


def fetch_command(*args: str | Path, data_root: Path | None = None) -> str:
    """The command that (re)fetches with ``args`` into ``data_root`` (named only when not the default)."""
    named = data_root is not None and Path(data_root).absolute() != DEFAULT_DATA_ROOT
    return commands.fetch_command(*args, data_root=Path(data_root) if named and data_root is not None else None)


def explain(e: BaseException, data_root: Path | None = None) -> tuple[str, Fix]:
    """(message, fix) for any failure of a fetch: the message on one line, redacted; the fix as data."""
    if isinstance(e, FetchError):
        message, fix = e.message, e.fix
    elif isinstance(e, OSError) and e.errno is not None:
        message, text = explain_os_error(e, data_root)
        fix = Fix(text)
    else:
        message, fix = str(e) or type(e).__name__, Fix()
        if not isinstance(e, (RuntimeError, ValueError)):
            message = f"{type(e).__name__}: {message}"
    return _one_line(message), Fix(_one_line(fix.text), fix.commands)


def _one_line(text: str) -> str:
    """One line, no secrets, no control characters (text from servers and clients is shown escaped)."""
    return shown(redact(" ".join(str(text).split())).rstrip())


def _blocker(path: Path) -> Path | None:
    """The first component of ``path`` that exists and is not a folder (or ``path`` itself)."""
    for candidate in (*reversed(path.parents), path):
        if (candidate.exists() and not candidate.is_dir()) or (candidate.is_symlink() and not candidate.exists()):
            return candidate
    return None


def _folder_of(path: Path) -> Path:
    """The folder that holds (or would hold) ``path``: the nearest one that exists."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return path.parent


def explain_os_error(e: OSError, data_root: Path | None = None) -> tuple[str, str]:
    """A file-system fault in words: what failed, on which path, and the way out that fits the cause."""
    path = e.filename if e.filename is not None else (data_root or "")
    where = f"{path}" + (f" -> {e.filename2}" if e.filename2 else "")
    reason = e.strerror or type(e).__name__
    root = f" --data-root={data_root}" if data_root else ""
    choose = "choose a writable --data-root=PATH (or PREFLIGHT_DATA_ROOT)"
    if e.errno == errno.EROFS:
        return (f"the data root is read-only: {where} ({reason}); nothing was changed there",
                f"{choose}, or remount{root and ' ' + str(data_root)} read-write, then rerun")
    if e.errno in (errno.EACCES, errno.EPERM):
        folder = _folder_of(Path(path)) if path else Path.cwd()  # lsattr needs what exists: the folder
        return (f"permission denied: {where} ({reason}); nothing was changed there",
                f"make it writable for this user (check the owner and mode of {folder} and "
                f"`{commands.shell('lsattr', '-d', folder)}` for the immutable flag), or {choose}; then rerun")
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        folder = _folder_of(Path(path)) if path else Path.cwd()  # never an empty `df -h `
        return (f"no space left on the device (or quota exceeded) while writing {where}",
                f"free space in {folder} (`{commands.shell('df', '-h', folder)}`), or {choose}; then rerun "
                "(finished files are kept)")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _blocker(Path(path)) if path else None
        if blocker is not None:
            what = "a dangling symlink" if blocker.is_symlink() and not blocker.exists() else "a file"
            return (f"{blocker} is {what} where a folder must be (needed for {path}); it was left as it is",
                    f"move it aside (mv {blocker} {blocker}.old) or {choose}; then rerun")
    if e.errno == errno.EBUSY:
        return (f"{where} is a mount point or in use and cannot be replaced by the fetch ({reason}); "
                "it was left as it is",
                f"unmount it, or {choose} and copy the result in; then rerun")
    if e.errno == errno.ENOTEMPTY:
        return (f"{where} is not empty ({reason}); it was left as it is",
                f"move it aside (mv {path} {path}.old), then rerun")
    return (f"{type(e).__name__} on {where}: {reason}",
            f"check that {path} is on a working, writable file system, or {choose}; then rerun")
