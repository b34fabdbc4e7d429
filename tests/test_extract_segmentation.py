"""segmentation: nuclei → cells → cytoplasm, neighbours, MitoCount, DSB2018 accuracy, plug-ins."""

from __future__ import annotations


import numpy as np
import pytest

from baselens.extract.segmentation import (
    available_backends, cytoplasm, mito_skeleton_count, object_neighbors, segment_cells, segment_nuclei,
    segment_site, time_segmentation,
)


def _cells_site(centers, shape=(96, 96)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    dna = np.full(shape, 100.0)
    agp = np.full(shape, 100.0)
    for cy, cx in centers:
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        dna[r2 <= 16] = 3000
        agp[r2 <= 121] = 1500
    rng = np.random.default_rng(0)
    return np.stack([dna + rng.normal(0, 10, shape), agp + rng.normal(0, 10, shape)]).astype(np.float32)


def test_cells_grow_from_nuclei_and_cytoplasm_is_the_difference():
    site = _cells_site([(30, 30), (30, 52), (70, 60)])
    seg = segment_site(site, ["DNA", "AGP"])
    assert seg.n_nuclei == 3 and seg.n_cells == 3
    for lab in range(1, 4):
        nuc = seg.nuclei == lab
        assert (seg.cells[nuc] == lab).all()  # nucleus inside its own cell
        assert 250 < (seg.cells == lab).sum() < 500  # ~pi*11^2 = 380, split with a touching neighbour
    np.testing.assert_array_equal(seg.cytoplasm, cytoplasm(seg.cells, seg.nuclei))
    assert not (seg.cytoplasm[seg.nuclei > 0]).any()
    # the two touching cells are split between their nuclei
    assert seg.cells[30, 36] == seg.nuclei[30, 30] and seg.cells[30, 46] == seg.nuclei[30, 52]
    far = segment_cells(seg.nuclei, site[1], method="distance", max_distance=3)
    assert (far == 1).sum() < (seg.cells == 1).sum()
    # no cytoplasmic channel: nuclei only
    assert segment_site(site[:1], ["DNA"]).cells is None
    with pytest.raises(ValueError, match="nuclei channel"):
        segment_site(site, ["Hoechst", "AGP"])


def test_neighbors_follow_cellprofiler_definitions():
    lab = np.zeros((40, 60), np.int32)
    lab[10:20, 10:20] = 1
    lab[10:20, 20:30] = 2  # touches 1
    lab[10:20, 45:55] = 3  # 15 px away from 2
    adj = object_neighbors(lab)
    np.testing.assert_array_equal(adj["NumberOfNeighbors"], [1, 1, 0])
    np.testing.assert_array_equal(adj["FirstClosestObjectNumber"], [2, 1, 2])  # 1-based
    assert adj["FirstClosestDistance"][0] == pytest.approx(10.0)
    assert adj["PercentTouching"][2] == 0 and adj["PercentTouching"][0] > 0
    within = object_neighbors(lab, 16)
    assert within["NumberOfNeighbors"][2] == 1
    assert np.isfinite(adj["AngleBetweenNeighbors"]).all()


def test_mito_count_counts_skeleton_pieces():
    img = np.full((64, 64), 100.0, np.float32)
    img[10:13, 5:40] = 2000
    img[30:33, 5:40] = 2000
    img[50:53, 20:60] = 2000
    n, length = mito_skeleton_count(img, min_contrast=0)
    assert n == 3 and length > 80
    assert mito_skeleton_count(np.zeros((16, 16)))[0] == 0


def test_time_segmentation_reports_rate():
    site = _cells_site([(30, 30), (70, 60)])
    r = time_segmentation(site[None].repeat(2, 0), ["DNA", "AGP"])
    assert r["n_sites"] == 2 and r["sites_per_second"] > 0 and r["cells_per_site"] == 2


@pytest.mark.realdata
def test_dsb2018_count_within_10_percent_and_matched_iou(dsb2018):
    img, mask = dsb2018
    ids = np.unique(mask[mask > 0])
    assert len(ids) == 125
    labels = segment_nuclei(img)
    assert abs(int(labels.max()) - 125) <= 12  # measured: 127
    # IoU of each true nucleus with its best predicted nucleus; matched = IoU > 0.5
    joint = np.zeros((int(mask.max()) + 1, int(labels.max()) + 1))
    np.add.at(joint, (mask.ravel(), labels.ravel()), 1)
    inter = joint[1:, 1:][ids - 1]
    union = joint[1:, :].sum(1)[ids - 1][:, None] + joint[:, 1:].sum(0)[None, :] - inter
    best = (inter / union).max(1)
    matched = best > 0.5
    # measured: 83/125 matched, mean IoU 0.76 (Otsu draws tighter outlines than the annotators)
    assert matched.sum() >= 75
    assert best[matched].mean() >= 0.72


def test_optional_plugins_skip_clearly():
    status = available_backends()
    assert status["classic"] == "ok"
    for pkg in ("stardist", "cellpose"):
        if status[pkg] != "ok":
            continue
        pytest.fail("unexpected: plug-in available; add a real test")  # pragma: no cover
    reason = "; ".join(f"{k}: {v}" for k, v in status.items() if v != "ok")
    pytest.skip(f"deep-learning segmentation plug-ins unavailable ({reason})")


def test_nuclei_are_segmented_once_per_batch_and_shared(monkeypatch):
    """cell_count, cell_graph and classic share one nuclei segmentation per site of a batch
    (batch.cache), and their features equal those computed each on its own fresh batch."""
    import pandas as pd

    import baselens.extract.segmentation as seg
    from baselens.extract.registry import SiteBatch, get_extractor

    rng = np.random.default_rng(3)
    sites = []
    for k in range(3):
        dna, agp = _cells_site([(20 + 5 * k, 20), (60, 30), (40, 70 - 4 * k)])
        other = agp * 0.5 + 100.0
        sites.append(np.stack([dna, other, other, agp, other]) + rng.normal(0, 5, (5, 96, 96)))
    images = np.asarray(sites, dtype=np.float32)
    channels = ["DNA", "ER", "RNA", "AGP", "Mito"]
    meta = pd.DataFrame({"Metadata_Plate": ["p"] * 3, "Metadata_Well": ["A01", "A02", "A03"],
                         "Metadata_Site": [1, 1, 1]})
    extractors = {
        "cell_count": get_extractor("cell_count"),
        "cell_graph": get_extractor("cell_graph", variants=["points", "gcn"]),
        "classic": get_extractor("classic", objects=["Nuclei", "Cells"],
                                 groups=["areashape", "intensity"]),
    }
    calls = []
    real = seg.segment_nuclei
    monkeypatch.setattr(seg, "segment_nuclei", lambda *a, **k: calls.append(1) or real(*a, **k))

    shared = SiteBatch(images=images, channels=channels, meta=meta)
    together = {name: ex(shared) for name, ex in extractors.items()}
    assert len(calls) == 3  # one per site, not one per site and extractor
    calls.clear()
    for name, ex in extractors.items():
        alone = ex(SiteBatch(images=images, channels=channels, meta=meta))
        for layer, df in alone.items():
            pd.testing.assert_frame_equal(df, together[name][layer])
    assert len(calls) == 9
    assert together["cell_count"]["default"]["Count_Nuclei"].tolist() == [3.0, 3.0, 3.0]
