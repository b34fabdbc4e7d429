"""Plate-layout baseline (``plate_layout``): features that encode only where a well sits.

If this baseline scores on a task, the task is solvable from the plate layout alone
(position effects, perturbations always in the same wells, plate/batch confounding) —
the report can then say so. No pixels are read (``needs_images = False``).

Columns (all float):

* ``Layout_Row``, ``Layout_Col`` — 1-based row and column (from ``Metadata_Row`` /
  ``Metadata_Col`` when present, else parsed from ``Metadata_Well`` such as ``A01``,
  ``P24``, ``AA12`` for 1536-well plates);
* ``Layout_RowFrac``, ``Layout_ColFrac`` — row/column scaled to [0, 1] by the plate size;
* ``Layout_DistToEdge`` — wells to the nearest plate edge (0 = edge well), and
  ``Layout_IsEdge`` (1 for edge wells);
* ``Layout_DistToCenter`` — Euclidean distance (in wells) to the plate centre;
* optional one-hots ``Layout_Plate_<id>``, ``Layout_Batch_<id>``, ``Layout_Source_<id>``
  (``one_hot=["plate", "batch", "source"]``; default none).

Geometry and categories are fixed per screen, not per chunk. :meth:`PlateLayout.fit`
(called by the pipeline with the whole screen before any chunk is extracted) records

* each plate's geometry (rows × columns): ``plate_format`` when given, else the plate's
  ``Metadata_PlateFormat`` value (wells per plate) when the table has one, else the
  smallest standard format holding every well seen on *any plate of the same source*
  (``Metadata_Source``; the whole screen without it) — plates of one source share a plate
  type, so a plate of which a download subset kept only some wells still gets its
  source's geometry. A subset in which no plate of a source reaches the last row or
  column of its plate cannot reveal the format: set ``plate_format`` then;
* the one-hot categories (sorted values of the whole screen), unless ``categories``
  gives them.

A chunk then gets the same features for its wells whatever the chunk size or which other
wells it holds. Without ``fit`` (a direct call on one batch) the same rules are applied to
``context["all_meta"]`` when present, else to the batch itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from baselens.data.wells import parse_well
from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register

__all__ = ["PlateLayout", "parse_well", "PLATE_SHAPES"]

#: wells → (rows, columns)
PLATE_SHAPES: dict[int, tuple[int, int]] = {6: (2, 3), 24: (4, 6), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}

_ONE_HOT_COLUMNS = {"plate": "Metadata_Plate", "batch": "Metadata_Batch", "source": "Metadata_Source"}


@register("plate_layout", kind="baseline", description="well position only: row, column, edge distance, plate/batch one-hot")
class PlateLayout:
    """Plate-layout features of each site (no images).

    Parameters
    ----------
    plate_format : int or None
        Wells per plate (96, 384, 1536, ...) for every plate; None infers each plate's
        format (module docstring).
    one_hot : list of str
        Which of ``"plate"``, ``"batch"``, ``"source"`` to one-hot encode. Default
        ``[]``. Categories come from ``categories``, else from :meth:`fit` (the whole
        screen), else from ``context["all_meta"]`` / the batch.
    categories : dict or None
        ``{"plate": [...], ...}`` fixed category lists for the one-hots.
    """

    needs_images: bool = False

    def __init__(self, *, plate_format: int | None = None, one_hot: list[str] | tuple[str, ...] = (),
                 categories: dict | None = None) -> None:
        if plate_format is not None and plate_format not in PLATE_SHAPES:
            raise ValueError(f"plate_format must be one of {sorted(PLATE_SHAPES)}, got {plate_format!r}")
        bad = [k for k in one_hot if k not in _ONE_HOT_COLUMNS]
        if bad:
            raise ValueError(f"one_hot entries must be among {sorted(_ONE_HOT_COLUMNS)}, got {bad}")
        self.plate_format = plate_format
        self.one_hot = list(one_hot)
        self.categories = {k: [str(x) for x in v] for k, v in (categories or {}).items()}
        self._plate_shapes: dict[str, tuple[int, int]] = {}
        self._fitted_categories: dict[str, list[str]] = {}

    def fit(self, load_data, *, progress=None) -> None:
        """Fix every plate's geometry and the one-hot categories from the whole screen.

        Parameters
        ----------
        load_data : LoadData or DataFrame
            The run's screen (its ``metadata``) or a metadata table: one row per site with
            ``Metadata_Plate`` and ``Metadata_Well`` (or ``Metadata_Row``/``Metadata_Col``).
        progress : callable, optional
            Receives one line on what was fitted.
        """
        meta = load_data.metadata if hasattr(load_data, "metadata") else load_data
        meta = pd.DataFrame(meta).reset_index(drop=True)
        self._plate_shapes = self._screen_shapes(meta)
        self._fitted_categories = {}
        for key in self.one_hot:
            col = _ONE_HOT_COLUMNS[key]
            if key not in self.categories and col in meta:
                self._fitted_categories[key] = sorted(meta[col].astype(str).unique())
        if progress:
            shapes = sorted({f"{r}x{c}" for r, c in self._plate_shapes.values()})
            progress(f"fit: plate_layout geometry of {len(self._plate_shapes)} plate(s) "
                     f"({', '.join(shapes) or 'none'})")

    def _screen_shapes(self, meta: pd.DataFrame) -> dict[str, tuple[int, int]]:
        """``{plate: (rows, cols)}`` by the rules of the module docstring."""
        if "Metadata_Plate" not in meta or not len(meta):
            return {}
        rows, cols = self.rows_cols(meta)
        plates = meta["Metadata_Plate"].astype(str).to_numpy()
        if self.plate_format is not None:
            return {p: PLATE_SHAPES[self.plate_format] for p in pd.unique(plates)}
        declared = {}
        if "Metadata_PlateFormat" in meta:
            fmt = pd.to_numeric(meta["Metadata_PlateFormat"], errors="coerce")
            for p, v in zip(plates, fmt):
                if np.isfinite(v) and int(v) in PLATE_SHAPES:
                    declared[p] = PLATE_SHAPES[int(v)]
        family = (meta["Metadata_Source"].astype(str).to_numpy() if "Metadata_Source" in meta
                  else np.full(len(meta), ""))
        out = {}
        for fam in pd.unique(family):
            sel = family == fam
            shape = self._shape(rows[sel], cols[sel])
            for p in pd.unique(plates[sel]):
                out[p] = declared.get(p, shape)
        return out

    @staticmethod
    def rows_cols(meta: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if "Metadata_Row" in meta and "Metadata_Col" in meta:
            r = pd.to_numeric(meta["Metadata_Row"], errors="coerce").to_numpy(float)
            c = pd.to_numeric(meta["Metadata_Col"], errors="coerce").to_numpy(float)
            if np.isfinite(r).all() and np.isfinite(c).all():
                return r, c
        if "Metadata_Well" not in meta:
            raise ValueError("plate_layout needs Metadata_Row/Metadata_Col or Metadata_Well")
        rc = np.array([parse_well(w) for w in meta["Metadata_Well"]], dtype=float).reshape(-1, 2)
        return rc[:, 0], rc[:, 1]

    def _shape(self, rows: np.ndarray, cols: np.ndarray) -> tuple[int, int]:
        if self.plate_format is not None:
            return PLATE_SHAPES[self.plate_format]
        rmax, cmax = (float(rows.max()), float(cols.max())) if len(rows) else (0.0, 0.0)
        for n in sorted(PLATE_SHAPES):
            nr, nc = PLATE_SHAPES[n]
            if rmax <= nr and cmax <= nc:
                return nr, nc
        raise ValueError(f"row {rmax:g} / column {cmax:g} do not fit a standard plate")

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        meta = batch.meta.reset_index(drop=True)
        rows, cols = self.rows_cols(meta)
        all_meta = batch.context.get("all_meta") if isinstance(batch.context, dict) else None
        shapes = self._plate_shapes
        plates = (meta["Metadata_Plate"].astype(str).to_numpy() if "Metadata_Plate" in meta
                  else None)
        if plates is None or not set(plates) <= set(shapes):
            ref = all_meta if all_meta is not None and "Metadata_Plate" in all_meta else meta
            shapes = {**self._screen_shapes(pd.DataFrame(ref).reset_index(drop=True)), **shapes}
        if plates is not None and set(plates) <= set(shapes):
            geo = np.array([shapes[p] for p in plates], dtype=float).reshape(-1, 2)
            nr, nc = geo[:, 0], geo[:, 1]
        else:  # no plate column: one geometry for the batch
            r0, c0 = self._shape(rows, cols)
            nr, nc = np.full(len(rows), float(r0)), np.full(len(rows), float(c0))
        bad = (rows < 1) | (cols < 1) | (rows > nr) | (cols > nc)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"wells outside a {int(nr[i])}x{int(nc[i])} plate "
                             f"(e.g. row {rows[i]:g}, column {cols[i]:g}); set plate_format")
        edge = np.minimum.reduce([rows - 1, nr - rows, cols - 1, nc - cols])
        out = pd.DataFrame({
            "Layout_Row": rows,
            "Layout_Col": cols,
            "Layout_RowFrac": (rows - 1) / np.maximum(nr - 1, 1),
            "Layout_ColFrac": (cols - 1) / np.maximum(nc - 1, 1),
            "Layout_DistToEdge": edge,
            "Layout_IsEdge": (edge == 0).astype(float),
            "Layout_DistToCenter": np.hypot(rows - (nr + 1) / 2, cols - (nc + 1) / 2),
        })
        for key in self.one_hot:
            col = _ONE_HOT_COLUMNS[key]
            if col not in meta:
                raise ValueError(f"plate_layout: one_hot {key!r} needs column {col}")
            cats = self.categories.get(key, self._fitted_categories.get(key))
            if cats is None:
                src = all_meta[col] if all_meta is not None and col in all_meta else meta[col]
                cats = sorted(src.astype(str).unique())
            vals = meta[col].astype(str).to_numpy()
            for cat in cats:
                out[f"Layout_{key.capitalize()}_{cat}"] = (vals == cat).astype(float)
        return {DEFAULT_LAYER: out.astype(np.float64)}
