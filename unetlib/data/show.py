"""Pictures of samples: images with their instance labels overlaid (for the notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .dataset import Sample

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def label_overlay(image: np.ndarray, labels: np.ndarray | None, alpha: float = 0.35) -> np.ndarray:
    """RGB float image: each cell tinted with its own colour, cell outlines in the legend's
    yellow (:data:`unetlib.plots.CONTOUR`). A prediction's errors: :func:`unetlib.plots.overlay`."""
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    from unetlib.plots import CONTOUR, mpl_color

    gray = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    if labels is None:
        return np.stack([gray] * 3, axis=-1)
    rgb = label2rgb(labels, image=gray, alpha=alpha, bg_label=0, image_alpha=1.0)
    rgb[find_boundaries(labels, mode="inner")] = mpl_color(CONTOUR)
    return rgb


def plot_samples(samples: Sequence[Sample], n: int = 3, size: float = 4.0) -> Figure:
    """A figure with ``n`` samples: the image on top, the labelled overlay below."""
    import matplotlib.pyplot as plt

    n = min(n, len(samples))
    fig, axes = plt.subplots(2, n, figsize=(size * n, 2 * size), squeeze=False)
    for j in range(n):
        s = samples[j]
        axes[0, j].imshow(s.image, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(s.name, fontsize=8)
        axes[1, j].imshow(label_overlay(s.image, s.labels))
        axes[1, j].set_title(
            f"{s.n_cells} cells" if s.labels is not None else "no labels", fontsize=9
        )
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig
