"""``kexue data get NAME``: fetch a data set from its public source into the user cache.

Every file that the repository does not bundle (the research-use sets, and the Tang-poem
files beyond the bundled ten) has an entry in ``sources.json``: the upstream URL pinned to
a commit, the size and the SHA-256 of the exact bytes. A download streams into a temporary
file beside its destination, is checked against size and checksum, and only then renamed
into place, so an interrupted or corrupted download never leaves a file a reader would
trust. ``kgclue/knowledge_from_answers.txt`` has no upstream copy: it is derived from the
KgCLUE answers (see :func:`derive_kgclue_kb`) and checked against its recorded checksum.

A mirror with the same layout as a data root can stand in for the upstream hosts
(``base_url=`` or ``$KEXUE_DATA_MIRROR``): file ``rel`` is then fetched from
``<base_url>/<rel>``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tqdm.auto import tqdm

from kexue.data.registry import DATASETS, _candidates, data_roots, open_text, user_data_dir

__all__ = ["DownloadError", "Source", "derive_kgclue_kb", "get", "sources"]

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched or did not match its recorded checksum."""


@dataclass(frozen=True)
class Source:
    """Where one file comes from: ``url`` (None for derived files), size and SHA-256."""

    rel: str
    sha256: str
    size: int
    url: str | None = None
    derived: str | None = None


@cache
def sources() -> dict[str, Source]:
    """Relative path -> :class:`Source` for every file that is not bundled."""
    raw = json.loads((Path(__file__).parent / "sources.json").read_text(encoding="utf-8"))
    return {rel: Source(rel, **entry) for rel, entry in raw.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _present(rel: str) -> bool:
    return any((root / cand).is_file() for root in data_roots() for cand in _candidates(rel))


def _fetch(url: str, source: Source, dest: Path, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``dest`` through a temporary file; verify size and SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp, \
                tqdm(total=source.size, unit="B", unit_scale=True, desc=source.rel,
                     disable=not progress, leave=False) as bar:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                h.update(block)
                size += len(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if size != source.size:
            raise DownloadError(f"{url}: got {size} bytes, expected {source.size} "
                                "(interrupted download?)")
        if h.hexdigest() != source.sha256:
            raise DownloadError(f"{url}: SHA-256 {h.hexdigest()} does not match the recorded "
                                f"{source.sha256}; the file was not saved")
        os.replace(tmp, dest)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', None) or e!r} after {size} of "
                            f"{source.size} bytes; nothing was saved") from e
    finally:
        tmp.unlink(missing_ok=True)


def derive_kgclue_kb() -> str:
    """The mini knowledge base derived from KgCLUE's gold answers (shared/data README §9).

    For each record of ``train.json``, ``dev.json``, ``test_public.json`` in that order, split
    ``answer`` on ``" ||| "`` into (head, relation, tail) and keep the first occurrence of
    each distinct triple, written as ``head\\trelation\\ttail\\n``.
    """
    seen: dict[tuple[str, ...], None] = {}
    for split in ("train", "dev", "test_public"):
        with open_text("kgclue", split) as f:
            for line in f:
                if line.strip():
                    triple = tuple(json.loads(line)["answer"].split(" ||| "))
                    seen.setdefault(triple, None)
    return "".join("\t".join(t) + "\n" for t in seen)


_DERIVE: dict[str, Callable[[], str]] = {"kgclue-kb": derive_kgclue_kb}


def _derive(source: Source, dest: Path) -> None:
    text = _DERIVE[source.derived]()  # type: ignore[index]
    data = text.encode("utf-8")
    if hashlib.sha256(data).hexdigest() != source.sha256:
        raise DownloadError(f"derived {source.rel} does not match its recorded SHA-256")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp_name, dest)


def get(name: str, *, root: str | os.PathLike | None = None, base_url: str | None = None,
        progress: bool = True, timeout: float = 60.0, log: Callable[[str], None] = print
        ) -> Path:
    """Download data set ``name`` into ``root`` (default :func:`user_data_dir`).

    Files already present under any data root are skipped; the others are fetched from
    their pinned upstream URL (or ``<base_url>/<rel>``, default ``$KEXUE_DATA_MIRROR``),
    verified and renamed into place. Returns the root. Raises ``ValueError`` for an
    unknown or fully bundled set and :class:`DownloadError` naming the URL when a file
    cannot be fetched or fails its checksum.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(DATASETS)}")
    ds = DATASETS[name]
    wanted = [rel for rel in ds.files.values() if rel in sources()]
    if not wanted:
        raise ValueError(f"data set {name!r} is bundled with kexue; nothing to download")
    dest_root = Path(root) if root is not None else user_data_dir()
    base_url = base_url or os.environ.get("KEXUE_DATA_MIRROR") or None
    log(f"{name}: {ds.licence} (source: {ds.source})")
    derived = []
    for rel in wanted:
        source = sources()[rel]
        if _present(rel) or (dest_root / rel).is_file():
            continue
        if source.derived:
            derived.append(source)
            continue
        url = f"{base_url.rstrip('/')}/{urllib.parse.quote(rel)}" if base_url else source.url
        log(f"  fetching {rel} ({source.size / 1e6:.1f} MB)")
        _fetch(url, source, dest_root / rel, progress, timeout)  # type: ignore[arg-type]
    for source in derived:
        log(f"  deriving {source.rel}")
        _derive(source, dest_root / source.rel)
    return dest_root
