"""Product images: the release's img.bin files, folders of image files, and URLs.

img.bin: one `UID<TAB>base64(JPEG)` line per image; the release's images are 128x128 RGB, an
aspect-preserving thumbnail padded white. A UID may own several lines: the first `keep_top_k` are kept.
Corrupt base64 or JPEG lines are skipped and counted (with line numbers), never fatal.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import socket
import stat
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError
from ..progress import tqdm

from ..paths import CACHE_DIR, atomic_path, atomic_write

THUMB = 128
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def thumbnail(img: Image.Image, size: int = THUMB) -> Image.Image:
    """Aspect-preserving thumbnail, centred on a white size x size square (as the release)."""
    img = img.convert("RGB")
    img.thumbnail((size, size), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return canvas


def encode_b64(img: Image.Image, quality: int = 90) -> str:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# what decoding an image may raise: each is one counted image problem (a 20000 x 20000 PNG of 90 KB included)
DECODE_ERRORS = (binascii.Error, ValueError, UnidentifiedImageError, OSError, Image.DecompressionBombError)


def decode_b64(s: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(s, validate=True)))
    img.load()
    return img.convert("RGB")


def write_img_bin(path: str | Path, items: Iterable[tuple[str, Image.Image]], quality: int = 90) -> int:
    n = 0
    with atomic_write(path) as f:
        for uid, img in items:
            f.write(f"{uid}\t{encode_b64(thumbnail(img) if img.size != (THUMB, THUMB) else img, quality)}\n")
            n += 1
    return n


@dataclass
class ImageReadReport:
    """Every line of the img.bin files, accounted for: kept, beyond the top k of its UID, repeated in a later file
    (train/test/label files repeat UIDs; the first file wins), corrupt (with file:line and reason), or for a UID
    that is not a product of the dataset (`unknown_uid`, once `ImageStore.drop_unknown` has run)."""
    lines: int = 0
    kept: int = 0
    beyond_top_k: int = 0
    repeated_in_other_file: int = 0
    unknown_uid: int = 0
    corrupt: list = field(default_factory=list)  # (file:line, reason)

    def as_dict(self):
        accounted = self.kept + self.beyond_top_k + self.repeated_in_other_file + self.unknown_uid + len(self.corrupt)
        return {"lines": self.lines, "kept": self.kept, "beyond_top_k": self.beyond_top_k,
                "repeated_in_other_file": self.repeated_in_other_file, "unknown_uid": self.unknown_uid,
                "corrupt": len(self.corrupt), "corrupt_lines": self.corrupt[:100], "accounted_for": accounted}


def _why(e: Exception) -> str:
    if isinstance(e, binascii.Error):
        return f"not base64 ({e})"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (the bytes decode to no known image format)"
    if isinstance(e, Image.DecompressionBombError):
        return f"too_many_pixels (over {pixel_limit():,}: max_image_pixels)"
    return f"{type(e).__name__}: {e}"


class ImageStore:
    """UID -> images, from img.bin files. Only byte offsets are held in memory; images are decoded on
    demand, so a catalogue of millions of images opens in seconds. `validate()` decodes every line
    once and drops the corrupt ones (counted in `report`)."""

    def __init__(self, files: list[Path], keep_top_k: int = 15):
        self.files = [Path(f) for f in files]
        self.keep_top_k = keep_top_k
        self.index: dict[str, list[tuple[int, int, int]]] = {}  # uid -> [(file_no, offset, line_no)]
        owner: dict[str, int] = {}  # a UID's images come from the first file that has it (train/test/label repeat them)
        self.report = ImageReadReport()
        for fno, path in enumerate(self.files):
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing (expected `UID<TAB>base64 JPEG` lines)")
            with open(path, "rb") as f:
                off = 0
                for line_no, line in enumerate(f, 1):
                    self.report.lines += 1
                    tab = line.find(b"\t")
                    if tab <= 0:
                        self.report.corrupt.append((f"{path.name}:{line_no}", "no `UID<TAB>` prefix"))
                    else:
                        uid = line[:tab].decode("utf-8", "replace")
                        lst = self.index.setdefault(uid, [])
                        if owner.setdefault(uid, fno) != fno:
                            self.report.repeated_in_other_file += 1
                        elif len(lst) < keep_top_k:
                            lst.append((fno, off + tab + 1, line_no))
                        else:
                            self.report.beyond_top_k += 1
                    off += len(line)
        self.report.kept = sum(len(v) for v in self.index.values())
        self._handles = {}

    @classmethod
    def from_dir(cls, root: str | Path, splits=("train", "test", "label"), keep_top_k: int = 15) -> "ImageStore":
        img_dir = Path(root) / "images"
        files = [img_dir / f"{s}.img.bin" for s in splits if (img_dir / f"{s}.img.bin").exists()]
        if not files and (img_dir / "img.bin").exists():
            files = [img_dir / "img.bin"]
        return cls(files, keep_top_k)

    def _line(self, fno: int, off: int) -> bytes:
        f = self._handles.get(fno) or self._handles.setdefault(fno, open(self.files[fno], "rb"))
        f.seek(off)
        return f.readline().strip()

    def __contains__(self, uid: str) -> bool:
        return uid in self.index

    def __len__(self) -> int:
        return len(self.index)

    def count(self, uid: str) -> int:
        return len(self.index.get(uid, ()))

    def get(self, uid: str) -> list[Image.Image]:
        out = []
        for fno, off, line_no in self.index.get(uid, ()):
            try:
                out.append(decode_b64(self._line(fno, off).decode("ascii")))
            except DECODE_ERRORS as e:
                self.report.corrupt.append((f"{self.files[fno].name}:{line_no}", _why(e)))
        return out

    def drop_unknown(self, uids) -> ImageReadReport:
        """Leave out the images of UIDs that are not products of the dataset (counted as unknown_uid)."""
        known = set(uids)
        for uid in [u for u in self.index if u not in known]:
            self.report.unknown_uid += len(self.index.pop(uid))
        self.report.kept = sum(len(v) for v in self.index.values())
        return self.report

    def validate(self) -> ImageReadReport:
        """Decode every kept image once; a corrupt one is dropped and counted with its file:line and reason."""
        for uid in list(self.index):
            good = []
            for fno, off, line_no in self.index[uid]:
                try:
                    decode_b64(self._line(fno, off).decode("ascii"))
                    good.append((fno, off, line_no))
                except DECODE_ERRORS as e:
                    self.report.corrupt.append((f"{self.files[fno].name}:{line_no}", _why(e)))
            if good:
                self.index[uid] = good
            else:
                del self.index[uid]
        self.report.kept = sum(len(v) for v in self.index.values())
        return self.report


# ---- URLs -------------------------------------------------------------------------------------------

class Downloader:
    """Fetch image URLs into an on-disk cache (one file per URL, by SHA-1), with timeout and retries.
    Resumable: a cached URL is never fetched again, and failures are recorded in `failures.json` with
    their reason. When the network is unreachable it says so once and stops trying."""

    def __init__(self, cache_dir: str | Path = CACHE_DIR / "images", timeout: float = 10.0, retries: int = 2,
                 backoff: float = 0.5, workers: int = 8):
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.timeout, self.retries, self.backoff, self.workers = timeout, retries, backoff, workers
        self.offline = False
        self.stats = Counter()

    def path_for(self, url: str) -> Path:
        h = hashlib.sha1(url.encode()).hexdigest()
        return self.cache_dir / h[:2] / f"{h}.img"

    def fetch(self, url: str) -> tuple[Path | None, str]:
        dst = self.path_for(url)
        if dst.exists():
            return dst, "cached"
        if self.offline:
            return None, "offline"
        last = "error"
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout) as r:
                    data = r.read()
                try:
                    Image.open(io.BytesIO(data)).verify()
                except Exception:
                    return None, "not_an_image"  # a real answer: retrying will not help
                with atomic_path(dst) as tmp:
                    tmp.write_bytes(data)
                return dst, "downloaded"
            except urllib.error.HTTPError as e:
                last = f"http_{e.code}"
                if 400 <= e.code < 500:
                    break
            except (socket.timeout, TimeoutError):
                last = "timeout"
            except urllib.error.URLError as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    last = "timeout"
                elif isinstance(reason, (socket.gaierror, ConnectionRefusedError, OSError)) and _looks_offline(reason):
                    last = "unreachable"
                else:
                    last = "url_error"
            except OSError:
                last = "os_error"
            if attempt < self.retries:
                time.sleep(self.backoff * (2 ** attempt))
        return None, last

    def fetch_all(self, urls: list[str]) -> dict[str, tuple[Path | None, str]]:
        results: dict[str, tuple[Path | None, str]] = {}
        unreachable_streak = 0
        with ThreadPoolExecutor(self.workers) as ex, tqdm(total=len(urls), desc="images", unit=" url", mininterval=2) as bar:
            for url, res in zip(urls, ex.map(self.fetch, urls)):
                results[url] = res
                self.stats[res[1]] += 1
                bar.update()
                unreachable_streak = unreachable_streak + 1 if res[1] == "unreachable" else 0
                if unreachable_streak >= 20 and not self.offline:
                    self.offline = True
                    print("images: the network looks unreachable (20 URLs in a row failed to connect); "
                          "skipping the remaining downloads. Cached images are still used; run again online to resume.")
        return results


def _looks_offline(reason) -> bool:
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError, ConnectionResetError, OSError))


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def local_image_path(ref: str, base: str | Path) -> Path:
    """A local image reference as a path: `file://...`, an absolute path, or a path relative to `base` (the folder of
    the metadata file that names it)."""
    if ref.startswith("file://"):
        from urllib.parse import unquote, urlparse
        return Path(unquote(urlparse(ref).path))
    p = Path(ref)
    return p if p.is_absolute() else Path(base) / p


def _read_local(path: Path) -> tuple[Path | None, str]:
    import errno

    try:
        st = path.stat()
    except OSError as e:
        return None, "symlink_loop" if e.errno == errno.ELOOP else "missing_file"
    if not stat.S_ISREG(st.st_mode):
        return None, "missing_file"
    try:
        with Image.open(path) as im:
            im.verify()
    except Image.DecompressionBombError:
        return None, f"too_many_pixels (over {pixel_limit():,}: max_image_pixels)"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None, "not_an_image"
    return path, "read_local"


def pixel_limit() -> int:
    """The most pixels an image may have; more is one image problem, "too_many_pixels", never a crash (Pillow refuses
    an image of over twice its MAX_IMAGE_PIXELS as a decompression bomb)."""
    return 2 * int(Image.MAX_IMAGE_PIXELS or 0)


def set_pixel_limit(n: int) -> None:
    """Stage 01's `max_image_pixels`: images of more pixels are refused and counted."""
    Image.MAX_IMAGE_PIXELS = int(n) // 2


