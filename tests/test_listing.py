"""jobs.listing.list_source: folders, S3 prefixes, manifests and S3 Inventory reports as Ray Datasets.

Real files, a real moto S3 server (local_s3) and the test Ray head (ray_head), whose workers
inherit the S3 settings, as a cluster's would through their environment.
"""
from __future__ import annotations

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.listing import LISTING_SCHEMA, list_source
from jobs.storage import StorageError, local_key, local_path


@pytest.fixture(scope="module")
def ray_cluster(ray_head):
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_head, include_dashboard=False, log_to_driver=False)
    yield ray_head


def rows(ds) -> dict[str, dict]:
    """uri -> row; also checks the schema and that each uri is listed once."""
    tables = [t for t in ds.iter_batches(batch_format="pyarrow") if t.num_rows]
    table = pa.concat_tables(tables) if tables else LISTING_SCHEMA.empty_table()
    assert table.schema.names == LISTING_SCHEMA.names
    for name in LISTING_SCHEMA.names:
        assert table.schema.field(name).type == LISTING_SCHEMA.field(name).type, name
    out = {r["video_uri"]: r for r in table.to_pylist()}
    assert len(out) == table.num_rows, "a video_uri listed twice"
    return out


def bucket_for(local_s3, tmp_path) -> str:
    name = f"l-{tmp_path.name.lower().replace('_', '-')}"[:60].rstrip("-")
    local_s3.create_bucket(name)
    return name


def non_utf8_name(folder, stem: bytes = b"caf\xe9") -> bytes:
    """Create a file whose name is not UTF-8; skip where the filesystem refuses it."""
    path = os.path.join(os.fsencode(folder), stem + b".mp4")
    try:
        with open(path, "wb") as f:
            f.write(b"latin-1 name")
    except OSError as exc:
        pytest.skip(f"the filesystem refuses non-UTF-8 names: {exc}")
    return path


# ---- keys ---------------------------------------------------------------------------------------
def test_local_key_and_local_path_round_trip(tmp_path):
    raw = non_utf8_name(tmp_path)
    key = local_key(raw)
    assert key == "file://" + os.fsdecode(os.fsencode(str(tmp_path))) + "/caf%E9.mp4"
    with open(local_path(key), "rb") as f:
        assert f.read() == b"latin-1 name"
    assert local_key(local_path(key)) == key and local_key(key) == key
    # Valid UTF-8 stays a plain normalised absolute path, whichever way it is spelled.
    assert local_key("file:///data/caf%C3%A9.mp4") == "/data/café.mp4"
    assert local_key("/data//x/../café.mp4") == "/data/café.mp4"
    assert local_key("./a.mp4", "/data/dir") == local_key("a.mp4", "/data/dir") == "/data/dir/a.mp4"
    for uri in ("/data/café.mp4", "s3://b/k/./a//b.mp4"):
        assert local_path(uri) == uri


# ---- folders ------------------------------------------------------------------------------------
def test_folder_listing_nested_filtered_and_special_files(tmp_path, ray_cluster):
    root = tmp_path / "v"
    for rel in ("a.MP4", "x/b.webm", "x/y/z/c.mkv", "x/y/notes.txt", "clips.mp4/inside.mov", "w/v/u/t/d.avi"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * 5)
    os.mkfifo(root / "pipe.mp4")
    os.symlink(root / "nowhere.mp4", root / "broken.mp4")
    os.symlink(root / "loop.mp4", root / "loop.mp4")
    os.symlink(root / "x" / "b.webm", root / "link.mp4")
    raw = non_utf8_name(root / "x")

    got = rows(list_source(str(root) + "/"))
    ok = {u: r for u, r in got.items() if r["error_kind"] is None}
    assert sorted(ok) == sorted([str(root / p) for p in ("a.MP4", "x/b.webm", "x/y/z/c.mkv", "clips.mp4/inside.mov",
                                                         "w/v/u/t/d.avi", "link.mp4")] + [local_key(raw)])
    for uri, r in ok.items():
        st = os.stat(local_path(uri))
        assert r["source_size"] == st.st_size and r["source_version"] == f"{st.st_size}:{st.st_mtime_ns}"
    errors = {u[len(str(root)) + 1:]: (r["error_kind"], r["error"]) for u, r in got.items() if r["error_kind"]}
    assert {k: kind for k, (kind, _) in errors.items()} == {
        "pipe.mp4": "not_a_file", "clips.mp4": "not_a_file", "broken.mp4": "not_found", "loop.mp4": "not_a_file"}
    assert errors["pipe.mp4"][1] == f"{root}/pipe.mp4: is a FIFO"
    assert "folder" in errors["clips.mp4"][1] and "broken symbolic link" in errors["broken.mp4"][1]
    assert "loop" in errors["loop.mp4"][1]
    # The file:// key of the non-UTF-8 name opens the file.
    with open(local_path(local_key(raw)), "rb") as f:
        assert f.read() == b"latin-1 name"

    assert rows(list_source(str(root), extensions=(".AVI",))) == {str(root / "w/v/u/t/d.avi"): ok[str(root / "w/v/u/t/d.avi")]}


