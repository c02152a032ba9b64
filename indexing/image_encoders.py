"""Image-text encoders (CLIP-style) behind one Protocol: open_clip models and transformers CLIP models.

An image model is named by a spec string (stored in the index config as ``image_model``):

- ``hf-hub:ORG/REPO``: an open_clip model from the Hugging Face Hub (e.g.
  ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``); loaded from the local
  Hugging Face cache when offline;
- ``local-dir:PATH`` or a folder holding ``open_clip_config.json``: an open_clip model saved there;
- ``ARCH@PRETRAINED``: an open_clip architecture (built in, or registered with
  ``open_clip.add_model_config``) with a pretrained tag or a checkpoint file (``ViT-B-16@/ckpt.pt``);
  ``ARCH@random`` gives random weights (seed 0; for benchmarks and tests only);
- a folder holding a transformers ``config.json`` of a CLIP model (``save_pretrained``), or
  ``hf:ORG/REPO`` for a transformers CLIP model in the Hugging Face cache.

Every encoder returns L2-normalised float32 rows, so a dot product is the cosine similarity.
Models run on CUDA when available (else CPU), in batches, with an optional progress callback.

>>> parse_spec("ViT-B-32@random"), parse_spec("hf-hub:org/model")[0]
(('open_clip', 'ViT-B-32', 'random'), 'open_clip')
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clinrag.errors import ConfigError, MissingDependencyError, ModelLoadError

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@runtime_checkable
class ImageEncoder(Protocol):
    """Embeds images and texts into one space (rows L2-normalised, float32, ``dim`` columns)."""

    name: str
    dim: int
    device: str

    def encode_images(self, images: Sequence[Any], *, batch_size: int = 32,
                      progress: Progress | None = None) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray: ...


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _normalise(x: Any) -> np.ndarray:
    arr = x.detach().float().cpu().numpy().astype(np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


class _Batched:
    """Batching and no-grad inference shared by the encoders."""

    name: str
    dim: int
    device: str

    def _images(self, pixel_batch: list[Any]) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _texts(self, texts: list[str]) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode_images(self, images: Sequence[Any], *, batch_size: int = 32,
                      progress: Progress | None = None) -> np.ndarray:
        """Embed PIL images (any mode; converted to RGB), ``batch_size`` at a time."""
        import torch

        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = [im.convert("RGB") for im in images[start:start + batch_size]]
                out.append(_normalise(self._images(batch)))
                if progress is not None:
                    progress(min(start + batch_size, len(images)))
        return np.concatenate(out)

    def encode_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Embed texts with the model's text tower."""
        import torch

        out = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                out.append(_normalise(self._texts(list(texts[start:start + batch_size]))))
        return np.concatenate(out)