def build_img_bin(root: str | Path, downloader: Downloader | None = None, keep_top_k: int = 15,
                  splits=("train", "test", "label")) -> dict:
    """Build images/{split}.img.bin for an XC dataset directory from its img.urls.txt, whose references are URLs
    (downloaded into the cache) or local files (absolute, or `file://`; curation makes relative paths absolute).
    Every reference is accounted for: read, or a failure with its reason (missing_file, not_an_image, http_404,
    timeout, offline, ...). The report is returned and written to images/build_report.json."""
    from .xc import _read_raw, read_urls

    root = Path(root)
    urls = read_urls(root / "img.urls.txt")
    wanted = sorted({u for lst in urls.values() for u in lst[:keep_top_k]})
    remote = [u for u in wanted if is_url(u)]
    results: dict[str, tuple[Path | None, str]] = {}
    outcomes = Counter()
    if remote:
        downloader = downloader or Downloader()
        results.update(downloader.fetch_all(remote))
        outcomes.update(downloader.stats)
    for u in tqdm([u for u in wanted if not is_url(u)], desc="local images", unit=" file", mininterval=2):
        results[u] = _read_local(local_image_path(u, root))
        outcomes[results[u][1]] += 1
    failures = {u: why for u, (p, why) in results.items() if p is None}
    report = {"references": len(wanted), "remote": len(remote), "local": len(wanted) - len(remote),
              "beyond_top_k": sum(max(len(lst) - keep_top_k, 0) for lst in urls.values()),
              "outcomes": dict(outcomes), "failures": failures, "written": {}}
    for split in splits:
        uids, _ = _read_raw(root / "raw_data" / f"{split}.raw.txt")

        def items(uids=uids):
            for uid in uids:
                for u in urls.get(uid, [])[:keep_top_k]:
                    p = results.get(u, (None, ""))[0]
                    if p is None:
                        continue
                    try:
                        with Image.open(p) as im:
                            yield uid, thumbnail(im)
                    except Exception as e:  # verified, yet it fails to decode in full (a truncated JPEG)
                        failures[u] = f"not_an_image ({type(e).__name__})"
        report["written"][split] = write_img_bin(root / "images" / f"{split}.img.bin", items())
    report["failed"] = len(failures)
    report["failures_by_reason"] = dict(Counter(why.split(" ")[0] for why in failures.values()))
    with atomic_write(root / "images" / "build_report.json") as f:
        json.dump(report, f, indent=2)
    return report

