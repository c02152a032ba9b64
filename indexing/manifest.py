"""The index manifest: one JSON file that says what an index directory holds.

The manifest is the commit point of every write. It names the LanceDB table
versions and the BM25 directory of the last committed state; anything written
after it (table versions, temp directories) is invisible until a new manifest
replaces it with an atomic rename.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> m = Manifest.new(IndexConfig())
>>> write_manifest(d, m)
>>> read_manifest(d).format_version == FORMAT_VERSION
True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from clinrag.config import IndexConfig
from clinrag.errors import IndexFormatError, IndexNotFoundError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_REQUIRED = ("format", "format_version", "clinrag_version", "config", "models", "counts", "tables")


def clinrag_version() -> str:
    try:
        from importlib.metadata import version

        return version("clinrag")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0.0.0+unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """What an index holds. ``tables`` maps table name to its committed LanceDB version."""

    format_version: int
    clinrag_version: str
    created: str
    updated: str
    config: IndexConfig
    models: Mapping[str, str | None] = field(default_factory=dict)
    counts: Mapping[str, int] = field(default_factory=dict)
    tables: Mapping[str, int] = field(default_factory=dict)
    bm25_dir: str | None = None
    mv_dir: str | None = None
    codec_dir: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)
    last_build: Mapping[str, Any] = field(default_factory=dict)
    memory_dir: str | None = None

    @classmethod
    def new(cls, config: IndexConfig, models: Mapping[str, str | None] | None = None) -> Manifest:
        now = _now()
        return cls(FORMAT_VERSION, clinrag_version(), now, now, config, dict(models or {}))

    def committed(self, **changes: Any) -> Manifest:
        """A copy for a new commit: ``updated`` is now, other fields as given."""
        return replace(self, updated=_now(), clinrag_version=clinrag_version(), **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "clinrag-index",
            "format_version": self.format_version,
            "clinrag_version": self.clinrag_version,
            "created": self.created,
            "updated": self.updated,
            "config": self.config.to_dict(),
            "models": dict(self.models),
            "counts": dict(self.counts),
            "tables": dict(self.tables),
            "bm25_dir": self.bm25_dir,
            "mv_dir": self.mv_dir,
            "codec_dir": self.codec_dir,
            "checksums": dict(self.checksums),
            "last_build": dict(self.last_build),
            "memory_dir": self.memory_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = MANIFEST) -> Manifest:
        missing = [k for k in _REQUIRED if k not in data]
        if missing or data.get("format") != "clinrag-index":
            raise IndexFormatError(
                f"{where} is not a clinrag index manifest (missing {missing or ['format']}). "
                "Point at a directory made by `clinrag index`, or rebuild it."
            )
        version = data["format_version"]
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{where} has index format version {version}, but this clinrag reads version "
                f"{FORMAT_VERSION}. Rebuild the index with this clinrag "
                f"(`clinrag index ... --overwrite`) or use clinrag {data.get('clinrag_version')}."
            )
        return cls(
            format_version=version,
            clinrag_version=str(data["clinrag_version"]),
            created=str(data.get("created", "")),
            updated=str(data.get("updated", "")),
            config=IndexConfig.from_dict(dict(data["config"])),
            models=dict(data["models"]),
            counts={k: int(v) for k, v in data["counts"].items()},
            tables={k: int(v) for k, v in data["tables"].items()},
            bm25_dir=data.get("bm25_dir"),
            mv_dir=data.get("mv_dir"),
            codec_dir=data.get("codec_dir"),
            checksums=dict(data.get("checksums", {})),
            last_build=dict(data.get("last_build", {})),
            memory_dir=data.get("memory_dir"),
        )


def read_manifest(index_dir: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``index_dir/manifest.json``."""
    path = Path(index_dir) / MANIFEST
    if not Path(index_dir).exists():
        raise IndexNotFoundError(f"no index at {index_dir}: the directory does not exist. "
                                 "Build one with `clinrag index SOURCE --index DIR`.")
    if not path.exists():
        raise IndexNotFoundError(f"no index at {index_dir}: {MANIFEST} is missing. "
                                 "Build one with `clinrag index SOURCE --index DIR`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path} cannot be read as JSON ({exc}); the index is damaged. "
                               "Rebuild it with `clinrag index ... --overwrite`.") from exc
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path} is not a JSON object; rebuild the index.")
    return Manifest.from_dict(data, where=str(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file, fsync and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(index_dir: str | os.PathLike[str], manifest: Manifest) -> None:
    """Commit ``manifest`` atomically: readers see the old or the new one, never a mix."""
    atomic_write_text(Path(index_dir) / MANIFEST, json.dumps(manifest.to_dict(), indent=2) + "\n")


def dir_checksums(directory: Path, base: Path) -> dict[str, str]:
    """sha256 of each file under ``directory``, keyed by path relative to ``base``."""
    out: dict[str, str] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[str(p.relative_to(base))] = h.hexdigest()
    return out


__all__ = ["FORMAT_VERSION", "MANIFEST", "Manifest", "atomic_write_text", "dir_checksums",
           "read_manifest", "write_manifest"]