class OpenClipEncoder(_Batched):
    """An open_clip model with its preprocessing and tokenizer."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, name: str, device: str | None = None) -> None:
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.dim = int(self._probe_dim())

    def _probe_dim(self) -> int:
        proj = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if proj:
            return int(proj)
        return int(self.encode_texts(["x"]).shape[1])  # pragma: no cover - every open_clip model has output_dim

    def _images(self, pixel_batch: list[Any]) -> Any:
        import torch

        x = torch.stack([self.preprocess(im) for im in pixel_batch]).to(self.device)
        return self.model.encode_image(x)

    def _texts(self, texts: list[str]) -> Any:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


class TransformersClipEncoder(_Batched):
    """A transformers CLIP-family model (``CLIPModel`` and its processor)."""

    def __init__(self, model: Any, processor: Any, name: str, device: str | None = None) -> None:
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.name = name
        self.dim = int(model.config.projection_dim)
        self.max_length = int(getattr(model.config.text_config, "max_position_embeddings", 77))

    @staticmethod
    def _features(out: Any) -> Any:
        return out if hasattr(out, "dim") else out.pooler_output  # transformers 5 returns a model output

    def _images(self, pixel_batch: list[Any]) -> Any:
        inputs = self.processor(images=pixel_batch, return_tensors="pt")
        return self._features(self.model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device)))

    def _texts(self, texts: list[str]) -> Any:
        inputs = self.processor(text=texts, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_length)
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        return self._features(self.model.get_text_features(**inputs))


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``(backend, model, pretrained)`` of an image-model spec; see the module docstring."""
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty image model name")
    if spec.startswith(("hf-hub:", "local-dir:")):
        return "open_clip", spec, None
    if spec.startswith("hf:"):
        return "transformers", spec[3:], None
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return "open_clip", f"local-dir:{path.resolve()}", None
        if (path / "config.json").is_file():
            return "transformers", str(path.resolve()), None
        raise ConfigError(f"{path} holds neither open_clip_config.json (open_clip) nor config.json (transformers)")
    arch, sep, pretrained = spec.partition("@")
    if not sep or not pretrained:
        raise ConfigError(
            f"image model {spec!r}: name the weights as ARCH@TAG, ARCH@/path/to/checkpoint.pt or ARCH@random, "
            "or give hf-hub:ORG/REPO (open_clip), a saved model folder, or hf:ORG/REPO (transformers CLIP)")
    if pretrained != "random" and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
        ckpt = Path(pretrained).expanduser()
        if not ckpt.is_file():
            raise ModelLoadError(f"image model checkpoint not found: {ckpt}")
        pretrained = str(ckpt.resolve())
    return "open_clip", arch, pretrained


def load_image_encoder(spec: str, device: str | None = None) -> ImageEncoder:
    """Load the image model named by ``spec`` (use through ``indexing.cache.get_model``)."""
    backend, model_name, pretrained = parse_spec(spec)
    if backend == "transformers":
        return _load_transformers(spec, model_name, device)
    try:
        import open_clip
    except ImportError as exc:
        raise MissingDependencyError("open-clip-torch", "images", "open_clip image models") from exc
    if pretrained == "random":
        import torch

        torch.manual_seed(0)  # random weights, but the same ones every time
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=None if pretrained == "random" else pretrained, device="cpu")
        tokenizer = open_clip.get_tokenizer(model_name)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        hint = (" (offline: the model must already be in the Hugging Face cache, or be saved in a local folder)"
                if model_name.startswith("hf-hub:") or (pretrained and pretrained != "random"
                                                         and not Path(pretrained).is_file()) else "")
        raise ModelLoadError(f"cannot load open_clip image model {spec!r}: {exc}{hint}") from exc
    if pretrained == "random":
        log.warning("image model %s has random weights: similarities are meaningless", model_name)
    return OpenClipEncoder(model, preprocess, tokenizer, name=spec, device=device)


def _load_transformers(spec: str, model_id: str, device: str | None) -> ImageEncoder:
    try:
        from transformers import AutoModel, AutoProcessor
    except ImportError as exc:  # pragma: no cover - transformers is a core dependency
        raise MissingDependencyError("transformers", "images", "transformers CLIP models") from exc
    try:
        model = AutoModel.from_pretrained(model_id)
        processor = AutoProcessor.from_pretrained(model_id)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load transformers image model {spec!r}: {exc}") from exc
    if not hasattr(model, "get_image_features") or not hasattr(model, "get_text_features"):
        raise ModelLoadError(f"{spec!r} is a {type(model).__name__}, not a CLIP-style image-text model")
    return TransformersClipEncoder(model, processor, name=spec, device=device)


def get_image_encoder(spec: str) -> ImageEncoder:
    """The image encoder for ``spec``, loaded once per process (``indexing.cache.get_model``)."""
    from clinrag.indexing.cache import get_model

    return get_model("image", spec, load_image_encoder)


__all__ = ["ImageEncoder", "OpenClipEncoder", "TransformersClipEncoder", "get_image_encoder",
           "load_image_encoder", "parse_spec"]
