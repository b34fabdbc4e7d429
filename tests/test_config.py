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
