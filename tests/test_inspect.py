"""``baselens inspect``: each real kind of input, and the same errors a run gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from baselens.run.inspect import detect_kind, inspect_path
from baselens.data.load_data import ImageReadError, read_load_data
from baselens.data.microscopy import MissingChannelError, images_to_load_data, write_load_data
from baselens.run.cli import main

ILLUM = "load_data/test_BR00126114_load_data_with_illum.parquet"
JUMP_SITE = "images/jump_cpjump1_BR00117006_A01_s1/images/orig"
PEDIATRIC = "images/pediatric_atlas_BR00143976_C03_s3/images/orig"
NF1 = "images/nf1_plate2/Plate_2_images"
NF1_REGEX = r"(?P<well>[A-Z]\d+)_\d+_\d+_(?P<site>\d+)_(?P<channel>[A-Z]+)_\d+\.tif"
LINCS = "profiles/lincs_SQ00015054_normalized_feature_select.csv.gz"


def _need(p):
    if not p.exists():
        pytest.skip(f"{p} not in BASELENS_TEST_DATA")
    return p


def test_load_data_with_illum_table_reports_what_a_run_stops_at(realdata, tmp_path):
    path = _need(realdata / ILLUM)
    rep = inspect_path(path)
    assert rep.kind == "load_data"
    assert rep.info["channels_found"] == ["AGP", "DNA", "ER", "Mito", "RNA"]
    assert rep.info["remote_files"] == 10 and rep.info["rows"] == 2
    # the same messages the run's data stage and image reader raise
    from baselens.run.config import RunConfig
    from baselens.run.units import prepare_screen

    cfg = RunConfig.from_dict({"data": {"load_data": str(path)}, "methods": [{"name": "random"}]})
    with pytest.raises(ValueError) as run_err:
        prepare_screen(cfg, tmp_path, print)
    assert str(rep.problems[0]) == str(run_err.value)
    with pytest.raises(ImageReadError) as read_err:
        read_load_data(path).read_site(0)
    assert [str(p) for p in rep.problems if isinstance(p, ImageReadError)] == [str(read_err.value)]
    assert "illumination functions for" in rep.text() and "not applied" in rep.text()
    # with the images mapped to a local folder, the missing files are named per site
    local = inspect_path(path, illum=True, path_map={"s3://cellpainting-gallery": str(tmp_path)})
    assert local.info["sites_missing_files"] == 2
    assert "image file not found" in str([p for p in local.problems if isinstance(p, ImageReadError)][0])


def test_jump_site_folder_missing_channels(realdata, capsys):
    folder = _need(realdata / JUMP_SITE)
    rep = inspect_path(folder, plate="BR00117006", channel_map="jump_phenix")
    assert rep.kind == "image_folder" and rep.info["pattern"] == "opera"
    with pytest.raises(MissingChannelError) as built:
        images_to_load_data(folder, plate="BR00117006", channel_map="jump_phenix")
    assert isinstance(rep.problems[0], MissingChannelError)
    assert str(rep.problems[0]) == str(built.value)
    assert main(["inspect", str(folder), "--plate", "BR00117006", "--channel-map", "jump_phenix"]) == 2
    out, err = capsys.readouterr()
    assert "1 site(s) dropped for missing channels" in out
    assert err.startswith("baselens: error: ") and "['ER', 'Mito']" in err


def test_pediatric_site_as_load_data(realdata, tmp_path):
    folder = _need(realdata / PEDIATRIC)
    t = images_to_load_data(folder, plate="BR00143976").table  # ch1..ch6: no DNA channel yet
    t["Metadata_Perturbation"], t["Metadata_ControlType"] = "DMSO", "negcon"
    write_load_data(t, tmp_path / "ld.csv")
    rep = inspect_path(tmp_path / "ld.csv")
    assert rep.info["sites_missing_files"] == 0 and rep.info["channels"] == [f"ch{k}" for k in range(1, 7)]
    assert "1080x1080 uint16" in rep.text()
    assert any("no channel named 'DNA'" in a for a in rep.actions)
    # one negcon well on its plate: per-plate normalization cannot run; the same error
    from baselens.profile.normalize import normalize

    with pytest.raises(ValueError) as norm:
        normalize(t.assign(f=1.0), features=["f"])
    # inspect says what the run's pre-flight stops with: normalize's error plus the fix
    from baselens.run.inspect import preflight

    assert str(rep.problems[0]) == str(preflight(t)[0][0])
    assert str(rep.problems[0]).startswith(str(norm.value)) and "--reference all" in str(rep.problems[0])
    mapped = inspect_path(tmp_path / "ld.csv", channel_map="pediatric_atlas")
    assert mapped.info["channels"][0] == "DNA" and not any("no channel named" in a for a in mapped.actions)


def test_nf1_plate_controls_and_replicates(realdata, tmp_path):
    folder = _need(realdata / NF1)
    pm = tmp_path / "pm.csv"
    pd.DataFrame({"well": ["B7", "D6", "D7", "F7", "H12"],
                  "perturbation": ["DMSO", "DMSO", "a", "a", "b"],
                  "control_type": ["negcon", "negcon", "", "", ""]}).to_csv(pm, index=False)
    rep = inspect_path(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm)
    i = rep.info
    assert (i["rows"], i["wells"], i["negcon_wells"], i["scorable"], i["single_replicate"]) == (5, 5, 2, 1, 1)
    assert i["plates_without_negcon"] == []
    assert "FLAG: 1 perturbation(s) in a single well" in rep.text()
    assert "formable: SP, NR, NSL" in rep.text()
    # one replicated treatment: a run skips the kNN probe (a default task), inspect says so
    from baselens.profile.log import FilterLog
    from baselens.evaluate.registry import TASKS
    from baselens.run.tasks import run_tasks

    wells = images_to_load_data(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm).table
    log = FilterLog()
    only_knn = {t: {"enabled": t == "knn_probe"} for t, spec in TASKS.items()
                if spec.enabled_by_default and spec.pipeline == "cell_painting"}
    scores, _ = run_tasks(wells.assign(f=np.arange(5.0)), ["f"], {}, only_knn, log, "x")
    assert scores == [] and any("fewer than 2 labels" in e["reason"] for e in log.to_records())
    assert rep.problems == []
    assert "FLAG: the kNN probe will be skipped" in rep.text()
    pd.DataFrame({"well": ["B7", "D6", "D7", "F7", "H12"],
                  "perturbation": ["DMSO", "DMSO", "a", "a", "a"],
                  "control_type": ["negcon", "negcon", "", "", ""]}).to_csv(pm, index=False)
    ok = inspect_path(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm)
    assert ok.info["scorable"] == 1 and "kNN probe will be skipped" in ok.text()  # one label
    pd.DataFrame({"well": ["B7", "D6", "D7", "F7", "H12"],
                  "perturbation": ["DMSO", "DMSO", "a", "a", "b"],
                  "control_type": ["", "", "", "", ""]}).to_csv(pm, index=False)
    none = inspect_path(folder, pattern=NF1_REGEX, plate="Plate_2", platemap=pm)
    assert none.info["plates_without_negcon"] == ["Plate_2"]
    assert "FLAG: 1 plate(s) with fewer than 2 negative-control wells" in none.text()


def test_lincs_profile_table(realdata, capsys):
    path = _need(realdata / LINCS)
    assert detect_kind(path) == "profiles"
    rep = inspect_path(path)
    raw = pd.read_csv(path)
    trt = raw[raw["Metadata_broad_sample"] != "DMSO"]
    assert rep.info["perturbations"] == trt["Metadata_broad_sample"].nunique()
    doses = trt.groupby("Metadata_broad_sample")["Metadata_mmoles_per_liter"].nunique()
    assert rep.info["multi_dose_perturbations"] == int((doses > 1).sum()) > 0
    assert rep.info["normalize_drops"] == 0 and rep.info["negcon_wells"] == 24 and not rep.problems
    assert main(["inspect", str(path)]) == 0
    assert "keeps 454 feature(s) and drops 0" in capsys.readouterr().out


def test_profile_nan_and_constant_features_predict_normalization(tmp_path):
    rng = np.random.default_rng(0)
    n = 8
    df = pd.DataFrame({"Metadata_Plate": ["p1"] * n + ["p2"] * n,
                       "Metadata_Well": [f"A{j + 1:02d}" for j in range(n)] * 2,
                       "Metadata_Perturbation": (["DMSO"] * 3 + ["x"] * 5) * 2})
    for j in range(4):
        df[f"f{j}"] = rng.normal(size=2 * n)
    df.loc[4, "f1"] = np.nan                      # non-finite somewhere
    df.loc[df.Metadata_Plate == "p2", "f2"] = 3.0  # zero spread on one plate's controls
    df.to_parquet(tmp_path / "p.parquet")
    rep = inspect_path(tmp_path / "p.parquet")
    fr = rep.info["features"]
    assert (fr["nonfinite_any"], fr["constant_in_some_plate"]) == (1, 1)
    from baselens.profile.log import FilterLog
    from baselens.profile.normalize import normalize

    log = FilterLog()
    out = normalize(df.assign(Metadata_ControlType=np.where(df.Metadata_Perturbation == "DMSO", "negcon", "")),
                    features=[f"f{j}" for j in range(4)], log=log)
    assert rep.info["normalize_drops"] == 4 - len([c for c in out.columns if c.startswith("f")]) == 2


def test_embeddings_files(tmp_path):
    x = np.arange(12, dtype=float).reshape(4, 3)
    np.save(tmp_path / "e.npy", x)
    from baselens.data.embeddings import read_embeddings

    with pytest.raises(ValueError) as run_err:
        read_embeddings(tmp_path / "e.npy")
    with pytest.raises(ValueError) as ins_err:
        inspect_path(tmp_path / "e.npy")
    assert str(ins_err.value) == str(run_err.value)
    keys = pd.DataFrame({"plate": ["P1"] * 4, "well": ["A01", "A02", "B01", "B02"]})
    keys.to_csv(tmp_path / "idx.csv", index=False)
    rep = inspect_path(tmp_path / "e.npy", metadata=tmp_path / "idx.csv")
    assert (rep.info["rows"], rep.info["dim"]) == (4, 3)
    keys.assign(a=x[:, 0], b=x[:, 1]).to_parquet(tmp_path / "w.parquet")
    w = inspect_path(tmp_path / "w.parquet")
    assert w.kind == "embeddings" and w.info["keys"] == ["Metadata_Plate", "Metadata_Well"]
    assert 'keys = "well"' in w.text()
    pd.concat([keys, keys.iloc[:1]]).assign(a=1.0).to_parquet(tmp_path / "dup.parquet")
    from baselens.data.embeddings import EmbeddingJoinError

    with pytest.raises(EmbeddingJoinError, match="more than once"):
        inspect_path(tmp_path / "dup.parquet")


def test_load_data_builder_cli_then_inspect_then_config(realdata, tmp_path, capsys):
    """The README's "your own data": folder of TIFFs + plate map → load_data + run.toml."""
    folder = _need(realdata / NF1)
    pm = tmp_path / "platemap.csv"
    pd.DataFrame({"well": ["B7", "D6", "D7", "F7", "H12"],
                  "perturbation": ["DMSO", "DMSO", "a", "a", "b"]}).to_csv(pm, index=False)
    rc = main(["load-data", str(folder), "--pattern", NF1_REGEX, "--plate", "Plate_2",
               "--platemap", str(pm), "--negcon", "DMSO", "--channel-map", "DNA=DAPI,GFP=GFP,RFP=RFP",
               "--out", str(tmp_path / "mydata")])
    assert rc == 0
    assert "config:" in capsys.readouterr().out
    # five wells cannot give the kNN probe two replicated treatments: inspect says a run
    # will skip it (not an error)
    assert main(["inspect", str(tmp_path / "mydata" / "load_data.csv")]) == 0
    assert "kNN probe will be skipped" in capsys.readouterr().out
    from baselens.run.config import RunConfig

    cfg = RunConfig.from_toml(tmp_path / "mydata" / "run.toml")
    assert cfg.data["channels"] == ["DNA", "GFP", "RFP"]
    assert [m["name"] for m in cfg.methods] == ["pixel_mean", "pixel_stats", "cell_count",
                                                "single_conv", "plate_layout", "random"]
    ld = read_load_data(cfg.resolve(cfg.data["load_data"]), channels=cfg.data["channels"])
    assert ld.read_site(0).shape == (3, 904, 1224)


