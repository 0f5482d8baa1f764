"""The picture of a depth map ``dfdgen predict`` writes: viridis with a labelled colour bar."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from generator.core.display import colorize

__all__ = ["depth_png", "scale_bar_labels"]

def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def scale_bar_labels(vmin: float, vmax: float) -> tuple[str, str]:
    """The texts at the ends of the colour bar: the nearest and farthest depth, metres."""
    return f"{vmin:.3g} m", f"{vmax:.3g} m"


def depth_png(depth: np.ndarray, vmin: float, vmax: float) -> bytes:
    """PNG bytes of a depth map [H, W] in viridis from ``vmin`` to ``vmax`` with a scale bar below it.

    Layout: the map at the top left, unchanged (``colorize(depth, vmin, vmax)``); below it, on
    white, a colour bar from ``vmin`` (left) to ``vmax`` (right) with
    :func:`scale_bar_labels` under its ends. The image is widened (white) when the labels
    need more room than the map's width.
    """
    h, w = depth.shape
    px = int(np.clip(max(w, h) // 40, 10, 64))  # text height: legible at 64 px, in scale at 4000 px
    font, margin = _font(px), max(px // 2, 3)
    left, right = scale_bar_labels(vmin, vmax)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), text, font=font) for text in (left, right)]
    text_w = [b[2] - b[0] for b in boxes]
    text_h = max(b[3] for b in boxes)
    width = max(w, sum(text_w) + 3 * margin)
    bar_top, bar_h = h + margin, px
    canvas = np.full((bar_top + bar_h + margin // 2 + text_h + margin, width, 3), 255, dtype=np.uint8)
    canvas[:h, :w] = colorize(depth, vmin, vmax)
    bar_w = width - 2 * margin
    ramp = np.linspace(vmin, vmax, bar_w, dtype=np.float64)[None].repeat(bar_h, 0)  # [bar_h, bar_w]
    canvas[bar_top:bar_top + bar_h, margin:margin + bar_w] = colorize(ramp, vmin, vmax)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    y = bar_top + bar_h + margin // 2
    draw.text((margin - boxes[0][0], y), left, fill=(0, 0, 0), font=font)
    draw.text((margin + bar_w - text_w[1] - boxes[1][0], y), right, fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
