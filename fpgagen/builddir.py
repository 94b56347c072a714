"""Build directories written atomically: a build goes into a temporary sibling directory and is swapped in only
once complete and checked, under a lock, so that a failing, interrupted or killed build leaves the previous
directory exactly as it was and two builds into one directory never mix.

Layout next to ``out/``: ``.out.lock`` (held with ``flock`` by the building process, holding its pid; the
kernel drops the lock when that process dies, so a stale lock is simply taken over), ``.out.tmp-<pid>`` (the
build in progress) and, only in the instant of the swap on filesystems without an atomic exchange,
``.out.old-<pid>`` (the previous build).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
from pathlib import Path

from .errors import FpgagenError

_RENAME_EXCHANGE = 2  # linux/fs.h


def _sibling(out_dir: Path, tag: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{tag}"


class BuildLock:
    """Exclusive right to write ``out_dir``; refuses (FpgagenError) while another live process holds it."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = _sibling(self.out_dir, "lock")
        self.fd: int | None = None

    def acquire(self, refuse: bool = True) -> bool:
        """Take the lock; when another live process holds it, raise (``refuse``) or return False."""
        try:
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FpgagenError(f"cannot create the folder for the build directory ({exc.strerror})",
                               str(self.out_dir), "pass a writable -o/--out path") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FpgagenError(f"cannot create the build lock ({exc.strerror})", str(self.path),
                                   "pass a writable -o/--out path") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                if not refuse:
                    return False
                raise FpgagenError(f"another fpgagen build (pid {owner}) is writing this build directory",
                                   str(self.out_dir), "wait for it to finish, or build into another -o directory")\
                    from None
            # The holder before us may have unlinked the file after we opened it: only the file at the path counts.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        recover(self.out_dir)
        return True

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def recover(out_dir: Path) -> None:
    """Under the lock: put back a previous build that a killed swap left aside, delete leftover temporaries."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        return
    olds = sorted(out_dir.parent.glob(f".{out_dir.name}.old-*"))
    if not out_dir.exists() and olds:
        os.rename(olds[0], out_dir)
        olds = olds[1:]
    for stale in (*olds, *out_dir.parent.glob(f".{out_dir.name}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)


def temporary_dir(out_dir: Path) -> Path:
    tmp = _sibling(Path(out_dir), f"tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


REGENERATED = {"cycles.png", "resources.png"}  # written by 'fpgagen report' from files every build rewrites


def swap_in(tmp: Path, out_dir: Path, pause=lambda where: None, log=lambda msg: None) -> None:
    """Make ``tmp`` the build directory ``out_dir``, atomically where the filesystem allows, and retire the old one.
    Killed at any instant, ``out_dir`` is either the old build or the new one (or, without an atomic exchange,
    absent with the old one at ``.out.old-<pid>``, which the next lock holder puts back).

    The old directory is deleted unless it holds what a build does not write (a bitstream's deploy/, vivado/,
    logs/ beyond the build's own fold_milp.log, the user's own files): then it is kept whole as ``out.previous``
    (replacing an earlier one), since nothing a user has may be lost and none of it may survive, stale, inside
    the new build."""
    tmp, out_dir = Path(tmp), Path(out_dir)
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if _exchange(tmp, out_dir):  # tmp now holds the old build
        pause("swapped")
        _retire(tmp, out_dir, log)
        return
    old = _sibling(out_dir, f"old-{os.getpid()}")
    os.rename(out_dir, old)
    pause("swapped")
    os.rename(tmp, out_dir)
    _retire(old, out_dir, log)


def _retire(old: Path, out_dir: Path, log) -> None:
    extra = sorted({p.name for p in old.iterdir()} - {p.name for p in out_dir.iterdir()} - REGENERATED)
    if (old / "logs").is_dir() and (out_dir / "logs").is_dir():  # every build writes logs/fold_milp.log; synth more
        extra += sorted(f"logs/{p.name}" for p in (old / "logs").iterdir() if not (out_dir / "logs" / p.name).exists())
    if not extra:
        shutil.rmtree(old, ignore_errors=True)
        return
    previous = out_dir.parent / f"{out_dir.name}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(old, previous)
    log(f"  the previous build held {', '.join(extra)}, which this build does not write: kept it whole in "
        f"{previous}")


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): swap two paths in one atomic step (Linux 3.15+); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover_unlocked(out_dir: Path) -> None:
    """``recover`` when no build holds the directory (for ``load``); does nothing while one does."""
    out_dir = Path(out_dir)
    if not out_dir.exists() and out_dir.parent.is_dir() and any(out_dir.parent.glob(f".{out_dir.name}.old-*")):
        lock = BuildLock(out_dir)
        if lock.acquire(refuse=False):
            lock.release()


def write_atomic(path: Path, data: str | bytes | None = None, writer=None) -> Path:
    """Replace the file ``path`` all at once: the new content goes to a hidden sibling, is flushed to disk and then
    renamed over ``path`` (rename is atomic on one filesystem), so a reader or a crash sees the old file or the
    new one, never half of either. Give ``data`` (text or bytes) or ``writer(tmp_path)`` that writes the file."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        if writer is not None:
            writer(tmp)
        else:
            with open(tmp, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
