"""Run configs: TOML validated with clear errors."""

import pytest

from baselens.run.config import ConfigError, RunConfig


def _write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_use_the_synthetic_demo(tmp_path):
    cfg = RunConfig.from_toml(_write(tmp_path, 'title = "x"\n'))
    assert cfg.data == {"synthetic": {"preset": "demo"}}
    names = [m["name"] for m in cfg.methods]
    assert {"pixel_mean", "pixel_stats", "cell_count", "single_conv", "ground_truth"} <= set(names)


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    p = _write(tmp_path, '[profile]\nnormalise = "standardize"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'normalise' in profile.*did you mean 'normalize'"):
        RunConfig.from_toml(p)


def test_unknown_top_level_and_method_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'method'"):
        RunConfig.from_dict({"method": []})
    with pytest.raises(ConfigError, match=r"methods\[0\]"):
        RunConfig.from_dict({"methods": [{"name": "pixel_mean", "parms": {}}]})


def test_unknown_extractor_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown extractor 'pixel_meen'"):
        RunConfig.from_dict({"methods": [{"name": "pixel_meen"}]})
    with pytest.raises(ConfigError, match="profile.normalize"):
        RunConfig.from_dict({"profile": {"normalize": "zscore"}})
    with pytest.raises(ConfigError, match="must be a number"):
        RunConfig.from_dict({"tasks": {"replicate_retrieval": {"threshold": "low"}}})
    with pytest.raises(ConfigError, match="labelled 'single_conv'"):
        RunConfig.from_dict({"methods": [{"name": "single_conv"}, {"name": "single_conv"}]})


def test_synthetic_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="data.synthetic"):
        RunConfig.from_dict({"data": {"synthetic": {"preset": "quick", "n_plates_typo": 3}}})


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml(_write(tmp_path, "title = \n"))


def test_profile_steps_are_validated_up_front():
    cfg = RunConfig.from_dict({"profile": {"steps": "morphohelm"},
                               "methods": [{"name": "pixel_stats",
                                            "profile": {"steps": ["normalize:mad_robustize:negcon"]}}]})
    assert cfg.methods[0]["profile"]["steps"] == ["normalize:mad_robustize:negcon"]
    with pytest.raises(ConfigError, match=r"profile.steps.*unknown profile step 'zscore'"):
        RunConfig.from_dict({"profile": {"steps": ["zscore"]}})
    with pytest.raises(ConfigError, match=r"unknown key 'step' in methods\[0\].profile"):
        RunConfig.from_dict({"methods": [{"name": "pixel_stats", "profile": {"step": []}}]})
    with pytest.raises(ConfigError, match="must be str or list"):
        RunConfig.from_dict({"profile": {"steps": 3}})


def test_precomputed_paths_and_channel_map_follow_the_config_folder(tmp_path, monkeypatch):
    """A config works from any current directory: precomputed file paths resolve against
    the config's folder like [data] paths, and [data] channel_map renames the table's
    channels for the run."""
    import numpy as np
    import pandas as pd
    import tifffile

    from baselens.run.pipeline import _Progress
    from baselens.run.units import prepare_screen

    proj = tmp_path / "proj"
    (proj / "img").mkdir(parents=True)
    for ch, v in (("ch1", 10), ("ch2", 20)):
        tifffile.imwrite(proj / "img" / f"{ch}.tif", np.full((4, 4), v, np.uint16))
    pd.DataFrame({"Metadata_Plate": ["P"], "Metadata_Well": ["A01"], "Metadata_Site": [1],
                  "Metadata_Perturbation": ["DMSO"], "Metadata_ControlType": ["negcon"],
                  "FileName_Origch1": ["ch1.tif"], "PathName_Origch1": ["img"],
                  "FileName_Origch2": ["ch2.tif"], "PathName_Origch2": ["img"]}
                 ).to_csv(proj / "ld.csv", index=False)
    pd.DataFrame({"Metadata_Plate": ["P"], "Metadata_Well": ["A01"], "Metadata_Site": [1],
                  "emb_0": [1.0]}).to_parquet(proj / "emb.parquet")
    (proj / "run.toml").write_text(
        '[data]\nload_data = "ld.csv"\nchannel_map = { DNA = "ch2", RNA = "ch1" }\n'
        '[[methods]]\nname = "precomputed"\nparams = { path = "emb.parquet", keys = "site" }\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = RunConfig.from_toml(proj / "run.toml")
    assert cfg.methods[0]["params"]["path"] == str(proj / "emb.parquet")
    ld, _, _ = prepare_screen(cfg, tmp_path / "out", _Progress(False))
    assert ld.channels == ["DNA", "RNA"]
    assert ld.read_site(0)[:, 0, 0].tolist() == [20, 10]
    with pytest.raises(ConfigError, match="channel_map must be dict"):
        RunConfig.from_dict({"data": {"load_data": "x.csv", "channel_map": ["DNA"]}})


def test_builtin_protocols_are_found_by_name(tmp_path, monkeypatch):
    from baselens.run.cli import find_config

    monkeypatch.chdir(tmp_path)
    path = find_config("rxrx3_core")
    assert path.endswith("protocols/rxrx3_core.toml")
    assert find_config("rxrx3_core.toml") == path
    with pytest.raises(FileNotFoundError, match="built-in protocols: .*jump_cp_controls"):
        find_config("no_such_protocol")
    (tmp_path / "mine.toml").write_text("")
    assert find_config("mine.toml") == "mine.toml"  # a file given is used as is


# ----------------------------------------------------------------- errors name the fix
@pytest.mark.parametrize("method, message", [
    ({"name": "pixel_stat"}, r"methods\[0\]\.name: unknown extractor 'pixel_stat' — did you "
                             r"mean 'pixel_stats'\?"),
    ({"name": "single_conv", "params": {"sed": 1}},
     r"methods\[0\]\.params: 'single_conv' has no parameter 'sed' — did you mean 'seed'\?"),
    ({"name": "resnet50", "params": {"weight": "random"}},
     r"'resnet50' has no parameter 'weight' — did you mean 'weights'\?"),
    ({"name": "resnet50", "params": {"weights": "imagenet"}},
     r"weights = 'imagenet' does not name a checkpoint; accepted values: \"random\".*"
     r"\"pretrained\".*\"timm:<tag>\""),
])
def test_method_typos_are_config_errors_with_the_fix(method, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"data": {"load_data": "x.parquet"}, "methods": [method]})


def test_valid_method_params_pass():
    cfg = RunConfig.from_dict({"data": {"load_data": "x.parquet"}, "methods": [
        {"name": "single_conv", "params": {"seed": 2}},
        {"name": "resnet50", "params": {"weights": "random", "input_size": 112}},
        {"name": "vit_small_patch16_224_random", "params": {"seed": 1}}]})
    assert [m["name"] for m in cfg.methods][0] == "single_conv"
