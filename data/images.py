"""Decoding image files (JPEG, PNG, other Pillow formats, DICOM) to RGB pixels for encoders and display.

A truncated or corrupt file raises :class:`~clinrag.errors.InputError` naming it; nothing is
decoded leniently (Pillow's ``LOAD_TRUNCATED_IMAGES`` is not used).

>>> import tempfile, pathlib
>>> from PIL import Image
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.png"
>>> Image.new("L", (4, 3), 128).save(p)
>>> im = load_image(p); im.mode, im.size
('RGB', (4, 3))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinrag.errors import InputError, MissingDependencyError

_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"BM", "bmp"))


def sniff(head: bytes) -> str | None:
    """The image format named by a file's first bytes (at least 132 for DICOM), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("Pillow", "images", "reading images") from exc
    return Image


def file_kind(path: Path) -> str:
    """``dicom``, ``jpeg``, ``png``...; InputError when the file is missing or not an image."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except FileNotFoundError:
        raise InputError("image file not found", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read image: {exc.strerror or exc}", path=str(path)) from None
    kind = sniff(head)
    if kind is None:
        raise InputError("not an image (unknown file signature)", path=str(path))
    return kind


def load_image(path: str | Path) -> Any:
    """The image at ``path`` as an RGB ``PIL.Image`` (DICOM: windowed 8-bit pixels, see readers.dicom)."""
    path = Path(path)
    Image = _pil()
    if file_kind(path) == "dicom":
        from clinrag.data.readers.dicom import dicom_pixels, read_dataset

        return Image.fromarray(dicom_pixels(read_dataset(path), path)).convert("RGB")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"corrupt or truncated image: {exc}", path=str(path)) from None


__all__ = ["file_kind", "load_image", "sniff"]