def test_bad_input_gets_the_readers_error(tmp_path, realdata):
    bad = tmp_path / "ld.csv"
    pd.DataFrame({"FileName_OrigDNA": ["a.tif"], "Metadata_Well": ["A01"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError) as run_err:
        read_load_data(bad)
    with pytest.raises(ValueError) as ins_err:
        inspect_path(bad)
    assert str(ins_err.value) == str(run_err.value) and "Metadata_Plate" in str(run_err.value)
    assert main(["inspect", str(tmp_path / "nope.csv")]) == 2
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot inspect this kind of file"):
        inspect_path(tmp_path / "x.json")


def test_replicates_at_one_well_position_are_flagged(tmp_path):
    df = pd.DataFrame({"Metadata_Plate": ["p1"] * 5 + ["p2"] * 5,
                       "Metadata_Well": ["A01", "A02", "A03", "A04", "A05"] * 2,
                       "Metadata_Perturbation": ["DMSO", "DMSO", "y", "z", "w"]
                       + ["DMSO", "DMSO", "y", "w", "z"],
                       "f": np.arange(10.0)})
    df.to_parquet(tmp_path / "p.parquet")
    rep = inspect_path(tmp_path / "p.parquet")
    assert rep.info["scorable"] == 3 and rep.info["same_position_replicates"] == 1  # only y
    assert "1 of 3 replicated perturbation(s) sit at one well position" in rep.text()
