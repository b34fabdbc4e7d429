"""``run`` checks before it spends, with the messages ``inspect`` predicts."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from baselens.api import Benchmark
from baselens.run.inspect import MIN_NEGCON_BATCH_MIXING, inspect_path, preflight
from test_api import _plates


def _wells(neg_per_plate, n_plates=2):
    rows = []
    for p in range(n_plates):
        for i in range(6):
            rows.append({"Metadata_Plate": f"P{p}", "Metadata_Well": f"A{i + 1:02d}",
                         "Metadata_Perturbation": "DMSO" if i < neg_per_plate else f"c{i % 2}",
                         "Metadata_ControlType": "negcon" if i < neg_per_plate else ""})
    return pd.DataFrame(rows)


def test_preflight_known_answers():
    errors, skips = preflight(_wells(2))  # 4 negcon wells: everything feasible
    assert errors == [] and "batch_mixing" not in skips
    errors, skips = preflight(_wells(1), reference="all")  # 2 negcon wells
    assert errors == []
    assert skips["batch_mixing"].endswith(f"≥ {MIN_NEGCON_BATCH_MIXING} negative-control "
                                          "wells (it measures batch signal on them); the "
                                          "screen has 2")
    errors, _ = preflight(_wells(1))  # per-plate normalization needs 2 per plate
    assert len(errors) == 1 and "plate 'P0' has 1 negative-control" in str(errors[0])
    assert "--reference all" in str(errors[0])
    errors, skips = preflight(_wells(2).drop(columns="Metadata_Perturbation"))
    assert "needs a Metadata_Perturbation column" in str(errors[0]) and skips == {}
    # tasks not run are not checked
    assert preflight(_wells(1), reference="all", tasks=())[1] == {}


def test_run_fails_before_extraction_with_inspects_message(tmp_path):
    table = _plates(n_dmso=1, seed=1)  # one DMSO well per plate
    with pytest.raises(ValueError, match="--reference all") as run_err:
        Benchmark(table, perturbation="Metadata_broad_sample", negcon="DMSO").run(
            tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "features").exists()  # nothing extracted
    path = tmp_path / "profiles.csv"
    table.to_csv(path, index=False)
    rep = inspect_path(path, perturbation="Metadata_broad_sample", negcon=["DMSO"])
    assert str(rep.problems[0]) == str(run_err.value)
    assert "batch_mixing" in rep.info["skipped_tasks"]


def test_task_without_its_input_is_skipped_with_the_reason_in_run_json(tmp_path):
    table = _plates(n_dmso=1, seed=1)
    res = Benchmark(table, perturbation="Metadata_broad_sample", negcon="DMSO",
                    reference="all").run(tmp_path / "run", progress=False)
    assert "batch_mixing" not in set(res.scores["task"])
    assert "replicate_retrieval" in set(res.scores["task"])
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["profile"]["reference"] == "all"
    skipped = [f for f in info["filters"] if f["stage"] == "preflight: batch_mixing"]
    assert len(skipped) == 1 and "the screen has 2" in skipped[0]["reason"]
    assert "batch mixing needs" in (tmp_path / "run" / "report.html").read_text()


def _run_printed(line: str, cwd, monkeypatch) -> list[int]:
    """Run the ``next:`` line of ``load-data`` (``A  then  B``) through the CLI."""
    import shlex

    from baselens.run.cli import main

    monkeypatch.chdir(cwd)
    codes = []
    for cmd in line.removeprefix("next: ").split("  then  "):
        argv = shlex.split(cmd)
        assert argv[0] == "baselens"
        codes.append(main(argv[1:] + (["--quiet"] if argv[1] == "run" else [])))
    return codes


def test_load_data_next_command_works_as_printed_for_a_profile_table(tmp_path, capsys,
                                                                      monkeypatch):
    from baselens.run.cli import main

    table = _plates(n_plates=1, seed=2)
    src = tmp_path / "profiles.csv.gz"
    table.to_csv(src, index=False)
    assert main(["load-data", str(src), "--out", str(tmp_path / "mydata"),
                 "--negcon", "DMSO"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("next: "))
    assert "--negcon DMSO" in line
    assert _run_printed(line, tmp_path, monkeypatch) == [0, 0]
    printed = capsys.readouterr().out
    assert "no problem found" in printed
    assert "report: " in printed  # --quiet still prints the report path
    assert (tmp_path / "runs" / "mydata" / "report.html").is_file()


def test_a_failed_run_prints_one_line_and_status_explains_it(tmp_path, capsys, monkeypatch):
    import baselens.run.pipeline as pipeline
    from baselens.run.cli import main

    def boom(cfg, out, progress=True):
        from pathlib import Path

        Path(out).mkdir(parents=True, exist_ok=True)
        raise TypeError("extractor 'x' failed on chunk P1-0000: bad dtype")

    monkeypatch.setattr(pipeline, "run_pipeline", boom)
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "error")  # main sets it; restored after
    cfg = tmp_path / "run.toml"
    cfg.write_text('[data]\nload_data = "ld.parquet"\n[[methods]]\nname = "random"\n')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("bad dtype") == 1 and "Traceback" not in err
    assert f"traceback in {out / 'run.log'}" in err
    log = (out / "run.log").read_text()
    assert "Traceback" in log and log.strip().splitlines()[-1].endswith(
        "error: TypeError: extractor 'x' failed on chunk P1-0000: bad dtype")
    assert main(["status", str(out)]) == 0
    assert "last log line" in capsys.readouterr().out.split("bad dtype")[0]


def test_changed_embeddings_file_is_not_read_from_the_cache(tmp_path):
    from baselens.data.profiles import write_profile_run
    from baselens.run.config import RunConfig
    from baselens.run.pipeline import run_pipeline

    a = _plates(n_plates=1, seed=4)
    cfg_path = write_profile_run(a, tmp_path / "in", perturbation="Metadata_broad_sample",
                                 negcon="DMSO")
    cfg = RunConfig.from_toml(cfg_path)
    cfg.tasks = {"replicate_retrieval": {"enabled": True}, "knn_probe": {"enabled": False},
                 "batch_mixing": {"enabled": False}}
    cfg.execution = {"executor": "serial"}
    first = run_pipeline(cfg, tmp_path / "run", progress=False).scores
    # the same file name, new content: features that carry no perturbation signal
    prof = pd.read_parquet(tmp_path / "in" / "profiles.parquet")
    feats = [c for c in prof.columns if not c.startswith("Metadata_")]
    prof[feats] = prof[feats].sample(frac=1.0, random_state=0).to_numpy()
    prof.to_parquet(tmp_path / "in" / "profiles.parquet")
    second = run_pipeline(cfg, tmp_path / "run", progress=False).scores

    def nr(s):
        return s.query("method == 'profiles' and task == 'replicate_retrieval' and "
                       "metric == 'mean_average_precision' and batch_level == 'NR'")["value"].mean()

    assert nr(first) > 0.8 and nr(second) < 0.5
    assert "profiles reused from cache" not in (tmp_path / "run" / "run.log").read_text()


# ----------------------------------------------------------------- inspect other inputs
def test_inspect_describes_a_single_tiff(tmp_path):
    import numpy as np
    import tifffile

    path = tmp_path / "P1_B03_s2_w1.tif"
    tifffile.imwrite(path, np.zeros((3, 40, 50), np.uint16), photometric="minisblack")
    rep = inspect_path(path)
    assert rep.kind == "image" and rep.problems == []
    assert rep.info["shape"] == [3, 40, 50] and rep.info["dtype"] == "uint16"
    assert "'imagexpress' pattern" in rep.text()
    assert f"baselens load-data {tmp_path}" in rep.text()
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not an image")
    rep = inspect_path(broken)
    assert "cannot decode the image header" in str(rep.problems[0])


def test_inspect_describes_platemaps_pairs_and_metadata(tmp_path):
    pm = tmp_path / "platemap.tsv"
    pd.DataFrame({"well_position": ["A01", "A02", "A03", "A04"],
                  "broad_sample": ["BRD-1", None, "BRD-2", "BRD-1"],
                  "solvent": "DMSO"}).to_csv(pm, sep="\t", index=False)
    rep = inspect_path(pm, negcon=["DMSO"])
    assert rep.kind == "platemap"
    assert "--fill-empty" in str(rep.problems[0])  # an empty treatment: the CLI fix
    rep = inspect_path(pm, negcon=["DMSO"], platemap_options={"fill_empty": "DMSO"})
    assert rep.problems == [] and rep.info["wells"] == 4 and rep.info["negcon_wells"] == 1
    assert "perturbation taken from 'broad_sample'" in rep.text()

    pairs = tmp_path / "CORUM.txt"
    pairs.write_text("entity1,entity2\nA,B\nB,A\nC,D\n")
    rep = inspect_path(pairs)
    assert rep.kind == "annotations" and rep.info == {"pairs": 3, "entities": 4}

    meta = tmp_path / "plate.csv.gz"
    pd.DataFrame({"Metadata_Source": ["s1", "s2"], "Metadata_Plate": ["P1", "P2"]}).to_csv(
        meta, index=False)
    rep = inspect_path(meta)
    assert rep.kind == "metadata" and rep.info["rows"] == 2 and rep.problems == []


def test_inspect_real_inputs_that_used_to_crash(realdata):
    cases = {"annotations/CORUM.txt": "annotations",
             "metadata/jump/plate.csv.gz": "metadata",
             "metadata/jump/JUMP-Target-1_compound_platemap.tsv": "platemap"}
    for rel, kind in cases.items():
        path = realdata / rel
        if not path.exists():
            pytest.skip(f"{path} missing")
        rep = inspect_path(path, negcon=["DMSO"], platemap_options={"fill_empty": "DMSO"})
        assert rep.kind == kind, rel
        assert rep.problems == [], (rel, rep.problems)
    illum = realdata / "load_data" / "test_BR00126114_load_data_with_illum.parquet"
    rep = inspect_path(illum, check_files=False)
    assert rep.kind == "load_data"
    assert "Metadata_Perturbation" in str(rep.problems[0])
    assert "5 channel(s)" in rep.text()


def _tiny_screen(tmp_path, n_wells=8):
    import numpy as np
    import tifffile

    rows = []
    for i in range(n_wells):
        well = f"A{i + 1:02d}"
        row = {"Metadata_Plate": "P1", "Metadata_Well": well, "Metadata_Site": 1,
               "Metadata_Perturbation": "DMSO" if i < 4 else f"c{i % 2}",
               "Metadata_ControlType": "negcon" if i < 4 else ""}
        for ch in ("DNA", "RNA"):
            name = f"P1_{well}_s1_{ch}.tiff"
            tifffile.imwrite(tmp_path / name, np.full((32, 32), i + 1, np.uint16))
            row[f"FileName_Orig{ch}"], row[f"PathName_Orig{ch}"] = name, str(tmp_path)
        rows.append(row)
    ld = pd.DataFrame(rows)
    ld.to_csv(tmp_path / "load_data.csv", index=False)
    return ld


def test_every_image_header_is_decoded_before_the_run(tmp_path):
    import numpy as np
    import tifffile

    from baselens.data.load_data import ImageReadError, read_load_data
    from baselens.run.inspect import image_header_problems

    ld = _tiny_screen(tmp_path)
    assert image_header_problems(read_load_data(tmp_path / "load_data.csv")) == []
    (tmp_path / "P1_A06_s1_RNA.tiff").write_bytes(b"II*\x00garbage")  # truncated TIFF
    tifffile.imwrite(tmp_path / "P1_A07_s1_DNA.tiff", np.zeros((16, 32), np.uint16))
    bad = image_header_problems(read_load_data(tmp_path / "load_data.csv"))
    assert len(bad) == 2
    assert "Well=A06" in str(bad[0]) and "'RNA': cannot decode" in str(bad[0])
    assert "P1_A07_s1_DNA.tiff is 16x32 uint16, but P1_A01_s1_DNA.tiff is 32x32 uint16" in str(bad[1])
    rep = inspect_path(tmp_path / "load_data.csv")
    assert str(rep.problems[0]) == str(bad[0])
    # run stops with the same message before extracting anything
    table = ld[["Metadata_Plate", "Metadata_Well", "Metadata_Perturbation"]].assign(
        f0=range(len(ld)), f1=1.0 * np.arange(len(ld)) ** 2, f2=np.sin(np.arange(len(ld))))
    with pytest.raises(ImageReadError) as err:
        Benchmark(table, load_data=tmp_path / "load_data.csv", methods=["pixel_mean"],
                  tasks=["replicate_retrieval"], execution={"executor": "serial"}
                  ).run(tmp_path / "run", progress=False)
    assert str(err.value) == str(bad[0])
    assert not (tmp_path / "run" / "features").exists()


def test_load_data_names_unusable_columns_and_drops_them_on_request(tmp_path, capsys,
                                                                    monkeypatch):
    from baselens.run.cli import main

    table = _plates(n_plates=1, seed=2)
    table["f_nan"] = float("nan")
    table.loc[3, "f1"] = float("inf")
    table["f_const"] = 2.0
    src = tmp_path / "profiles.csv.gz"
    table.to_csv(src, index=False)
    argv = ["load-data", str(src), "--out", str(tmp_path / "mydata"), "--negcon", "DMSO"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 with NaN/inf values ('f1', 'f_nan'; 48 row(s) affected)" in err
    assert "1 constant ('f_const')" in err and "--drop-nonfinite-columns" in err
    assert main(argv + ["--drop-nonfinite-columns"]) == 0
    out = capsys.readouterr().out
    assert "dropped 3 of 22 feature columns" in out
    kept = pd.read_parquet(tmp_path / "mydata" / "profiles.parquet").columns
    assert not {"f1", "f_nan", "f_const"} & set(kept) and "f0" in kept
    line = next(ln for ln in out.splitlines() if ln.startswith("next: "))
    assert _run_printed(line, tmp_path, monkeypatch) == [0, 0]
