"""The tissue image under spot maps, when the input carries one (Space Ranger folders, scanpy-style .h5ad).

Coordinates of such inputs are full-resolution image pixels (``.obsm['spatial']``); the stored images are
down-scaled by ``tissue_{hires,lowres}_scalef``, so the image is drawn with an extent of its size divided by
that factor and the spots land on the tissue they were measured on. Inputs without an image keep plain maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Tissue:
    image: np.ndarray
    scale: float  # image pixels per coordinate unit
    resolution: str


def tissue_from_uns(uns) -> Tissue | None:
    """The high-resolution image (else the low-resolution one) of the first library in ``uns['spatial']``."""
    spatial = uns.get("spatial") if hasattr(uns, "get") else None
    if not isinstance(spatial, dict) or not spatial:
        return None
    library = next(iter(spatial.values()))
    images, factors = library.get("images") or {}, library.get("scalefactors") or {}
    for res in ("hires", "lowres"):
        key = f"tissue_{res}_scalef"
        if res in images and key in factors and float(factors[key]) > 0:
            return Tissue(np.asarray(images[res]), float(factors[key]), res)
    return None


def load_tissue(h5ad_path) -> Tissue | None:
    """The tissue image of an .h5ad (None without a path, an image or scale factors)."""
    if not h5ad_path or not Path(h5ad_path).is_file():
        return None
    import anndata

    adata = anndata.read_h5ad(h5ad_path, backed="r")
    try:
        return tissue_from_uns(adata.uns)
    finally:
        adata.file.close()


def draw_tissue(ax, tissue: Tissue, coords) -> None:
    """Image underneath, axes limited to the spots (image rows run downwards, so y is inverted as in scanpy)."""
    coords = np.asarray(coords, dtype=np.float64)
    h, w = tissue.image.shape[:2]
    ax.imshow(tissue.image, extent=(0, w / tissue.scale, h / tissue.scale, 0), zorder=0, interpolation="antialiased")
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    pad = 0.04 * float(max(hi - lo)) if len(coords) else 0.0
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(hi[1] + pad, lo[1] - pad)
