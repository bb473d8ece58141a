"""One cache directory for expensive artefacts (generated datasets, pre-trained checkpoints).

Every entry lives under ``cache_root() / kind / <name>-<hash>`` where the hash is of the full
configuration that produced it, so a changed configuration is a new entry and never a stale hit.
Entries are built in a temporary sibling and renamed into place (atomic on POSIX), under an
exclusive file lock, so two processes that ask at once build it once and nobody sees half a file.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["cache_root", "config_hash", "cache_lock", "atomic_write", "cached_dir"]


def cache_root() -> Path:
    """``$MRTL_CACHE_DIR`` if set; else ``.mrtl_cache`` in the source checkout; else ``~/.cache/mrtl``."""
    env = os.environ.get("MRTL_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
    else:
        checkout = Path(__file__).resolve().parents[1]
        root = checkout / ".mrtl_cache" if (checkout / "pyproject.toml").exists() else Path.home() / ".cache" / "mrtl"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock tied to ``path`` (a ``.lock`` file beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (atomic on POSIX).

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def cached_dir(kind: str, name: str, config: Any, build: Callable[[Path], None]) -> Path:
    """Return the cache directory for ``config``, building it with ``build(tmp_dir)`` if absent.

    The configuration is stored beside the content as ``config.json``. A directory is complete
    exactly when it exists: it only appears through an atomic rename of a finished build.
    """
    final = cache_root() / kind / f"{name}-{config_hash(config)}"
    if final.is_dir():
        return final
    with cache_lock(final):
        if final.is_dir():  # another process finished it while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            build(tmp)
            (tmp / "config.json").write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
