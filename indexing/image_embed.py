"""Embedding image files in batches: decode a batch (JPEG, PNG, DICOM), encode it, go on.

Only one batch of decoded images is held in memory. A file that cannot be decoded raises
:class:`~clinrag.errors.InputError` naming it (readers have checked every file before, so
this means it changed or vanished since).

>>> import numpy as np
>>> class Fake:
...     dim = 2
...     def encode_images(self, images, *, batch_size=32, progress=None):
...         return np.ones((len(images), 2), np.float32)
>>> embed_image_files([], Fake()).shape
(0, 2)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clinrag.data.images import load_image

log = logging.getLogger(__name__)


def embed_image_files(paths: Sequence[str], encoder: Any, *, batch_size: int = 32,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``(len(paths), encoder.dim)`` float32 embeddings of the image files, in order."""
    out = [np.zeros((0, encoder.dim), np.float32)]
    for start in range(0, len(paths), batch_size):
        batch = [load_image(p) for p in paths[start:start + batch_size]]
        out.append(np.asarray(encoder.encode_images(batch, batch_size=batch_size), np.float32))
        if progress is not None:
            progress(min(start + batch_size, len(paths)))
    log.debug("embedded %d images", len(paths))
    return np.concatenate(out)


__all__ = ["embed_image_files"]
