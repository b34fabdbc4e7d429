"""``precomputed``: score embeddings computed elsewhere (any foundation model we do not ship).

::

    [[methods]]
    name = "precomputed"
    label = "subcell_vitb"                       # how it is called in the results
    params = { path = "subcell_embeddings.parquet", keys = "site" }

    [[methods]]
    name = "precomputed"
    label = "cloome"
    params = { path = "cloome.npy", metadata = "cloome_index.csv", keys = "site" }

    [[methods]]
    name = "precomputed"
    label = "my_mae"                             # several layers, one file each
    params = { layers = { block6 = "b6.parquet", block12 = "b12.parquet" }, keys = "well" }

Reading and key matching are :func:`baselens.data.embeddings.read_embeddings` (Parquet
wide or list column, CSV, ``.npy`` + metadata table, AnnData ``.h5ad``). Keys ``"site"``
give each site its own row; ``"well"`` and ``"perturbation"`` give every site of a well /
perturbation the same vector (well aggregation then returns it unchanged; with
``"perturbation"`` replicate retrieval is trivially perfect — use it for relationship
recall only). The whole screen is checked before extraction starts (:meth:`fit`, called by
the pipeline): duplicate keys, sites without embedding, non-finite values are errors with
counts and examples.

SubCell and CLOOME (MorphoHELM's other representations) are covered this way, not by
built-in adapters, because neither can be built *and verified* here:

* **SubCell** (Lundberg lab; github.com/CellProfiling/SubCellPortable): a Hugging Face
  ``transformers.ViTModel`` (ViT-B/16, 448 px) plus a gated attention-pooling head,
  1536-d, trained on single-cell crops of HPA's 4 stains (microtubules, ER, nucleus,
  protein; min-max normalized). Its weights are published in an S3 bucket
  (``czi-subcell-public``), which this environment cannot reach, ``transformers`` is not a
  dependency, and Cell Painting has no tubulin/protein-of-interest channel, so the channel
  mapping is a user decision, not ours.
* **CLOOME** (ml-jku/cloome; checkpoint ``cloome-bioactivity.pt`` in the HF repo
  ``anasanchezf/cloome``): the image tower is the CLIP-codebase ``RN50`` (modified ResNet
  with attention pooling, ``model_configs/RN50.json``) on 5-channel Cell Painting at 520 px,
  with its own channel order (Mito, ERSyto, ERSytoBleed, Ph_golgi, Hoechst) and
  normalization. The checkpoint is not reachable offline.

An adapter that re-implements either without the real checkpoint to compare against
would produce embeddings nobody has checked — worse than none. Run their own inference
code (SubCellPortable's ``process.py``, CLOOME's ``encode_images``) and import the result::

    params = { path = "subcell.parquet", keys = "site", features = "emb_" }
    params = { path = "cloome.npy", metadata = "cloome_index.csv", keys = "site" }

(per-cell embeddings: average them per site or well first, then ``keys = "site"`` /
``"well"``.) The feature cache keys on the params and on each named file's size, mtime
and content hash: a file regenerated under the same name is read again.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from baselens.data.embeddings import EmbeddingTable, read_embeddings
from baselens.extract.registry import DEFAULT_LAYER, SiteBatch, register

__all__ = ["Precomputed"]


@register("precomputed", kind="model",
          description="bring your own embeddings: Parquet/CSV/.npy+metadata/.h5ad joined by "
                      "plate/well/site or perturbation keys")
class Precomputed:
    """Precomputed embeddings as an extractor (see the module docstring).

    Parameters
    ----------
    path : str, optional
        One embeddings file → layer ``layer`` (default ``"default"``).
    layers : dict, optional
        ``{layer: path}`` for several layers (instead of ``path``).
    keys : "site" | "well" | "perturbation" | list of Metadata_* columns
    features, list_column, metadata, obsm, column_map, format
        Passed to :func:`~baselens.data.embeddings.read_embeddings`.
    on_missing : {"error", "nan"}
        Sites without an embedding: an error (default) or NaN rows (dropped and
        reported by the profile stage).
    """

    needs_images = False
    #: parameters holding file paths: a run config resolves them against its own folder
    PATH_PARAMS = ("path", "layers", "metadata")

    def __init__(self, *, path: str | os.PathLike | None = None,
                 layers: Mapping[str, str] | None = None, layer: str = DEFAULT_LAYER,
                 keys: str | Sequence[str] = "site", features: str | Sequence[str] | None = None,
                 list_column: str | None = None, metadata: str | None = None,
                 obsm: str | None = None, column_map: Mapping[str, str] | None = None,
                 format: str | None = None, on_missing: str = "error") -> None:
        if (path is None) == (layers is None):
            raise ValueError("give exactly one of `path` (one layer) or `layers` ({layer: path})")
        if on_missing not in ("error", "nan"):
            raise ValueError(f"on_missing must be 'error' or 'nan', got {on_missing!r}")
        files = {str(layer): path} if path is not None else dict(layers)
        self.on_missing = on_missing
        self.tables: dict[str, EmbeddingTable] = {
            name: read_embeddings(f, keys=keys, format=format, features=features,
                                  list_column=list_column, metadata=metadata, obsm=obsm,
                                  column_map=column_map)
            for name, f in files.items()
        }
        self.coverage: dict[str, dict] = {}

    def fit(self, load_data, *, progress=None) -> None:
        """Check every site of the screen before extraction (errors name counts)."""
        meta = load_data.metadata if hasattr(load_data, "metadata") else load_data
        for name, t in self.tables.items():
            self.coverage[name] = t.check_coverage(meta, on_missing=self.on_missing)
            if progress:
                c = self.coverage[name]
                progress(f"fit: precomputed {name}: {c['matched']}/{c['sites']} sites matched, "
                         f"{c['unused_embeddings']} embedding row(s) not in the screen")

    def __call__(self, batch: SiteBatch) -> dict[str, pd.DataFrame]:
        return {name: pd.DataFrame(t.lookup(batch.meta, on_missing=self.on_missing), columns=t.features)
                for name, t in self.tables.items()}
