"""HEST-1k / HEST-Benchmark reader and HEST-1k-1NN coarsening (arXiv 2603.13377 C.3, E.2).

Fixtures are written with raw h5py / pyarrow in the published layout (not with our own
writers): CSR counts in ``adata/<id>.h5ad``, ``barcode`` (N, 1) bytes, GeoParquet WKB
nuclei polygons, benchmark splits and ``var_50genes.json``.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pandas as pd
import pytest

h5py = pytest.importorskip("h5py")

from baselens.data.hest import (  # noqa: E402
    coarsen_1nn,
    dataset_from_arrays,
    grid_neighbours,
    nuclei_centroids,
    read_hest,
    read_rgb,
    write_cellvit_geojson,
)

GENES = ["GA", "GB", "GC", "GD"]


def _wkb_square(cx: float, cy: float, r: float = 2.0) -> bytes:
    ring = [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r)]
    out = struct.pack("<BII", 1, 3, 1) + struct.pack("<I", len(ring))
    for x, y in ring:
        out += struct.pack("<dd", x, y)
    return out


def _frame(group, index, cols: dict):
    dt = h5py.string_dtype()
    group.attrs["encoding-type"] = "dataframe"
    group.attrs["encoding-version"] = "0.2.0"
    group.attrs["_index"] = "_index"
    group.attrs["column-order"] = np.array(list(cols), dtype=object).astype(dt)
    group.create_dataset("_index", data=np.array(index, dtype=object), dtype=dt)
    for k, v in cols.items():
        group.create_dataset(k, data=np.asarray(v))


def _write_sample(tdir, sid, centres_xy, counts, *, fullres_um=0.25, meta=True, nuclei_xy=None, expr="adata"):
    """One sample: patches of 224 px at 0.5 µm/px = 448 full-res px at 0.25 µm/px."""
    from scipy import sparse

    n = len(centres_xy)
    foot = 224 * 0.5 / fullres_um
    tl = np.round(np.asarray(centres_xy) - foot / 2).astype(int)
    barcodes = [f"BC{i:03d}-1" for i in range(n)]
    (tdir / "patches").mkdir(parents=True, exist_ok=True)
    img = np.zeros((n, 224, 224, 3), np.uint8)
    img[:, :, :, 0] = (np.arange(n) * 10 % 250)[:, None, None]  # patch i is recognisable
    with h5py.File(tdir / "patches" / f"{sid}.h5", "w") as f:
        f["img"] = img
        f["coords"] = tl
        f["barcode"] = np.array([[b.encode()] for b in barcodes])
    (tdir / expr).mkdir(exist_ok=True)
    order = np.arange(n)[::-1]  # obs in another order than the patches
    m = sparse.csr_matrix(np.asarray(counts, np.float32)[order])
    with h5py.File(tdir / expr / f"{sid}.h5ad", "w") as f:
        x = f.create_group("X")
        x.attrs["encoding-type"] = "csr_matrix"
        x.attrs["shape"] = m.shape
        x["data"], x["indices"], x["indptr"] = m.data, m.indices, m.indptr
        _frame(f.create_group("obs"), [barcodes[i] for i in order], {"in_tissue": np.ones(n, int)})
        _frame(f.create_group("var"), GENES, {})
        f.create_group("obsm")["spatial"] = np.asarray(centres_xy, float)[order]
    if meta:
        (tdir / "metadata").mkdir(exist_ok=True)
        (tdir / "metadata" / f"{sid}.json").write_text(json.dumps(
            {"id": sid, "pixel_size_um_estimated": fullres_um, "patient": meta if isinstance(meta, str) else None,
             "dataset_title": "Fixture study"}))
    if nuclei_xy is not None:
        (tdir / "cellvit_seg").mkdir(exist_ok=True)
        pd.DataFrame({"geometry": [_wkb_square(x, y) for x, y in nuclei_xy], "class": 1}).to_parquet(
            tdir / "cellvit_seg" / f"{sid}_cellvit_seg.parquet")
    return barcodes, tl


@pytest.fixture
def bench(tmp_path):
    """bench_data/IDC with two samples (patients via splits only: no metadata)."""
    tdir = tmp_path / "bench_data" / "IDC"
    rng = np.random.default_rng(0)
    centres = np.array([[1000.0, 1000.0], [1400.0, 1000.0], [1000.0, 1400.0]])  # 100 µm apart
    c1 = rng.integers(0, 50, (3, 4))
    c2 = rng.integers(0, 50, (3, 4))
    # nuclei: 2 inside patch 0 only, 1 in the overlap of patches 0 and 1, 1 outside all
    nuc = [(900.0, 950.0), (1100.0, 1050.0), (1200.0, 1000.0), (5000.0, 5000.0)]
    _write_sample(tdir, "S1", centres, c1, meta=False, nuclei_xy=nuc)
    _write_sample(tdir, "S2", centres, c2, meta=False)
    (tdir / "splits").mkdir()
    for k, (tr, te) in enumerate([("S2", "S1"), ("S1", "S2")]):
        for name, sid in (("train", tr), ("test", te)):
            pd.DataFrame({"sample_id": [sid], "patches_path": [f"patches/{sid}.h5"],
                          "expr_path": [f"adata/{sid}.h5ad"]}).to_csv(tdir / "splits" / f"{name}_{k}.csv", index=False)
    (tdir / "var_50genes.json").write_text(json.dumps({"genes": ["GC", "GA"]}))
    return tmp_path, c1, c2


def test_read_bench_layout(bench):
    root, c1, c2 = bench
    with pytest.warns(UserWarning, match="no cellvit_seg"):
        ds = read_hest(root, "IDC")
    assert len(ds) == 6 and list(ds.targets.columns) == ["GC", "GA"]
    # targets: log1p of the raw counts, matched by barcode (obs stored in reverse order)
    np.testing.assert_allclose(ds.targets.to_numpy()[:3], np.log1p(c1[:, [2, 0]]), rtol=1e-6)
    np.testing.assert_allclose(ds.targets.to_numpy()[3:], np.log1p(c2[:, [2, 0]]), rtol=1e-6)
    s = ds.spots
    assert s["Metadata_Task"].unique().tolist() == ["IDC"]
    assert s["Metadata_Fold"].tolist() == [0, 0, 0, 1, 1, 1]
    assert s["Metadata_Patient"].tolist() == ["IDC_fold0"] * 3 + ["IDC_fold1"] * 3  # from the test splits
    np.testing.assert_allclose(s[["Metadata_X", "Metadata_Y"]].to_numpy()[:3], [[1000, 1000], [1400, 1000], [1000, 1400]])
    assert ds.info["samples_without_nuclei"] == ["S2"] and ds.info["samples_without_metadata"] == ["S1", "S2"]
    # no metadata: full-res pixel = patch pixel (0.5 µm), patch footprint = 224 full-res px
    assert np.all(ds.pixel_size_um == 0.5)
    patches = ds.patches([4, 0, 1])
    assert patches.shape == (3, 224, 224, 3) and patches.dtype == np.uint8
    assert patches[:, 0, 0, 0].tolist() == [10, 0, 10]


def test_read_hest1k_layout_nuclei_binned_in_patch_pixels(tmp_path):
    tdir = tmp_path / "hest"
    centres = np.array([[1000.0, 1000.0], [1400.0, 1000.0], [1000.0, 1400.0]])
    counts = np.arange(12).reshape(3, 4)
    nuc = [(900.0, 950.0), (1100.0, 1050.0), (1200.0, 1000.0), (5000.0, 5000.0)]
    _write_sample(tdir, "TENX1", centres, counts, meta="Patient 7", nuclei_xy=nuc, expr="st")
    ds = read_hest(tdir, genes=["GD", "GB"])
    assert ds.info["layout"] == "hest-1k"
    assert ds.spots["Metadata_Patient"].tolist() == ["Fixture study: Patient 7"] * 3
    np.testing.assert_allclose(ds.targets.to_numpy(), np.log1p(counts[:, [3, 1]]))
    # footprint: 224 px * 0.5 µm / 0.25 µm = 448 full-res px; patch 0 spans x, y in [776, 1224)
    assert ds.n_cells.tolist() == [3.0, 1.0, 0.0]
    # (row, col) patch px = ((y - top), (x - left)) / 2
    np.testing.assert_allclose(np.sort(ds.nuclei[0], axis=0), np.sort(np.array(
        [[(950 - 776) / 2, (900 - 776) / 2], [(1050 - 776) / 2, (1100 - 776) / 2], [(1000 - 776) / 2, (1200 - 776) / 2]]), axis=0))
    np.testing.assert_allclose(ds.nuclei[1], [[(1000 - 776) / 2, (1200 - 1176) / 2]])
    with pytest.raises(ValueError, match="not in var"):
        read_hest(tdir, genes=["NOPE"])


def test_default_genes_are_most_variable(tmp_path):
    tdir = tmp_path / "t"
    counts = np.array([[1, 100, 5, 0], [1, 0, 6, 50], [1, 30, 5, 10]])
    _write_sample(tdir, "A", np.array([[500.0, 500.0], [900.0, 500.0], [1300.0, 500.0]]), counts, expr="st")
    with pytest.warns(UserWarning):
        ds = read_hest(tdir, n_genes=2)
    assert list(ds.targets.columns) == ["GB", "GD"]
    assert "top 2" in ds.info["genes_from"]


def test_nuclei_centroids_formats(tmp_path):
    polys = [np.array([[0, 0], [4, 0], [4, 2], [0, 2]], float), np.array([[10, 10], [12, 10], [12, 14], [10, 14]], float)]
    write_cellvit_geojson(tmp_path / "a.geojson", polys)
    np.testing.assert_allclose(nuclei_centroids(tmp_path / "a.geojson"), [[2, 1], [11, 12]])
    pd.DataFrame({"geometry": [_wkb_square(3, 4), _wkb_square(-1, 7)]}).to_parquet(tmp_path / "b.parquet")
    np.testing.assert_allclose(nuclei_centroids(tmp_path / "b.parquet"), [[3, 4], [-1, 7]])
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_parquet(tmp_path / "c.parquet")
    np.testing.assert_allclose(nuclei_centroids(tmp_path / "c.parquet"), [[1, 2]])
    pd.DataFrame({"z": [1.0]}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(ValueError, match="no 'geometry'"):
        nuclei_centroids(tmp_path / "d.parquet")


def _grid(kind, rows=4, cols=4, s=10.0):
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    if kind == "square":
        return np.column_stack([cc * s, rr * s])
    return np.column_stack([cc * s + (rr % 2) * s / 2, rr * s * np.sqrt(3) / 2])


def test_grid_neighbours_square_and_hex():
    nb, g = grid_neighbours(_grid("square", 3, 3))
    assert g == "square" and [len(m) for m in nb] == [4, 6, 4, 6, 9, 6, 4, 6, 4]
    nb, g = grid_neighbours(_grid("hex", 5, 5))
    assert g == "hex" and max(len(m) for m in nb) == 7
    assert len(nb[2 * 5 + 2]) == 7  # interior spot: itself + 6
    nb, g = grid_neighbours(_grid("square", 3, 3), "hex")
    assert g == "hex" and len(nb[4]) == 5  # forced hex radius on a square grid: 4 + itself


def _toy(kind="square", rows=3, cols=3, samples=("A", "B")):
    xy = _grid(kind, rows, cols, s=100.0) + 200.0  # full-res px; patch = 112 px at 1 µm/px
    n = len(xy)
    imgs, spots_nuc, tg, sp = [], [], [], []
    for k, s in enumerate(samples):
        for i in range(n):
            img = np.full((112, 112, 3), (20 * i + 5 * k) % 250, np.uint8)
            imgs.append(img)
            spots_nuc.append(np.array([[56.0, 56.0]]))  # a nucleus at each patch centre
            tg.append(np.log1p([float(i + 10 * k), 2.0 * i]))
    ds = dataset_from_arrays(np.stack(imgs), targets=pd.DataFrame(tg, columns=["g1", "g2"]), pixel_size_um=1.0,
                             nuclei=spots_nuc)
    ds.spots["Metadata_Sample"] = np.repeat(list(samples), n)
    ds.spots["Metadata_Patient"] = np.repeat([f"P{s}" for s in samples], n)
    ds.spots["Metadata_X"] = np.tile(xy[:, 0], len(samples))
    ds.spots["Metadata_Y"] = np.tile(xy[:, 1], len(samples))
    ds.spots["Metadata_FullresPixelSize"] = 1.0
    ds.info["has_nuclei"] = True
    return ds


def test_coarsen_1nn_square():
    ds = _toy()
    c = coarsen_1nn(ds)
    assert len(c) == 18 and c.info["coarsen_dropped_empty"] == 0
    assert c.info["coarsen_grid"] == {"A": "square", "B": "square"}
    assert c.spots["Metadata_NNeighbours"].tolist()[:9] == [4, 6, 4, 6, 9, 6, 4, 6, 4]
    # targets: counts averaged over the neighbourhood, then log1p; never across samples
    np.testing.assert_allclose(np.expm1(c.targets["g1"].iloc[4]), np.mean(np.arange(9)))
    np.testing.assert_allclose(np.expm1(c.targets["g1"].iloc[9 + 4]), 10 + np.mean(np.arange(9)))
    np.testing.assert_allclose(np.expm1(c.targets["g1"].iloc[0]), np.mean([0, 1, 3, 4]))
    # centre crop: bbox 312 µm square (3 spots 100 µm apart + 112 µm patch), resized to 112 px
    np.testing.assert_allclose(c.pixel_size_um[4], 312 / 112)
    assert c.spots["Metadata_X"].iloc[4] == pytest.approx(300.0)
    assert c.n_cells[4] == 9 and c.n_cells[0] == 4
    # nuclei at the spot centres: the centre spot's nucleus is at the crop centre
    d = np.linalg.norm(c.nuclei[4] - 56.0, axis=1)
    assert d.min() < 0.5
    p = c.patches([4, 0])
    assert p.shape == (2, 112, 112, 3)
    # the crop's centre shows the centre patch (value 20 * 4)
    assert abs(int(p[0, 56, 56, 0]) - 80) <= 2


def test_coarsen_1nn_hex_and_drop_empty():
    ds = _toy("hex", 4, 4, samples=("A",))
    ds.nuclei[0] = np.zeros((0, 2))
    c = coarsen_1nn(ds)
    assert c.info["coarsen_grid"] == {"A": "hex"} and c.spots["Metadata_NNeighbours"].max() == 7
    ds2 = _toy(samples=("A",))
    ds2.nuclei = [np.zeros((0, 2)) for _ in ds2.nuclei]
    ds2.nuclei[0] = np.array([[5.0, 5.0]])  # one cell, in the corner patch: only crops holding spot 0 keep it
    c2 = coarsen_1nn(ds2)
    assert c2.info["coarsen_dropped_empty"] == 5 and len(c2) == 4
    assert c2.spots["Metadata_Spot"].tolist() == [ds2.spots["Metadata_Spot"][i] for i in (0, 1, 3, 4)]
    assert c2.n_cells.tolist() == [1.0] * 4


def test_read_rgb_smoke(realdata):
    path = realdata / "images" / "nuclei_dsb2018" / "histo.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    img = read_rgb(path)
    assert img.ndim == 3 and img.shape[-1] == 3 and img.dtype == np.uint8
    ds = dataset_from_arrays(img[:224, :224])
    assert len(ds) == 1 and ds.patches([0]).shape == (1, 224, 224, 3)
