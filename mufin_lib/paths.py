"""Absolute paths, all derived from the project root (never the current directory)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Tests point these at temporary folders.
NOTEBOOKS_DIR = Path(os.environ.get("MUFIN_NOTEBOOKS_DIR", PROJECT_ROOT / "notebooks")).resolve()
PRESETS_DIR = PROJECT_ROOT / "presets"
MANIFEST_DIR = PROJECT_ROOT / "data_manifest"
FIGURES_DIR = Path(os.environ.get("MUFIN_FIGURES_DIR", PROJECT_ROOT / "figures")).resolve()
# Overridable so that a user can put bulky things on another disk.
RUNS_DIR = Path(os.environ.get("MUFIN_RUNS_DIR", PROJECT_ROOT / "runs")).resolve()
CACHE_DIR = Path(os.environ.get("MUFIN_CACHE_DIR", PROJECT_ROOT / "cache")).resolve()
# ../shared beside the checkout holds the real Amazon samples and the paper's tables.
SHARED_DIR = Path(os.environ.get("MUFIN_SHARED_DIR", PROJECT_ROOT.parent / "shared")).resolve()
AMAZON2018_DIR = SHARED_DIR / "data" / "amazon2018"
HM_DIR = SHARED_DIR / "data" / "hm"
PAPER_TABLES_DIR = SHARED_DIR / "paper_tables"


def process_alive(pid) -> bool:
    """Whether a process of this pid runs (the holder of a lock, the writer of a .partial folder)."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def resolve(path: str | os.PathLike) -> Path:
    """A user path: absolute as given, relative ones are taken from the project root."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kw):
    """Write to a temporary file beside `path`, then rename: a killed run never leaves a
    half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_path(path: str | os.PathLike):
    """For writers that want a file name (np.save, faiss, torch.save): yields a temporary path,
    renamed to `path` when the block succeeds."""
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp{self.path.suffix}")
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
        return False