def test_missing_or_empty_folder(tmp_path, ray_cluster):
    with pytest.raises(StorageError, match=r"absent: input does not exist"):
        list_source(str(tmp_path / "absent"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="not a folder"):
        list_source(str(tmp_path / "file"))
    (tmp_path / "empty").mkdir()
    assert list_source(str(tmp_path / "empty")).count() == 0


# ---- local manifests ----------------------------------------------------------------------------
def test_txt_manifest_spellings_collapse_and_non_utf8_names(tmp_path, ray_cluster):
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "a.mp4").write_bytes(b"aaa")
    raw = non_utf8_name(d)
    manifest = d / "list.txt"
    manifest.write_bytes(b"\n".join([
        b"# a comment", b"a.mp4", b"./a.mp4", b"  " + os.fsencode(d / "a.mp4") + b"  ", b"sub/../a.mp4",
        b"file://" + os.fsencode(d / "a.mp4"), b"", raw, os.path.basename(raw),
        local_key(raw).encode(), b"missing.mp4", b"ftp://host/x.mp4"]) + b"\n")
    got = rows(list_source(str(manifest)))
    a, weird = str(d / "a.mp4"), local_key(raw)
    assert sorted(got) == sorted([a, weird, str(d / "missing.mp4"), "ftp://host/x.mp4"])
    assert got[a]["source_size"] == 3 and got[a]["error_kind"] is None
    assert got[weird]["source_size"] == len(b"latin-1 name")
    with open(local_path(weird), "rb") as f:
        assert f.read() == b"latin-1 name"
    assert got[str(d / "missing.mp4")]["error_kind"] == "not_found"
    assert got["ftp://host/x.mp4"]["error_kind"] == "invalid_uri"
    assert str(manifest) in got["ftp://host/x.mp4"]["error"]


def test_csv_and_parquet_manifests_with_and_without_versions(tmp_path, local_s3, ray_cluster):
    (tmp_path / "a.mp4").write_bytes(b"aaaa")
    csv = tmp_path / "m.csv"
    csv.write_text(f"video_uri,size,source_version\na.mp4,10,v1\n{tmp_path}/a.mp4,10,v1\n"
                   "s3://nowhere-bucket/gone.mp4,7,v7\n")
    got = rows(list_source(str(csv)))
    # Size and version used as they are: nothing stat'ed, so no not_found for the absent object.
    assert got == {
        str(tmp_path / "a.mp4"): {"video_uri": str(tmp_path / "a.mp4"), "source_size": 10, "source_version": "v1",
                                  "error_kind": None, "error": None},
        "s3://nowhere-bucket/gone.mp4": {"video_uri": "s3://nowhere-bucket/gone.mp4", "source_size": 7,
                                         "source_version": "v7", "error_kind": None, "error": None}}

    bucket = bucket_for(local_s3, tmp_path)
    local_s3.client().put_object(Bucket=bucket, Key="v/b.mp4", Body=b"b" * 9)
    pq.write_table(pa.table({"video_uri": [f"s3://{bucket}/v/b.mp4", f"s3://{bucket}/v/b.mp4", f"s3://{bucket}/v/c.mp4",
                                           "a.mp4", "s3://", "s3://bucket-only"]}), tmp_path / "m.parquet")
    got = rows(list_source(str(tmp_path / "m.parquet")))
    assert got[f"s3://{bucket}/v/b.mp4"]["source_size"] == 9
    assert got[f"s3://{bucket}/v/b.mp4"]["source_version"].startswith("9:")
    assert got[f"s3://{bucket}/v/c.mp4"]["error_kind"] == "not_found"
    assert got[str(tmp_path / "a.mp4")]["source_version"].startswith("4:")
    assert got["s3://"]["error_kind"] == got["s3://bucket-only"]["error_kind"] == "invalid_uri"
    assert len(got) == 5


