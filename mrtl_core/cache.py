"""One cache directory for expensive artefacts (generated datasets, pre-trained checkpoints).

Every entry lives under ``cache_root() / kind / <name>-<hash>`` where the hash is of the full
configuration that produced it, so a changed configuration is a new entry and never a stale hit.
Entries are built in a temporary sibling and renamed into place (atomic on POSIX), under an
exclusive file lock, so two processes that ask at once build it once and nobody sees half a file.
Each entry records the size and sha256 of its files (``checksums.json``); a hit checks them
cheaply, a damaged entry is reported with its path and rebuilt, and :func:`verify_cache` checks
every byte. What killed writers leave behind (temporary files and folders) is removed by the next
writer of the same path.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["cache_root", "config_hash", "cache_lock", "atomic_write", "cached_dir", "clean_stale_temps", "clean_stale_builds",
           "copy_file", "file_sha256", "verify_entry", "verify_cache", "blocking_file", "MANIFEST", "CacheDamage"]

#: the checksums of an entry's files, written with it: ``{"files": {name: {"size", "sha256"}}}``
MANIFEST = "checksums.json"
#: files up to this size are hashed on every cache hit; larger ones only by ``verify_entry(full=True)``
QUICK_HASH_BYTES = 1 << 20
#: a temporary file whose writer cannot be identified is stale after this long
_STALE_SECONDS = 3600.0
#: files this process has hashed and found intact, by path: (size, mtime_ns, inode) when hashed
_VERIFIED: dict[str, tuple[int, int, int]] = {}


class CacheDamage(ValueError):
    """A cache entry that no longer matches what was written; the message names the path."""


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


#: what follows ".<name>." in a temporary sibling: "<pid>.<random>[.tmp]", or "<random>[.tmp]" from
#: versions that did not record the pid (tempfile's random part is 8 characters)
_TEMP_NAME = re.compile(r"^(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}(?:\.tmp)?$")


def _is_stale(tmp: Path, rest: str) -> bool:
    """A temporary sibling is stale when its writer (the pid in its name) is no longer running on
    this machine, or, for names without a pid, when it is more than an hour old."""
    match = _TEMP_NAME.match(rest)
    if match is None:
        return False  # not one of ours (e.g. ".model.pt.bak"): leave it
    if match["pid"] is not None:
        return int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"]))
    try:
        return time.time() - tmp.stat().st_mtime > _STALE_SECONDS
    except OSError:
        return False


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files and folders that killed writers of ``path`` left beside it.

    Writers name them ``.<name>.<pid>.<random>[.tmp]``: one whose process is no longer alive will
    never be renamed into place (SIGKILL gives no chance to clean up). Returns what was removed.
    The pid test assumes one machine per cache directory (pids of other hosts look dead).
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*"):
        if _is_stale(tmp, tmp.name[len(path.name) + 2:]):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            removed.append(tmp)
    return removed


_BUILD_DIR = re.compile(r"^\.(?P<entry>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}$")


def clean_stale_builds(parent: Path) -> list[Path]:
    """Remove the temporary folders of builds (of any entry under ``parent``) whose process is gone."""
    removed = []
    try:
        children = list(os.scandir(parent))
    except OSError:
        return removed
    for child in children:
        match = _BUILD_DIR.match(child.name)
        if match and child.is_dir(follow_symlinks=False) and int(match["pid"]) != os.getpid() \
                and not _pid_alive(int(match["pid"])):
            shutil.rmtree(child.path, ignore_errors=True)
            removed.append(Path(child.path))
    return removed


def blocking_file(path: Path | str) -> Path | None:
    """The ancestor of ``path`` that is a file, so that ``path`` can never be created; ``None`` if there is none.

    Only the nearest existing ancestor counts: the missing ones below it are made as directories.
    """
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped."""
    import glob

    return glob.escape(name)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (atomic on POSIX).

    On any error the temporary file is removed and ``path`` is left as it was; temporary files
    of earlier writers that were killed are removed first (:func:`clean_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` as an independent file: a reflink where the filesystem can (instant,
    copy-on-write), else a byte copy. Never a hard link: damage to one would be damage to both."""
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), 0x40049409, fin.fileno())  # FICLONE (btrfs, xfs, ...)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _write_manifest(entry: Path) -> None:
    files = {}
    for f in sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[str(f.relative_to(entry))] = {"size": f.stat().st_size, "sha256": file_sha256(f)}
    blob = json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True)
    atomic_write(entry / MANIFEST, lambda tmp: Path(tmp).write_text(blob))


def _read_manifest(entry: Path) -> dict | None:
    path = entry / MANIFEST
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
        return files
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CacheDamage(f"{path}: unreadable checksums ({err})") from None


def verify_entry(entry: Path, full: bool = False, hash_limit: int = QUICK_HASH_BYTES) -> list[str]:
    """Problems found in one cache entry (empty: intact), each naming the file at fault.

    Every file recorded in its checksums must exist with its recorded size; files up to
    ``hash_limit`` bytes (all files with ``full``) must have their recorded sha256, hashed once per
    process while their size, mtime and inode stay the same. An entry without checksums (written
    by an older version) is reported by ``full`` only.
    """
    entry = Path(entry)
    try:
        files = _read_manifest(entry)
    except CacheDamage as err:
        return [str(err)]
    if files is None:
        return [f"{entry}: no {MANIFEST} (written before checksums were kept): cannot be verified"] if full else []
    problems = []
    for name, rec in files.items():
        path = entry / name
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{path}: missing")
            continue
        if size != rec.get("size"):
            problems.append(f"{path}: {size} bytes, {rec.get('size')} when written")
        elif full or size <= hash_limit:
            st = path.stat()
            seen = (st.st_size, st.st_mtime_ns, st.st_ino)
            if not full and _VERIFIED.get(str(path)) == seen:
                continue
            if file_sha256(path) != rec.get("sha256"):
                problems.append(f"{path}: content differs from when it was written (sha256 mismatch)")
            else:
                _VERIFIED[str(path)] = seen
    return problems


def verify_cache(full: bool = True, kinds: tuple[str, ...] = ("datasets", "models", "maps")) -> dict[Path, list[str]]:
    """``{entry: problems}`` for every damaged entry under :func:`cache_root` (a cheap ``verify``:
    sizes and small files with ``full=False``, every byte with ``full=True``)."""
    out = {}
    for kind in kinds:
        parent = cache_root() / kind
        if not parent.is_dir():
            continue
        for entry in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
            problems = verify_entry(entry, full=full)
            if problems:
                out[entry] = problems
    return out


def _discard(entry: Path, reason: str) -> None:
    """Move a damaged entry out of the way (then delete it), saying which and why."""
    warnings.warn(f"damaged cache entry {entry}: {reason}; rebuilding it", stacklevel=3)
    aside = entry.with_name(f".{entry.name}.damaged.{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(entry, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _entry_problem(entry: Path, validate: Callable[[Path], None] | None, hash_limit: int) -> str | None:
    """The first reason ``entry`` cannot be served, or ``None``; adds checksums to an old entry."""
    problems = verify_entry(entry, hash_limit=hash_limit)
    if problems:
        return problems[0]
    if validate is not None:
        try:
            validate(entry)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return " ".join(str(err).split()) or type(err).__name__
    if not (entry / MANIFEST).exists():
        with contextlib.suppress(OSError):  # a read-only cache stays unverified, not unusable
            _write_manifest(entry)  # entries from before checksums: record them as they are now
    return None


def cached_dir(kind: str, name: str, config: Any, build: Callable[[Path], None],
               validate: Callable[[Path], None] | None = None, hash_limit: int = QUICK_HASH_BYTES) -> Path:
    """Return the cache directory for ``config``, building it with ``build(tmp_dir)`` if absent.

    The configuration is stored beside the content as ``config.json``, and the sha256 of every file
    as :data:`MANIFEST`. A directory is complete exactly when it exists: it only appears through an
    atomic rename of a finished build. On every hit the entry is checked (files present with their
    sizes, the checksums of files up to ``hash_limit`` bytes, then ``validate(entry)``, which raises
    on anything unusable); a damaged entry is reported with its path and rebuilt. Temporary folders
    of killed builds go.
    """
    final = cache_root() / kind / f"{name}-{config_hash(config)}"
    clean_stale_builds(final.parent)  # a killed build of any entry (SIGKILL leaves 100s of MB)
    if final.is_dir() and _entry_problem(final, validate, hash_limit) is None:
        return final
    with cache_lock(final):
        for tmp in final.parent.glob(f".{glob_escape(final.name)}.*"):
            # we hold the lock, so no live build of this entry owns them: left by a killed one
            if tmp.is_dir() and not tmp.name.endswith(".lock"):
                shutil.rmtree(tmp, ignore_errors=True)
        if final.is_dir():  # intact now (another process rebuilt it while we waited), or damaged
            problem = _entry_problem(final, validate, hash_limit)
            if problem is None:
                return final
            _discard(final, problem)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", dir=final.parent))
        try:
            build(tmp)
            (tmp / "config.json").write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
            _write_manifest(tmp)
            if validate is not None:
                validate(tmp)  # a build that does not pass its own check is a bug: never cache it
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
