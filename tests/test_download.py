"""``baselens download``: the fetcher, the manifest and the dataset plans, all against a
local HTTP server (tests/fixtures_http.py) — no test touches the internet."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from baselens.data.download import DownloadError, Downloader, FileSpec, fetch, mirror_url
from fixtures_http import FixtureServer

BLOB = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes, crosses the 1 MiB read chunk


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    (root / "files").mkdir()
    (root / "files" / "blob.bin").write_bytes(BLOB)
    (root / "files" / "small.txt").write_bytes(b"hello world\n")
    with FixtureServer(root) as srv:
        yield srv


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ----------------------------------------------------------------------------- fetch


def test_fetch_downloads_and_verifies(server, tmp_path):
    dest = tmp_path / "out" / "blob.bin"
    res = fetch(f"{server.url}/files/blob.bin", dest, sha256=_sha(BLOB), etag_md5=True)
    assert dest.read_bytes() == BLOB
    assert res.status == "downloaded" and res.size == len(BLOB) and res.sha256 == _sha(BLOB)
    assert res.verified and res.published["md5"] == hashlib.md5(BLOB).hexdigest()
    assert not dest.with_name("blob.bin.part").exists()
    # a complete dest matching the published checksum is not requested again
    n = server.count("/files/blob.bin")
    assert fetch(f"{server.url}/files/blob.bin", dest, sha256=_sha(BLOB)).status == "skipped"
    assert server.count("/files/blob.bin") == n


def test_fetch_retries_500_then_succeeds(server, tmp_path):
    server.rule("/files/small.txt", fail=2)
    waits = []
    res = fetch(f"{server.url}/files/small.txt", tmp_path / "s.txt", retries=3, backoff=0.5,
                sleep=waits.append)
    assert (tmp_path / "s.txt").read_bytes() == b"hello world\n"
    assert server.count("/files/small.txt") == 3 and res.requests == 3
    assert waits == [0.5, 1.0]  # exponential backoff


def test_fetch_gives_up_after_last_retry(server, tmp_path):
    server.rule("/files/small.txt", fail=10)
    with pytest.raises(DownloadError, match=r"giving up after 3 attempt\(s\).*HTTP 500"):
        fetch(f"{server.url}/files/small.txt", tmp_path / "s.txt", retries=2,
              sleep=lambda s: None)
    assert not (tmp_path / "s.txt").exists()


def test_fetch_4xx_fails_fast_with_url(server, tmp_path):
    url = f"{server.url}/files/missing.bin"
    with pytest.raises(DownloadError, match="HTTP 404") as exc:
        fetch(url, tmp_path / "m.bin", retries=5, sleep=lambda s: None)
    assert url in str(exc.value)
    assert server.count("/files/missing.bin") == 1
    assert not (tmp_path / "m.bin").exists() and not (tmp_path / "m.bin.part").exists()


def test_truncated_body_is_retried_with_range(server, tmp_path):
    """The server announces the full Content-Length, sends half and closes: the .part is
    kept and the retry asks for the rest."""
    server.rule("/files/blob.bin", truncate=1)
    dest = tmp_path / "blob.bin"
    res = fetch(f"{server.url}/files/blob.bin", dest, retries=2, sleep=lambda s: None)
    assert dest.read_bytes() == BLOB and res.status == "resumed"
    first, second = server.headers_for("/files/blob.bin")
    assert "Range" not in first
    assert second["Range"] == f"bytes={len(BLOB) // 2}-"


def test_resume_after_cut_connection(server, tmp_path):
    """A connection cut after K bytes leaves a .part that is never read as complete; the
    next run sends Range: bytes=K- and finishes with the exact source bytes."""
    k = 300_000
    server.rule("/files/blob.bin", cut_after=k)
    url = f"{server.url}/files/blob.bin"
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="connection lost|truncated"):
        fetch(url, dest, retries=0, sha256=_sha(BLOB))
    part = tmp_path / "blob.bin.part"
    assert not dest.exists() and part.stat().st_size == k
    res = fetch(url, dest, retries=0, sha256=_sha(BLOB))
    assert res.status == "resumed" and res.bytes_transferred == len(BLOB) - k
    assert server.headers_for("/files/blob.bin")[1]["Range"] == f"bytes={k}-"
    assert dest.read_bytes() == BLOB and not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(BLOB[:1000])
    server.rule("/files/blob.bin", ignore_range=True)
    res = fetch(f"{server.url}/files/blob.bin", dest, sha256=_sha(BLOB))
    assert server.headers_for("/files/blob.bin")[0]["Range"] == "bytes=1000-"
    assert res.status == "downloaded" and dest.read_bytes() == BLOB  # 200: rewritten, not appended


def test_wrong_checksum_fails_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(f"{server.url}/files/blob.bin", dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()
    server.rule("/files/blob.bin", wrong_etag=True)  # S3-style ETag = MD5, but wrong
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(f"{server.url}/files/blob.bin", dest, etag_md5=True)
    assert not dest.exists() and not (tmp_path / "blob.bin.part").exists()


def test_published_size_mismatch_is_an_error(server, tmp_path):
    with pytest.raises(DownloadError, match="published size is 5"):
        fetch(f"{server.url}/files/small.txt", tmp_path / "s.txt", expected_size=5)
    assert not (tmp_path / "s.txt").exists()


def test_offline_refuses_remote_urls(tmp_path):
    with pytest.raises(DownloadError, match="BASELENS_OFFLINE"):
        fetch("https://cellpainting-gallery.s3.amazonaws.com/x", tmp_path / "x")


def test_etag_is_md5_only_when_it_can_be():
    from baselens.data.download import _etag_md5

    md5 = hashlib.md5(b"x").hexdigest()
    assert _etag_md5(f'"{md5}"') == md5
    assert _etag_md5(f'"{md5}-3"') is None  # multipart upload
    assert _etag_md5(f'W/"{md5}"') is None  # weak validator
    assert _etag_md5(f'"{md5}"', {"x-amz-server-side-encryption": "aws:kms"}) is None
    assert _etag_md5(f'"{md5}"', {"x-amz-server-side-encryption": "AES256"}) == md5


def test_mirror_url():
    assert (mirror_url("https://huggingface.co/api/x?recursive=true", "http://127.0.0.1:9/")
            == "http://127.0.0.1:9/huggingface.co/api/x?recursive=true")
    assert mirror_url("https://a.b/c", "") == "https://a.b/c"


# ----------------------------------------------------------------------------- manifest


def test_manifest_and_idempotent_rerun(server, tmp_path):
    out = tmp_path / "out"
    specs = [FileSpec(f"{server.url}/files/blob.bin", "a/blob.bin", etag_md5=True),
             FileSpec(f"{server.url}/files/small.txt", "small.txt", size=12,
                      sha256=_sha(b"hello world\n"))]
    dl = Downloader(out, dataset="t", base_url=server.url, backoff=0, log=lambda m: None)
    dl.get_many(specs)
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset"] == "t" and man["base_url"] == server.url
    e = man["files"]["a/blob.bin"]
    assert e["size"] == len(BLOB) and e["sha256"] == _sha(BLOB) and e["verified"]
    assert e["published"] == {"md5": hashlib.md5(BLOB).hexdigest()}
    assert man["files"]["small.txt"]["published"] == {"sha256": _sha(b"hello world\n")}
    n = len(server.requests)
    dl2 = Downloader(out, dataset="t", base_url=server.url, log=lambda m: None)
    dl2.get_many(specs)
    assert len(server.requests) == n  # nothing requested again
    assert dl2.stats["skipped"] == 2
    # a file changed on disk no longer matches its entry and is fetched again
    (out / "small.txt").write_bytes(b"HELLO WORLD\n")
    Downloader(out, dataset="t", log=lambda m: None).get_many(specs)
    assert (out / "small.txt").read_bytes() == b"hello world\n"
    assert len(server.requests) == n + 1
    with pytest.raises(DownloadError, match="belongs to dataset 't'"):
        Downloader(out, dataset="other", log=lambda m: None)


def test_part_file_is_not_complete(server, tmp_path):
    out = tmp_path / "out"
    spec = FileSpec(f"{server.url}/files/small.txt", "small.txt")
    dl = Downloader(out, dataset="t", log=lambda m: None)
    (out / "small.txt.part").write_bytes(b"hello world\n")  # every byte, but only a .part
    assert not dl.manifest.complete(spec, out)
    dl.get(spec)
    assert (out / "small.txt").read_bytes() == b"hello world\n"
    # the resume asked for bytes 12-, the server answered 416, the download restarted at 0
    first, second = server.headers_for("/files/small.txt")
    assert first["Range"] == "bytes=12-" and "Range" not in second


# ----------------------------------------------------------------------------- JUMP fake


GALLERY = "cellpainting-gallery.s3.amazonaws.com"
META = "github.com/jump-cellpainting/datasets/raw/main/metadata"
CHANNELS = {"DNA": 5, "ER": 4, "RNA": 3, "AGP": 2, "Mito": 1}
WELLS = ["A01", "A02", "A03", "A04"]


def _gz_csv(df: pd.DataFrame) -> bytes:
    return gzip.compress(df.to_csv(index=False).encode())


EMPTY, DMSO, AMG900, CPD1, CPD2 = ("JCP2022_999999", "JCP2022_033924", "JCP2022_037716",
                                   "JCP2022_000001", "JCP2022_000002")
# compound.csv.gz's InChIKeys (standard 27-character keys): DMSO's real key; CPD1 is the
# rolipram skeleton without stereo layer, so only its first block matches the Hub's (R)/(S)
INCHIKEY = {DMSO: "IAZDPXIOMUYVGZ-UHFFFAOYSA-N", AMG900: "IVUGFMLRJOCGAS-UHFFFAOYSA-N",
            CPD1: "HJORMJIFDVBMOB-UHFFFAOYSA-N", CPD2: "ZZZZZZZZZZZZZZ-UHFFFAOYSA-N"}


def _jump_tree(root, jcp=None):
    """2 plates × 4 wells × 2 sites in the cpg0016 layout; 8×8 uint16 TIFFs + illum .npy.
    Default layout: A01 is empty (JCP2022_999999), A02 DMSO (negcon), A03 AMG900 (poscon),
    A04 a compound."""
    import tifffile

    batch, source = "2021_08_23_Batch12", "source_4"
    plates = ["BR0001", "BR0002"]
    meta = root / META
    meta.mkdir(parents=True)
    (meta / "plate.csv.gz").write_bytes(_gz_csv(pd.DataFrame({
        "Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": plates,
        "Metadata_PlateType": "TARGET2"})))
    jcp = jcp or {"A01": EMPTY, "A02": DMSO, "A03": AMG900, "A04": CPD1}
    (meta / "well.csv.gz").write_bytes(_gz_csv(pd.DataFrame(
        [{"Metadata_Source": source, "Metadata_Plate": p, "Metadata_Well": w,
          "Metadata_JCP2022": jcp[w]} for p in plates for w in WELLS])))
    (meta / "perturbation_control.csv").write_text(
        "Metadata_JCP2022,Metadata_pert_type,Metadata_Name,Metadata_modality\n"
        "JCP2022_033924,negcon,DMSO,compound\nJCP2022_037716,poscon,AMG900,compound\n"
        "JCP2022_999999,empty,Empty,any\n")
    (meta / "compound.csv.gz").write_bytes(_gz_csv(pd.DataFrame({
        "Metadata_JCP2022": list(INCHIKEY), "Metadata_InChIKey": list(INCHIKEY.values()),
        "Metadata_InChI": "x", "Metadata_SMILES": "C"})))
    (meta / "orf.csv.gz").write_bytes(_gz_csv(pd.DataFrame({
        "Metadata_JCP2022": ["JCP2022_900002"], "Metadata_Symbol": ["NAT1"]})))
    (meta / "crispr.csv.gz").write_bytes(_gz_csv(pd.DataFrame({
        "Metadata_JCP2022": ["JCP2022_800001"], "Metadata_NCBI_Gene_ID": [""],
        "Metadata_Symbol": ["no-guide"]})))
    rng = np.random.default_rng(0)
    truth = {}
    for p in plates:
        img_key = f"cpg0016-jump/{source}/images/{batch}/images/{p}__2021-09-01T15_39_48-Measurement1/Images"
        ill_key = f"cpg0016-jump/{source}/images/{batch}/illum/{p}"
        (root / GALLERY / img_key).mkdir(parents=True)
        (root / GALLERY / ill_key).mkdir(parents=True)
        rows = []
        for ch in CHANNELS:
            np.save(root / GALLERY / ill_key / f"{p}_Illum{ch}.npy",
                    np.full((8, 8), 2.0, np.float32))
        for wi, w in enumerate(WELLS, 1):
            for s in (1, 2):
                row = {"Metadata_Plate": p, "Metadata_Well": w, "Metadata_Site": str(s),
                       "Metadata_Source": source, "Metadata_Batch": batch}
                for ch, n in CHANNELS.items():
                    name = f"r01c{wi:02d}f{s:02d}p01-ch{n}sk1fk1fl1.tiff"
                    img = rng.integers(0, 60000, (8, 8), dtype=np.uint16)
                    tifffile.imwrite(root / GALLERY / img_key / name, img)
                    truth[(p, w, s, ch)] = img
                    row[f"FileName_Orig{ch}"] = name
                    row[f"PathName_Orig{ch}"] = f"s3://cellpainting-gallery/{img_key}/"
                    row[f"FileName_Illum{ch}"] = f"{p}_Illum{ch}.npy"
                    row[f"PathName_Illum{ch}"] = f"s3://cellpainting-gallery/{ill_key}"
                row["FileName_OrigBrightfield"] = f"r01c{wi:02d}f{s:02d}p01-ch6sk1fk1fl1.tiff"
                row["PathName_OrigBrightfield"] = f"s3://cellpainting-gallery/{img_key}/"
                rows.append(row)
        ld = root / GALLERY / f"cpg0016-jump/{source}/workspace/load_data_csv/{batch}/{p}"
        ld.mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(ld / "load_data_with_illum.parquet", index=False)
    return truth, img_key


def test_jump_cp_end_to_end(tmp_path):
    from baselens.data.load_data import read_load_data
    from baselens.run.cli import main

    root = tmp_path / "srv"
    truth, img_key = _jump_tree(root)
    out = tmp_path / "jump"
    with FixtureServer(root) as srv:
        # one image answers 500 once, another is cut after 100 bytes: both recover
        cut = f"/{GALLERY}/{img_key}/r01c02f01p01-ch1sk1fk1fl1.tiff"
        srv.rule(cut, cut_after=100)
        srv.rule(f"/{GALLERY}/{img_key}/r01c03f01p01-ch5sk1fk1fl1.tiff", fail=1)
        argv = ["download", "jump-cp", "--plates", "BR0001", "BR0002", "--max-sites", "4",
                "--base-url", srv.url, "--out", str(out), "--backoff", "0"]
        assert main(argv) == 0
        ld = read_load_data(out / "load_data.parquet", illum=True)
        assert len(ld) == 8 and ld.channels == list(CHANNELS)  # Brightfield not fetched
        t = ld.table
        assert set(t["Metadata_Plate"]) == {"BR0001", "BR0002"}
        assert t.groupby("Metadata_Plate").size().tolist() == [4, 4]
        # the empty well A01 is dropped before choosing: the first 4 sites are A02, A03 × 2
        assert set(t["Metadata_Well"]) == {"A02", "A03"}
        neg = t[t["Metadata_Well"] == "A02"]
        pos = t[t["Metadata_Well"] == "A03"]
        assert (neg["Metadata_ControlType"] == "negcon").all()
        assert (neg["Metadata_Perturbation"] == "JCP2022_033924").all()
        assert (pos["Metadata_ControlType"] == "poscon").all()
        assert (pos["Metadata_JCP2022"] == "JCP2022_037716").all()
        assert (t["Metadata_PerturbationType"] == "compound").all()
        assert (t["Metadata_PlateType"] == "TARGET2").all()
        assert (t["Metadata_Source"] == "source_4").all() and (t["Metadata_Row"] == 1).all()
        i = int(np.flatnonzero((t["Metadata_Plate"] == "BR0002") & (t["Metadata_Well"] == "A03")
                               & (t["Metadata_Site"] == 2))[0])
        site = ld.read_site(i)
        for c, ch in enumerate(CHANNELS):  # illum is 2.0 everywhere: pixels / 2
            np.testing.assert_allclose(site[c], truth[("BR0002", "A03", 2, ch)] / 2.0)
        # the cut image was resumed with a Range request
        hs = srv.headers_for(cut)
        assert len(hs) == 2 and hs[1]["Range"] == "bytes=100-"
        man = json.loads((out / "manifest.json").read_text())
        imgs = [e for k, e in man["files"].items() if k.endswith(".tiff")]
        assert len(imgs) == 8 * 5 and all(e["verified"] for e in imgs)  # ETag = MD5 checked
        assert man["outputs"]["load_data"]["sites"] == 8
        # idempotent: a re-run makes no request at all
        n = len(srv.requests)
        assert main(argv) == 0
        assert len(srv.requests) == n


def test_jump_cp_dry_run_fetches_no_images(tmp_path, capsys):
    from baselens.run.cli import main

    root = tmp_path / "srv"
    _jump_tree(root)
    out = tmp_path / "jump"
    with FixtureServer(root) as srv:
        assert main(["download", "jump-cp", "--plates", "BR0001", "--max-sites", "2",
                     "--base-url", srv.url, "--out", str(out), "--dry-run"]) == 0
        gets = [p for m, p, _ in srv.requests if m == "GET"]
    text = capsys.readouterr().out
    assert "dry run: 15 file(s)" in text  # 2 sites × 5 channels + 5 illum
    assert not any(p.endswith((".tiff", ".npy")) for p in gets)
    assert not (out / "load_data.parquet").exists()
    assert not list(out.rglob("*.tiff"))


def test_download_offline_without_mirror_is_refused(tmp_path, capsys):
    from baselens.run.cli import main

    assert main(["download", "jump-cp", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "BASELENS_OFFLINE" in err and "github.com/jump-cellpainting" in err
    assert not list((tmp_path / "o").rglob("*.csv*"))


def test_jump_cp_unknown_plate_is_named(tmp_path, capsys):
    from baselens.run.cli import main

    root = tmp_path / "srv"
    _jump_tree(root)
    with FixtureServer(root) as srv:
        rc = main(["download", "jump-cp", "--plates", "BR0003", "--base-url", srv.url,
                   "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "BR0003" in err and "BR0001" in err  # close matches listed


def _cpg_tree(root, barcodes: str, platemap: str) -> None:
    """The JUMP fake re-used as project cpg0000-jump-pilot with a platemap instead of JUMP
    metadata: ``barcodes`` (barcode_platemap.csv rows), ``platemap`` (MAP1.txt rows)."""
    _jump_tree(root)
    (root / GALLERY / "cpg0016-jump").rename(root / GALLERY / "cpg0000-jump-pilot")
    for f in (root / GALLERY).rglob("load_data_with_illum.parquet"):
        d = pd.read_parquet(f)
        for c in [c for c in d.columns if c.startswith("PathName_")]:
            d[c] = d[c].str.replace("cpg0016-jump", "cpg0000-jump-pilot")
        d.to_parquet(f, index=False)
    pm = root / GALLERY / "cpg0000-jump-pilot/source_4/workspace/metadata/platemaps/2021_08_23_Batch12"
    (pm / "platemap").mkdir(parents=True)
    (pm / "barcode_platemap.csv").write_text("Assay_Plate_Barcode,Plate_Map_Name\n" + barcodes)
    (pm / "platemap" / "MAP1.txt").write_text("well_position\tbroad_sample\tsolvent\n" + platemap)


def test_cpg_generic_lists_plates_and_joins_platemap(tmp_path):
    from baselens.data.datasets import download_dataset
    from baselens.data.load_data import read_load_data

    root = tmp_path / "srv"
    _cpg_tree(root, "BR0001,MAP1\nBR0002,MAP1\n",
              "A01\t\tDMSO\nA02\tBRD-1\tDMSO\nA03\tBRD-2\tDMSO\nA04\tBRD-3\tDMSO\n")
    with FixtureServer(root) as srv:
        rep = download_dataset("cpg0000-jump-pilot", tmp_path / "cpg", source="source_4",
                               batch="2021_08_23_Batch12", max_sites=2, sites_per_well=1,
                               base_url=srv.url, log=lambda m: None)
    ld = read_load_data(rep.load_data, illum=True)
    t = ld.table
    assert sorted(t["Metadata_Plate"].unique()) == ["BR0001", "BR0002"]  # listed from the bucket
    assert t["Metadata_Well"].tolist() == ["A01", "A02"] * 2  # one site per well
    assert t["Metadata_Perturbation"].tolist() == ["DMSO", "BRD-1"] * 2
    assert t["Metadata_ControlType"].tolist() == ["negcon", ""] * 2
    assert ld.read_site(0).shape == (5, 8, 8)


# ----------------------------------------------------------------------------- RxRx3 fake


HF = "huggingface.co"
RES = f"{HF}/datasets/recursionpharma/rxrx3-core/resolve/main"


def _jp2(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG2000")  # lossless by default
    return buf.getvalue()


def _rxrx3_tree(root, srv_routes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    res = root / RES
    (res / "data").mkdir(parents=True)
    wells = ["AA01", "AA02", "AA03", "AB02"]
    meta = pd.DataFrame({
        "well_id": [f"compound-001_1_{w}" for w in wells],
        "experiment_name": "compound-001", "plate": 1, "address": wells,
        "gene": np.nan, "treatment": ["CRISPR_control", "EMPTY_control", "lovastatin", "BI 2536"],
        "SMILES": ["", "", "C", "CC"], "concentration": [np.nan, np.nan, 0.25, 1.0],
        "perturbation_type": "COMPOUND", "cell_type": "HUVEC"})
    meta.to_csv(res / "metadata_rxrx3_core.csv", index=False)
    emb = pd.DataFrame(rng.normal(size=(4, 4)), columns=[f"feature_{j}" for j in range(4)])
    emb.insert(0, "well_id", ["compound-001_1_AA02", "compound-001_1_AA03",
                              "compound-001_1_AB02", "gene-999_1_A01"])
    emb.to_parquet(res / "OpenPhenom_rxrx3_core_embeddings.parquet", index=False)
    truth, keys, blobs = {}, [], []
    for w in wells:  # AA01 (CRISPR_control, dropped by the metadata reader) comes first
        for ch in range(1, 7):
            if w == "AA03" and ch == 6:
                continue  # an incomplete site: never used
            img = rng.integers(0, 255, (16, 16), dtype=np.uint8)
            truth[(w, ch)] = img
            keys.append(f"compound-001/Plate1/{w}_s1_{ch}")
            blobs.append({"bytes": _jp2(img), "path": None})
    tab = pa.table({"__key__": keys, "jp2": pa.array(blobs, pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]))})
    pq.write_table(tab, res / "data" / "train-00000-of-00002.parquet", row_group_size=5)
    listing = []
    for p in sorted(res.rglob("*")):
        if p.is_file():
            rel = p.relative_to(res).as_posix()
            b = p.read_bytes()
            listing.append({"type": "file", "path": rel, "size": len(b), "oid": "gitsha",
                            "lfs": {"oid": _sha(b), "size": len(b), "pointerSize": 130}})
    listing.append({"type": "file", "path": "data/train-00001-of-00002.parquet", "size": 1,
                    "lfs": {"oid": "0" * 64, "size": 1}})
    listing.append({"type": "directory", "path": "data"})
    srv_routes[f"/{HF}/api/datasets/recursionpharma/rxrx3-core/tree/main?recursive=true"] = (
        json.dumps(listing).encode())
    _efaar_tree(root)
    return truth, emb


EFAAR = "github.com/recursionpharma/EFAAR_benchmarking/raw/trunk/efaar_benchmarking/benchmark_annotations"
# a few real rows of each table (efaar-benchmarking's format: entity1,entity2, both directions)
PAIRS = {"CORUM": [("SUB1", "GTF3C3"), ("CDC23", "ANAPC7")], "HuMAP": [("GORASP1", "GOLGA2")],
         "Reactome": [("SH3GL2", "AP2S1")], "SIGNOR": [("GOLGA2", "GORASP1"), ("PPARD", "CAT")],
         "StringDB": [("NDUFA2", "COX7C")]}


def _efaar_tree(root):
    ann = root / EFAAR
    ann.mkdir(parents=True)
    for src, pairs in PAIRS.items():
        rows = [f"{a},{b}\n{b},{a}\n" for a, b in pairs]
        (ann / f"{src}.txt").write_text("entity1,entity2\n" + "".join(rows))
    (ann / "LICENSE").write_text("The datasets in this directory are subject to different terms "
                                 "and conditions.\n## CORUM.txt\n... CC-BY-NC 4.0 ...\n")


def test_rxrx3_core_end_to_end(tmp_path, capsys):
    from baselens.data.load_data import read_load_data
    from baselens.extract.precomputed import Precomputed
    from baselens.run.cli import main

    root = tmp_path / "srv"
    out = tmp_path / "rx"
    with FixtureServer(root) as srv:
        truth, emb = _rxrx3_tree(root, srv.routes)
        srv.rule(f"/{RES}/OpenPhenom_rxrx3_core_embeddings.parquet", cut_after=50)
        argv = ["download", "rxrx3-core", "--max-sites", "2", "--base-url", srv.url,
                "--out", str(out), "--backoff", "0"]
        assert main(argv) == 0
        n = len(srv.requests)
        assert main(argv) == 0
        assert len(srv.requests) == n  # idempotent
    text = capsys.readouterr().out
    assert 'name = "precomputed"' in text
    ld = read_load_data(out / "load_data.parquet")
    t = ld.table
    assert len(ld) == 2 and ld.channels == ["DNA", "ER", "Actin", "RNA", "Mito", "WGA"]
    assert t["Metadata_Well"].tolist() == ["AA02", "AB02"]  # AA03 lacks channel 6
    assert t["Metadata_Plate"].tolist() == ["compound-001_Plate1"] * 2
    assert t["Metadata_Batch"].tolist() == ["compound-001"] * 2
    assert t["Metadata_ControlType"].tolist() == ["negcon", ""]
    assert t["Metadata_Perturbation"].tolist() == ["EMPTY_control", "BI 2536@1"]  # name@dose
    assert t["Metadata_Concentration"].iloc[1] == 1.0
    site = ld.read_site(1)
    for ch in range(1, 7):
        np.testing.assert_array_equal(site[ch - 1], truth[("AB02", ch)])
    man = json.loads((out / "manifest.json").read_text())
    for rel in ("metadata_rxrx3_core.csv", "OpenPhenom_rxrx3_core_embeddings.parquet",
                "data/train-00000-of-00002.parquet"):
        assert man["files"][rel]["verified"], rel  # LFS sha256 from the Hub listing
    assert man["outputs"]["embeddings"]["embedding_wells_without_metadata"] == 1
    # the shipped embeddings, re-keyed by plate/well, feed the precomputed extractor
    pre = Precomputed(path=str(out / "openphenom_embeddings.parquet"), keys="well",
                      features="feature_")
    pre.fit(ld)
    got = pre.tables["default"].lookup(t)
    want = emb.set_index("well_id").loc[["compound-001_1_AA02", "compound-001_1_AB02"]]
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-6)


def test_rxrx3_annotations_for_the_protocol_and_their_terms(tmp_path):
    """The relationship tables land in DIR/annotations/, where rxrx3_core.toml's default
    ${annotations_dir} (= ${data_dir}/annotations) finds them; the summary says which are
    non-commercial; --no-annotations fetches none."""
    from baselens.data.annotations import read_relationship_pairs
    from baselens.data.datasets import download_dataset
    from baselens.run.config import RunConfig

    root = tmp_path / "srv"
    out = tmp_path / "rx"
    lines: list[str] = []
    with FixtureServer(root) as srv:
        _rxrx3_tree(root, srv.routes)
        rep = download_dataset("rxrx3-core", out, max_sites=1, embeddings=False,
                               base_url=srv.url, backoff=0, log=lines.append)
        assert srv.count(f"/{EFAAR}/CORUM.txt") == 1
        n = len(srv.requests)
        bare = download_dataset("rxrx3-core", tmp_path / "bare", max_sites=1, embeddings=False,
                                annotations=False, base_url=srv.url, log=lambda m: None)
        assert not any("EFAAR" in p for _, p, _ in srv.requests[n:])
    assert rep.annotations == out / "annotations"
    for src, pairs in PAIRS.items():
        got = read_relationship_pairs(out / "annotations" / f"{src}.txt")
        assert len(got) == 2 * len(pairs) and set(got["source"]) == {src}
    assert "CC-BY-NC" in (out / "annotations" / "LICENSE").read_text()
    assert rep.counts["annotation_pairs"] == {k: 2 * len(v) for k, v in PAIRS.items()}
    text = "\n".join(lines)
    assert "CORUM and SIGNOR are CC-BY-NC 4.0" in rep.text and "do not redistribute" in rep.text
    assert rep.text in text  # the summary is printed
    man = json.loads((out / "manifest.json").read_text())
    assert man["outputs"]["annotations"]["licences"]["SIGNOR"] == "CC-BY-NC 4.0"
    cfg = RunConfig.from_toml("protocols/rxrx3_core.toml", variables={"data_dir": out})
    assert [Path(a).stem for a in cfg.data["annotations"]] == list(PAIRS)
    assert all(Path(a).is_file() for a in cfg.data["annotations"])
    assert bare.annotations is None and not (tmp_path / "bare" / "annotations").exists()
    assert "CC-BY-NC" not in bare.text


def _tiff_requests(srv) -> set[tuple[str, str]]:
    """(plate, well column) of every TIFF requested: r01c<col>f<site>p01-ch<n>…"""
    import re

    got = set()
    for m, p, _ in srv.requests:
        hit = re.search(r"/(BR\d+)__.*/r01c(\d\d)f(\d\d)p01-ch\d", p)
        if m == "GET" and hit:
            got.add((hit[1], f"A{hit[2]}", int(hit[3])))
    return got


def test_jump_cp_control_wells_before_max_sites(tmp_path):
    """--wells controls keeps DMSO and the positive controls, and --max-sites counts after
    that filter: with a compound in the first well, 2 sites per plate are the first site of
    each control well; without the filter they would be the compound's and DMSO's."""
    from baselens.data.datasets import download_dataset
    from baselens.data.load_data import read_load_data

    root = tmp_path / "srv"
    _jump_tree(root, jcp={"A01": CPD1, "A02": EMPTY, "A03": DMSO, "A04": AMG900})
    with FixtureServer(root) as srv:
        rep = download_dataset("jump-cp", tmp_path / "ctl", plates=["BR0001", "BR0002"],
                               wells="controls", sites_per_well=1, max_sites=2,
                               base_url=srv.url, log=lambda m: None)
        assert _tiff_requests(srv) == {(p, w, 1) for p in ("BR0001", "BR0002")
                                       for w in ("A03", "A04")}
        n = len(srv.requests)
        every = download_dataset("jump-cp", tmp_path / "all", plates=["BR0001"],
                                 sites_per_well=1, max_sites=2, base_url=srv.url,
                                 log=lambda m: None)
        srv.requests[:n] = []
        assert _tiff_requests(srv) == {("BR0001", "A01", 1), ("BR0001", "A03", 1)}
    t = read_load_data(rep.load_data, illum=True).table
    assert t["Metadata_Well"].tolist() == ["A03", "A04"] * 2
    assert t["Metadata_ControlType"].tolist() == ["negcon", "poscon"] * 2
    assert t["Metadata_Perturbation"].tolist() == [DMSO, AMG900] * 2
    c = rep.counts["plates"][0]
    # 8 sites, 2 of the empty well dropped by the join, 2 of the compound well not controls
    assert (c["sites_in_table"], c["sites_annotated"], c["sites_outside_wells"],
            c["sites_selected"]) == (8, 6, 2, 2)
    assert read_load_data(every.load_data).table["Metadata_Well"].tolist() == ["A01", "A03"]
    with pytest.raises(ValueError, match="wells must be one of"):
        download_dataset("jump-cp", tmp_path / "x", wells="treatments")


def test_cpg_control_wells_use_the_platemap(tmp_path):
    """The generic Gallery plan annotates from the platemap before choosing sites, so
    --wells controls works there too (solvent-only wells are negcon)."""
    from baselens.data.datasets import download_dataset

    root = tmp_path / "srv"
    _cpg_tree(root, "BR0001,MAP1\n",
              "A01\tBRD-1\tDMSO\nA02\tBRD-2\tDMSO\nA03\t\tDMSO\nA04\tBRD-3\tDMSO\n")
    with FixtureServer(root) as srv:
        rep = download_dataset("cpg0000-jump-pilot", tmp_path / "cpg", source="source_4",
                               batch="2021_08_23_Batch12", plates=["BR0001"], wells="controls",
                               max_sites=None, base_url=srv.url, log=lambda m: None)
    t = pd.read_parquet(rep.load_data)
    assert t["Metadata_Well"].tolist() == ["A03", "A03"] and t["Metadata_Site"].tolist() == [1, 2]
    assert (t["Metadata_Perturbation"] == "DMSO").all() and rep.counts["negcon_sites"] == 2


HUB = "s3.amazonaws.com/data.clue.io/repurposing/downloads"
# the published files' layout: 9 "!" lines, then a tab-separated table
HUB_HEAD = ("!Source\t\"The Drug Repurposing Hub, Broad Institute\"\n!URL\thttp://www.broadinstitute.org/repurposing\n"
            "!File_date\t3/24/2020\n!Table_name\t{}\n!API_available\tWe suggest using the available data API\n"
            "!Disclaimer\tFor research use only.\n!Restrictions\tThe Drug Repurposing Hub data is provided "
            "for non-commercial use only.\n!Citation\t\"Please cite usage as: Corsello SM, et al.\"\n"
            "!Contact\trepurposing@broadinstitute.org\n")


def _hub_tree(root) -> dict[str, str]:
    hub = root / HUB
    hub.mkdir(parents=True)
    drugs = HUB_HEAD.format("drug information") + (
        "pert_iname\tclinical_phase\tmoa\ttarget\tdisease_area\tindication\n"
        "AMG-900\tPhase 1\tAurora kinase inhibitor\tAURKA|AURKB\toncology\tsolid tumor\n"
        "(R)-(-)-rolipram\tPreclinical\tphosphodiesterase inhibitor\tPDE4B\t\t\n"
        "(S)-(+)-rolipram\tPreclinical\tphosphodiesterase inhibitor|PDE4 inhibitor\tPDE4B\t\t\n"
        "dimethyl-sulfoxide\tLaunched\tsolvent\t\t\t\n"
        "no-moa-drug\tLaunched\t\t\t\t\n")
    samples = HUB_HEAD.format("sample information") + (
        "broad_id\tpert_iname\tqc_incompatible\tpurity\tvendor\tcatalog_no\tvendor_name\t"
        "expected_mass\tsmiles\tInChIKey\tpubchem_cid\tdeprecated_broad_id\n"
        "BRD-K1\tAMG-900\t0\t98\tSelleck\tS1\tAMG-900\t503.2\tC\tIVUGFMLRJOCGAS-UHFFFAOYSA-N\t1\t\n"
        "BRD-K2\tAMG-900\t0\t97\tTocris\tT1\tAMG 900\t503.2\tC\tIVUGFMLRJOCGAS-UHFFFAOYSA-N\t1\t\n"
        "BRD-K3\t(R)-(-)-rolipram\t0\t93\tTocris\t1349\t(R)-(-)-Rolipram\t275.2\tC\tHJORMJIFDVBMOB-LBPRGKRZSA-N\t448055\t\n"
        "BRD-K4\t(S)-(+)-rolipram\t0\t94\tTocris\t1350\t(S)-(+)-Rolipram\t275.2\tC\tHJORMJIFDVBMOB-GFCCVEGCSA-N\t158758\t\n"
        "BRD-K5\tdimethyl-sulfoxide\t0\t99\tSigma\tD1\tDMSO\t78.0\tCS(C)=O\tIAZDPXIOMUYVGZ-UHFFFAOYSA-N\t679\t\n")
    files = {"repurposing_drugs_20200324.txt": drugs, "repurposing_samples_20200324.txt": samples}
    for name, text in files.items():
        (hub / name).write_text(text)
    return {name: _sha(text.encode()) for name, text in files.items()}


def test_jump_cp_moa_from_the_repurposing_hub(tmp_path, monkeypatch):
    """--moa joins the Hub's MoAs to JUMP compounds through compound.csv.gz's InChIKey: full
    keys first, then the first block (a stereo-free JUMP key gets both rolipram
    enantiomers' MoAs); DMSO (negcon) gets none; the files' checksums are checked."""
    import baselens.data.datasets as ds
    import baselens.data.datasets.moa as moa_plan

    root = tmp_path / "srv"
    _jump_tree(root)
    monkeypatch.setattr(moa_plan, "REPURPOSING_HUB_FILES", _hub_tree(root))
    with FixtureServer(root) as srv:
        rep = ds.download_dataset("jump-cp", tmp_path / "j", plates=["BR0001"], max_sites=4,
                                  sites_per_well=1, moa=True, base_url=srv.url,
                                  log=lambda m: None)
    moa = pd.read_csv(tmp_path / "j" / "compound_moa.csv")
    assert list(moa.columns) == ["Metadata_Perturbation", "Metadata_JCP2022", "Metadata_moa"]
    assert moa.set_index("Metadata_Perturbation")["Metadata_moa"].to_dict() == {
        CPD1: "PDE4 inhibitor|phosphodiesterase inhibitor", AMG900: "Aurora kinase inhibitor"}
    c = rep.counts["compound_moa"]
    assert (c["compounds_matched_full_inchikey"], c["compounds_matched_first_block"],
            c["negcon_unlabelled"]) == (2, 1, 1)
    # sites: A02 DMSO, A03 AMG900, A04 CPD1 (one each): both compounds are labelled
    assert (c["downloaded_compounds"], c["downloaded_compounds_labelled"]) == (2, 2)
    man = json.loads((tmp_path / "j" / "manifest.json").read_text())
    assert all(man["files"][f"moa/{n}"]["verified"] for n in ds.REPURPOSING_HUB_FILES)
    assert "non-commercial" in rep.text and str(rep.compound_moa) in rep.text


def test_jump_cp_moa_table_url_in_morphohelm_format(tmp_path):
    """--moa-table takes MorphoHELM's labeled_moa_samples.csv layout (one row per well,
    JCP2022 → Metadata_MoA) from a URL; 'negative_control' is no MoA."""
    from baselens.data.datasets import download_dataset

    root = tmp_path / "srv"
    _jump_tree(root)
    (root / "labels").mkdir()
    (root / "labels" / "labeled_moa_samples.csv").write_text(
        ",Metadata_Source,Metadata_Plate,Metadata_Well,Metadata_JCP2022,Metadata_PlateType,Metadata_MoA\n"
        f"0,source_4,BR0001,A04,{CPD1},COMPOUND,dopamine receptor antagonist|serotonin receptor antagonist\n"
        f"1,source_4,BR0002,A04,{CPD1},COMPOUND,dopamine receptor antagonist|serotonin receptor antagonist\n"
        f"2,source_4,BR0001,A03,{AMG900},COMPOUND,Aurora kinase inhibitor\n"
        f"3,source_4,BR0001,A02,{DMSO},COMPOUND,negative_control\n")
    with FixtureServer(root) as srv:
        url = f"{srv.url}/labels/labeled_moa_samples.csv"
        rep = download_dataset("jump-cp", tmp_path / "j", plates=["BR0001"], wells="controls",
                               sites_per_well=1, moa_table=url, base_url=srv.url,
                               log=lambda m: None)
        assert srv.count("/labels/labeled_moa_samples.csv") == 1
    moa = pd.read_csv(rep.compound_moa).set_index("Metadata_Perturbation")["Metadata_moa"]
    assert moa.to_dict() == {CPD1: "dopamine receptor antagonist|serotonin receptor antagonist",
                             AMG900: "Aurora kinase inhibitor"}
    c = rep.counts["compound_moa"]
    assert c["joined_on"] == "Metadata_JCP2022" and c["label_rows_without_moa"] == 1
    # only control wells were fetched: AMG900 is the one non-negcon compound on them
    assert (c["downloaded_compounds"], c["downloaded_compounds_labelled"]) == (1, 1)
    assert url in rep.text


def test_jump_compound_moa_table_errors_name_the_columns(tmp_path):
    from baselens.data.datasets import DownloadError, jump_compound_moa
    from baselens.data.jump import JumpMetadata

    meta = JumpMetadata(root=tmp_path)
    bad = pd.DataFrame({"compound": ["x"], "mechanism": ["y"]})
    with pytest.raises(DownloadError, match="needs an MoA column.*'compound', 'mechanism'"):
        jump_compound_moa(bad, meta, source="my.csv")
    keyed = pd.DataFrame({"InChIKey": ["IAZDPXIOMUYVGZ-UHFFFAOYSA-N"], "moa": ["solvent"]})
    with pytest.raises(DownloadError, match="compound.csv.gz with Metadata_InChIKey"):
        jump_compound_moa(keyed, meta)