def test_unusable_manifests_fail_before_any_work(tmp_path, local_s3):
    with pytest.raises(StorageError, match="gone.txt: manifest does not exist"):
        list_source(str(tmp_path / "gone.txt"))
    (tmp_path / "bad.csv").write_text("path\nx.mp4\n")
    with pytest.raises(StorageError, match="video_uri"):
        list_source(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(StorageError, match="bad.parquet: cannot read manifest"):
        list_source(str(tmp_path / "bad.parquet"))
    with pytest.raises(StorageError, match="manifest does not exist"):
        list_source("s3://no-such-bucket-here/m.txt")
    with pytest.raises(StorageError, match="bucket does not exist"):
        list_source("s3://no-such-bucket-here/videos")


# ---- S3 -----------------------------------------------------------------------------------------
def test_s3_prefix_listing_sub_prefixes_and_odd_keys(tmp_path, local_s3, ray_cluster):
    bucket = bucket_for(local_s3, tmp_path)
    client = local_s3.client()
    keys = ["in/a.mp4", "in/2026/01/b.MKV", "in/2026/02/03/c.webm", "in/x/./d.mp4", "in/y//e.mp4", "in//f.mp4",
            "in/z/../g.mp4", "in/notes.txt", "in/dir.mp4/", "in2/h.mp4", "other/i.mp4"]
    for i, key in enumerate(keys):
        client.put_object(Bucket=bucket, Key=key, Body=b"v" * (i + 1))
    expected = {f"s3://{bucket}/{k}" for k in keys[:7]}
    for spelling in (f"s3://{bucket}/in", f"s3://{bucket}/in/"):
        got = rows(list_source(spelling))
        assert set(got) == expected
        assert all(r["error_kind"] is None for r in got.values())
    # A prefix listing and a stat of the same objects give the same versions.
    manifest = tmp_path / "m.txt"
    manifest.write_text("\n".join(sorted(expected)) + "\n")
    stat = rows(list_source(str(manifest)))
    assert {u: (r["source_size"], r["source_version"]) for u, r in stat.items()} == \
           {u: (r["source_size"], r["source_version"]) for u, r in got.items()}
    assert got[f"s3://{bucket}/in/a.mp4"]["source_size"] == 1
    assert rows(list_source(f"s3://{bucket}/empty/")) == {}


def test_s3_manifest_local_paths_need_permission(tmp_path, local_s3, ray_cluster):
    bucket = bucket_for(local_s3, tmp_path)
    (tmp_path / "local.mp4").write_bytes(b"12345")
    local_s3.client().put_object(Bucket=bucket, Key="v/a.mp4", Body=b"abc")
    local_s3.client().put_object(Bucket=bucket, Key="m/list.txt", Body="\n".join(
        [f"s3://{bucket}/v/a.mp4", str(tmp_path / "local.mp4"), "relative.mp4"]).encode())
    uri = f"s3://{bucket}/m/list.txt"

    got = rows(list_source(uri))
    assert got[f"s3://{bucket}/v/a.mp4"]["error_kind"] is None
    refused = got[str(tmp_path / "local.mp4")]
    assert refused["error_kind"] == "not_allowed" and "--allow-local-paths" in refused["error"] and uri in refused["error"]
    assert got["relative.mp4"]["error_kind"] == "not_allowed"

    got = rows(list_source(uri, allow_local_paths=True))
    assert got[str(tmp_path / "local.mp4")]["source_size"] == 5 and got[str(tmp_path / "local.mp4")]["error_kind"] is None
    assert got["relative.mp4"]["error_kind"] == "invalid_uri"


# ---- S3 Inventory -------------------------------------------------------------------------------
def test_s3_inventory_csv_gz_and_parquet(tmp_path, local_s3, ray_cluster):
    import datetime as dt

    bucket = bucket_for(local_s3, tmp_path)
    client = local_s3.client()
    modified = "2026-11-01T02:03:04.000Z"
    seconds = int(dt.datetime(2026, 11, 1, 2, 3, 4, tzinfo=dt.timezone.utc).timestamp())
    csv_rows = [
        (bucket, "videos/a%20b+c.mp4", "10", modified, "etag-a", "true", "false"),  # "a b c.mp4"
        (bucket, "videos/caf%C3%A9/x%2By.MOV", "11", modified, "etag-b", "true", "false"),  # "café/x+y.MOV"
        (bucket, "videos/notes.txt", "12", modified, "etag-c", "true", "false"),
        (bucket, "videos/old.mp4", "13", modified, "etag-d", "false", "false"),  # not the current version
        (bucket, "videos/deleted.mp4", "", modified, "", "true", "true"),  # delete marker
    ]
    body = "".join(",".join(f'"{v}"' for v in r) + "\n" for r in csv_rows).encode()
    client.put_object(Bucket=bucket, Key="inv/data/one.csv.gz", Body=gzip.compress(body))
    csv_manifest = {"sourceBucket": bucket, "destinationBucket": f"arn:aws:s3:::{bucket}", "fileFormat": "CSV",
                    "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag, IsLatest, IsDeleteMarker",
                    "files": [{"key": "inv/data/one.csv.gz", "size": 1, "MD5checksum": "x"}]}
    client.put_object(Bucket=bucket, Key="inv/2026-11-02T00-00Z/manifest.json", Body=json.dumps(csv_manifest).encode())

    table = pa.table({"bucket": [bucket, bucket], "key": ["videos/p q.mp4", "videos/skip.json"],
                      "size": pa.array([20, 21], pa.int64()),
                      "last_modified_date": pa.array([seconds * 1000] * 2, pa.timestamp("ms", tz="UTC")),
                      "e_tag": ["etag-p", "etag-q"]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    client.put_object(Bucket=bucket, Key="inv/data/two.parquet", Body=sink.getvalue().to_pybytes())
    pq_manifest = dict(csv_manifest, fileFormat="Parquet", fileSchema="message s3.inventory { ... }",
                       files=[{"key": "inv/data/two.parquet", "size": 1, "MD5checksum": "x"}])
    (tmp_path / "manifest.json").write_text(json.dumps(pq_manifest))

    got = rows(list_source(f"s3://{bucket}/inv/2026-11-02T00-00Z/manifest.json"))
    assert got == {
        f"s3://{bucket}/videos/a b c.mp4": {"video_uri": f"s3://{bucket}/videos/a b c.mp4", "source_size": 10,
                                            "source_version": f"10:{seconds * 10**9}", "error_kind": None, "error": None},
        f"s3://{bucket}/videos/café/x+y.MOV": {"video_uri": f"s3://{bucket}/videos/café/x+y.MOV", "source_size": 11,
                                               "source_version": f"11:{seconds * 10**9}", "error_kind": None,
                                               "error": None}}
    got = rows(list_source(str(tmp_path / "manifest.json")))
    assert list(got) == [f"s3://{bucket}/videos/p q.mp4"]
    assert got[f"s3://{bucket}/videos/p q.mp4"]["source_version"] == f"20:{seconds * 10**9}"

    # The version matches what a prefix listing of that object gives.
    client.put_object(Bucket=bucket, Key="videos/real.mp4", Body=b"r" * 4)
    listed = rows(list_source(f"s3://{bucket}/videos/"))[f"s3://{bucket}/videos/real.mp4"]
    head = client.head_object(Bucket=bucket, Key="videos/real.mp4")
    assert listed["source_version"] == f"4:{int(head['LastModified'].timestamp()) * 10**9}"


# ---- least privilege ----------------------------------------------------------------------------
def test_s3_listing_and_stat_make_only_requests_the_policy_allows(local_s3, ray_cluster):
    """The requests list_source makes (driver and Ray workers) for a prefix and an S3 manifest,
    checked against infra/iam-policy.json with its input bucket renamed to this test's bucket."""
    import re

    from test_infra import iam_allows, job_locations, policy, s3_permissions

    (in_bucket, in_prefix), _ = job_locations()
    bucket = "lp-listing-archive"
    local_s3.create_bucket(bucket)
    client = local_s3.client()
    for key in (f"{in_prefix}/a.mp4", f"{in_prefix}/2026/01/b.mkv", f"{in_prefix}/2026/02/c.mp4", "elsewhere/d.mp4"):
        client.put_object(Bucket=bucket, Key=key, Body=b"\0" * 8)
    client.put_object(Bucket=bucket, Key=f"{in_prefix}/list.txt",
                      Body=f"s3://{bucket}/{in_prefix}/a.mp4\ns3://{bucket}/{in_prefix}/gone.mp4\n".encode())
    doc = json.loads(json.dumps(policy()).replace(f"arn:aws:s3:::{in_bucket}", f"arn:aws:s3:::{bucket}"))

    log_start = len(local_s3.request_log())
    listed = rows(list_source(f"s3://{bucket}/{in_prefix}"))
    stat = rows(list_source(f"s3://{bucket}/{in_prefix}/list.txt"))
    calls: list[tuple[str, str, int]] = []
    for line in local_s3.request_log()[log_start:].splitlines():
        match = re.search(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', re.sub(r"\x1b\[[\d;]*m", "", line))
        if match and match.group(2).startswith(f"/{bucket}"):
            calls.append((match.group(1), match.group(2), int(match.group(3))))
    assert len(listed) == 3 and stat[f"s3://{bucket}/{in_prefix}/gone.mp4"]["error_kind"] == "not_found"
    assert any("delimiter" in target for _, target, _ in calls), "no delimiter (split) listing seen"
    denied = []
    for method, target, status in calls:
        # A HEAD of a missing object needs ListBucket only for S3 to say 404 instead of 403 (moto
        # has no policy): the job then reports read_error instead of not_found, which is allowed.
        if method == "HEAD" and status == 404:
            status = 403
        for action, resource, context in s3_permissions(method, target, status):
            if not iam_allows(doc, action, resource, context):
                denied.append((method, target, status, action))
    assert not denied, denied
    assert not any("elsewhere" in target for _, target, _ in calls)
