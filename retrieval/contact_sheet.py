"""Contact sheets: a grid of the top image hits with their notes, as a PNG or a self-contained HTML page.

For a person to look at search results. Images are decoded like everywhere else (DICOM
windowed to 8 bits), shown as thumbnails (embedded as PNG data in the HTML page), each with
rank, score, patient, date, modality and its linked notes. Hits that are not images are left out.

>>> import tempfile, pathlib
>>> write_contact_sheet(pathlib.Path(tempfile.mkdtemp()) / "s.html", [])
0
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinrag.data.images import load_image
from clinrag.errors import ConfigError, InputError


def _label(h: Any) -> list[str]:
    when = h.timestamp.strftime("%Y-%m-%d") if h.timestamp else "no date"
    head = f"#{h.rank}  {h.score:.3f}  {h.modality or '?'}"
    who = f"patient {h.patient_id or '?'}  {when}"
    notes = " ".join(h.linked_text) or h.text or ""
    return [head, who, Path(h.path).name, notes]


def _thumb(path: str, size: int) -> Any:
    from PIL import Image

    try:
        im = load_image(path)
    except InputError:
        im = Image.new("RGB", (size, size), (90, 0, 0))
    im.thumbnail((size, size))
    tile = Image.new("RGB", (size, size), (0, 0, 0))
    tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return tile


def write_contact_sheet(path: str | Path, hits: Sequence[Any], *, title: str = "", columns: int = 4,
                        thumb: int = 256) -> int:
    """Write the image hits among ``hits`` to ``path`` (``.png`` or ``.html``); returns how many."""
    path = Path(path)
    images = [h for h in hits if getattr(h, "path", "")]
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise ConfigError(f"contact sheet {path}: use a .png or .html file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        _png(path, images, title, columns, thumb)
    else:
        _html(path, images, title, thumb)
    return len(images)


def _png(path: Path, hits: Sequence[Any], title: str, columns: int, thumb: int) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line_h, text_lines, pad, head = 14, 9, 8, 28
    cols = max(1, min(columns, len(hits) or 1))
    rows = max(1, -(-len(hits) // cols))
    cell_w, cell_h = thumb + 2 * pad, thumb + text_lines * line_h + 2 * pad
    sheet = Image.new("RGB", (cols * cell_w, head + rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 8), (title or "image hits")[:200], fill=(0, 0, 0), font=font)
    chars = max(10, thumb // 6)
    for i, h in enumerate(hits):
        x, y = (i % cols) * cell_w + pad, head + (i // cols) * cell_h + pad
        sheet.paste(_thumb(h.path, thumb), (x, y))
        head_lines = _label(h)
        lines = head_lines[:3] + textwrap.wrap(head_lines[3], chars)
        for j, line in enumerate(lines[:text_lines]):
            draw.text((x, y + thumb + 4 + j * line_h), line[: chars + 2], fill=(0, 0, 0), font=font)
    tmp = path.with_name(f".{path.name}.tmp")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)


def _html(path: Path, hits: Sequence[Any], title: str, thumb: int) -> None:
    cells = []
    for h in hits:
        buf = io.BytesIO()
        _thumb(h.path, thumb).save(buf, format="PNG")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        head, who, name, notes = (html.escape(x) for x in _label(h))
        cells.append(f'<figure><img src="data:image/png;base64,{data}" alt="{name}" width="{thumb}">'
                     f"<figcaption><b>{head}</b><br>{who}<br><code>{html.escape(h.path)}</code>"
                     f"<p>{notes}</p></figcaption></figure>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>{t}</title><style>"
            "body{{font-family:sans-serif}} main{{display:grid;grid-template-columns:repeat(auto-fill,"
            "minmax({w}px,1fr));gap:12px}} figure{{margin:0}} img{{background:#000}}</style></head>"
            "<body><h1>{t}</h1><main>{c}</main></body></html>").format(
        t=html.escape(title or "image hits"), w=thumb + 10, c="".join(cells))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)


__all__ = ["write_contact_sheet"]
