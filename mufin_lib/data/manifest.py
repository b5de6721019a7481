"""The dataset registry (data_manifest/*.yaml): which files a dataset has, their sizes and SHA-256
checksums where known, and how to obtain them. `mufin data verify NAME` checks a copy against it.

A manifest:
    name, description, synthetic (bool), obtain (text), location (where the kit looks by default:
    `shared:<path>`, `cache:synthetic` or a path relative to the project root),
    generator (synthetic only: SyntheticParams), files: [{path, size, sha256}]  (null = unknown),
    propensity: {A, B} (PSP's constants for this data: pyxclib's Amazon 0.6 / 2.6 or other 0.55 / 1.5)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pooch
import yaml

from ..paths import MANIFEST_DIR, SHARED_DIR, atomic_write, resolve


@dataclass
class FileCheck:
    path: str
    status: str  # ok | missing | size_mismatch | checksum_mismatch | unknown_checksum
    detail: str = ""


def list_datasets() -> list[tuple[str, str]]:
    out = []
    for p in sorted(MANIFEST_DIR.glob("*.yaml")):
        m = yaml.safe_load(p.read_text())
        out.append((p.stem, " ".join(str(m.get("description", "")).split())[:90]))
    return out


def load_manifest(name: str) -> dict:
    p = MANIFEST_DIR / f"{name}.yaml"
    if not p.exists():
        raise FileNotFoundError(f"no dataset '{name}' in {MANIFEST_DIR} (known: {', '.join(n for n, _ in list_datasets())})")
    return yaml.safe_load(p.read_text())


def propensity_of(name: str) -> tuple[float, float]:
    """PSP's (A, B) as data set `name`'s manifest states them."""
    m = load_manifest(name)
    pr = m.get("propensity")
    if not isinstance(pr, dict) or not all(isinstance(pr.get(k), (int, float)) for k in ("A", "B")):
        raise ValueError(f"{MANIFEST_DIR / (name + '.yaml')}: 'propensity' must be a mapping with numbers A and B, "
                         f"got {pr!r}")
    return float(pr["A"]), float(pr["B"])


def default_location(m: dict) -> Path:
    loc = m.get("location", "")
    if loc.startswith("shared:"):
        return SHARED_DIR / loc.split(":", 1)[1]
    if loc == "cache:synthetic":
        from .prepare import get_synthetic
        g = m["generator"]
        return get_synthetic(g["n_products"], g["seed"], g.get("with_images", True), g.get("test_fraction", 0.3),
                             g.get("relation", "complementary"))
    return resolve(loc)


def verify(m: dict, root: Path) -> list[FileCheck]:
    checks = []
    for f in m.get("files", []):
        p = Path(root) / f["path"]
        if not p.exists():
            checks.append(FileCheck(f["path"], "missing", f"expected at {p}"))
            continue
        size = p.stat().st_size
        if f.get("size") is not None and size != f["size"]:
            checks.append(FileCheck(f["path"], "size_mismatch", f"{size} bytes, expected {f['size']}"))
            continue
        if f.get("sha256"):
            h = pooch.file_hash(str(p), alg="sha256")
            checks.append(FileCheck(f["path"], "ok" if h == f["sha256"] else "checksum_mismatch",
                                    "" if h == f["sha256"] else f"sha256 {h[:12]}..., expected {f['sha256'][:12]}..."))
        else:
            checks.append(FileCheck(f["path"], "unknown_checksum", "present; no checksum is known for it"))
    if any(c.status == "unknown_checksum" for c in checks):
        checks.append(check_contents(Path(root), m.get("expected") or {}))
    return checks


def check_contents(root: Path, expected: dict | None = None) -> FileCheck:
    """Where checksums are unknown (a release we never had), the contents instead: the XC layout parsed (every
    label:value, filter pair and UID line checked, as stage 01 reads it) and every img.bin line decoded."""
    from .images import ImageStore
    from .xc import XCFormatError, read_xc

    if not (root / "raw_data").is_dir():
        return FileCheck("(contents)", "unchecked", "not an XC layout (no raw_data/): presence only")
    try:
        ds = read_xc(root)
    except (XCFormatError, FileNotFoundError, ValueError) as e:
        return FileCheck("(contents)", "unreadable", str(e))
    want = (expected or {}).get("num_labels")
    if want is not None and ds.num_labels != want:
        return FileCheck("(contents)", "unreadable", f"{ds.num_labels:,} labels, expected {want:,}")
    store = ImageStore.from_dir(root)
    store.validate()
    rep = store.report.as_dict()
    bad = rep["corrupt"]
    return FileCheck("(contents)", "ok" if not bad else "corrupt_images",
                     f"{len(ds.uids['train'])} train, {len(ds.uids['test'])} test points, {ds.num_labels} labels; "
                     f"img.bin lines {rep['lines']}, corrupt {bad}")


def verify_command(name: str, path: str | None = None) -> int:
    try:
        m = load_manifest(name)
        root = resolve(path) if path else default_location(m)
    except (FileNotFoundError, ValueError) as e:
        print(f"mufin data verify: error: {e}")
        return 2
    checks = verify(m, root)
    print(f"{name}: {root}")
    for c in checks:
        print(f"  {c.status:18s} {c.path}  {c.detail}")
    bad = [c for c in checks if c.status in ("missing", "size_mismatch", "checksum_mismatch", "unreadable",
                                             "corrupt_images")]
    print(f"{len(checks) - len(bad)} ok or unchecked, {len(bad)} bad")
    if bad and m.get("obtain"):
        print("how to obtain:\n  " + "\n  ".join(str(m["obtain"]).strip().splitlines()))
    return 1 if bad else 0


def describe_files(root: Path) -> list[dict]:
    """Sizes and checksums of every file under root (to write a manifest)."""
    root = Path(root)
    return [{"path": str(p.relative_to(root)), "size": p.stat().st_size, "sha256": pooch.file_hash(str(p), alg="sha256")}
            for p in sorted(root.rglob("*")) if p.is_file()]


def write_manifest(name: str, m: dict) -> Path:
    path = MANIFEST_DIR / f"{name}.yaml"
    with atomic_write(path) as f:
        yaml.safe_dump(m, f, sort_keys=False, width=110)
    return path
