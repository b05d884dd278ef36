"""Fail fast, fail clearly: what `stam-label run` checks before Ray starts or anything is created
(jobs/preflight.py), and which storage errors are retried (jobs/transient.py)."""
from __future__ import annotations

import pytest

from jobs.transient import is_transient


class CommitFailedError(Exception):
    """Stands in for deltalake's (classified by name)."""


class TableNotFoundError(Exception):
    pass


DELTA_NOT_A_DIR = ("Generic LocalFileSystem error\n  \x1b[31m↳\x1b[0m Unable to walk dir\n"
                   "   \x1b[31m↳\x1b[0m Not a directory (os error 20)\n")


@pytest.mark.parametrize("exc", [
    OSError("Generic S3 error: request timed out"),
    OSError("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate"),
    OSError("Generic S3 error: 503 Service Unavailable"),
    OSError("Connection reset by peer"),
    OSError("Throttling: Rate exceeded"),
    CommitFailedError("Transaction failed: a concurrent transaction deleted the same data"),
    OSError("something nobody has seen before"),  # unknown: the bounded retry is the safe side
])
def test_errors_that_can_pass_are_retried(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    OSError(DELTA_NOT_A_DIR),
    NotADirectoryError(20, "Not a directory"),
    FileNotFoundError(2, "No such file or directory"),
    PermissionError(13, "Permission denied"),
    OSError("When getting information for key 'x' in bucket 'b': AWS Error ACCESS_DENIED: Access Denied"),
    OSError("Generic S3 error: NoSuchBucket: The specified bucket does not exist"),
    OSError("When listing objects under key 'x' in bucket 'b': AWS Error NO_SUCH_BUCKET"),
    OSError("AWS Error INVALID_ACCESS_KEY_ID during HeadObject operation"),
    OSError("Generic S3 error: dispatch failure: Operation not supported"),
    TableNotFoundError("no log files"),
])
def test_errors_no_retry_changes_fail_at_once(exc):
    assert not is_transient(exc)


def client_error(status: int, code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "ListObjectsV2")


def test_s3_answers_by_their_status():
    assert is_transient(client_error(503, "SlowDown")) and is_transient(client_error(500, "InternalError"))
    assert is_transient(client_error(429, "TooManyRequests"))
    assert not is_transient(client_error(404, "NoSuchBucket")) and not is_transient(client_error(403, "AccessDenied"))


def test_a_transient_s3_answer_skips_the_check_rather_than_failing_the_run(monkeypatch):
    from jobs import preflight

    class Busy:
        def list_objects_v2(self, **_kw):
            raise client_error(503, "SlowDown")

    preflight.check_output("s3://busy/labels", Busy())  # a warning, no verdict
    with pytest.raises(preflight.StorageError, match="access denied"):
        preflight.check_output("s3://busy/labels", type("Refusing", (), {
            "list_objects_v2": lambda self, **_kw: (_ for _ in ()).throw(client_error(403, "AccessDenied"))})())


def test_botocore_missing_credentials_is_not_retried():
    from botocore.exceptions import NoCredentialsError

    assert not is_transient(NoCredentialsError())


# ---- through the command line: before Ray, before anything is created -------------------------
def run_cli(*args):
    """`stam-label run ...` in this process; returns (result, seconds)."""
    import time

    from click.testing import CliRunner

    from jobs.cli import main

    started = time.monotonic()
    result = CliRunner().invoke(main, ["run", *[str(a) for a in args]])
    return result, time.monotonic() - started


def assert_refused(result, seconds, *words):
    assert result.exit_code == 3, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: "), result.output
    for word in words:
        assert word in message, message
    assert seconds < 5, f"took {seconds:.1f} s"


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    return folder


def test_output_that_is_a_file_is_refused_at_once(tmp_path, videos):
    import subprocess
    import sys
    import time
    from pathlib import Path

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.monotonic()  # the installed command: interpreter start-up included
    out = subprocess.run([str(Path(sys.executable).parent / "stam-label"), "run", str(videos), str(afile)],
                         check=False, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert out.returncode == 3, out.stderr
    assert out.stderr.strip() == f"Error: {afile}: output is a file, not a folder (OUTPUT is a folder or an s3:// prefix)"
    assert seconds < 10, f"took {seconds:.1f} s"  # was 110 s (7 retries); the rest is Python starting
    assert afile.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_under_a_file_is_refused(tmp_path, videos):
    (tmp_path / "afile").write_text("")
    assert_refused(*run_cli(videos, tmp_path / "afile" / "labels"), "afile is a file")


def test_missing_input_creates_nothing(tmp_path):
    result, seconds = run_cli(tmp_path / "nope", tmp_path / "out")
    assert_refused(result, seconds, str(tmp_path / "nope"), "input does not exist")
    assert not (tmp_path / "out").exists()


def test_missing_manifest_creates_nothing(tmp_path):
    result, seconds = run_cli(tmp_path / "list.csv", tmp_path / "out")
    assert_refused(result, seconds, "input manifest does not exist")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credentials anywhere botocore looks (and no instance-role lookup: not on EC2)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_s3_output_without_credentials_says_so(local_s3, no_aws_credentials, videos):
    result, seconds = run_cli(videos, "s3://labels-bucket/out")
    assert_refused(result, seconds, "s3://labels-bucket/out", "no AWS credentials found")
    assert "aws_config" not in result.output and "WARN" not in result.output


def test_s3_output_bucket_missing(local_s3, videos):
    result, seconds = run_cli(videos, "s3://no-such-bucket-here/out")
    assert_refused(result, seconds, "s3://no-such-bucket-here/out", "bucket does not exist")


def test_s3_input_bucket_missing(local_s3, tmp_path):
    result, seconds = run_cli("s3://no-such-bucket-here/videos", tmp_path / "out")
    assert_refused(result, seconds, "s3://no-such-bucket-here/videos", "bucket does not exist")
    assert not (tmp_path / "out").exists()


def test_usable_input_and_output_pass(local_s3, tmp_path, videos):
    from jobs import preflight

    local_s3.create_bucket("preflight-ok")
    preflight.check(str(videos), "s3://preflight-ok/labels")
    preflight.check(str(videos), str(tmp_path / "new" / "labels"))  # made later by the run, not here
    assert not (tmp_path / "new").exists()


def test_a_folder_named_like_a_manifest_is_one_thing_to_preflight_and_listing(tmp_path):
    """`clips.csv/` (trailing slash) is a folder to both; `clips.csv` is a manifest to both."""
    from jobs import preflight
    from jobs.listing import input_kind, list_here
    from jobs.storage import StorageError
    from jobs.tools.samples import make_sample_video

    folder = tmp_path / "clips.csv"
    folder.mkdir()
    make_sample_video(folder / "a.mp4", seed=1, seconds=0.5, fps=4, size=(32, 32))
    as_folder = str(folder) + "/"
    assert input_kind(as_folder) == "tree" and input_kind(str(folder)) == "manifest"
    preflight.check(as_folder, str(tmp_path / "out"))
    listed = list_here(as_folder, extensions=(".mp4",), max_rows=10, max_seconds=5)
    assert listed["video_uri"].to_pylist() == [str(folder / "a.mp4")]
    with pytest.raises(StorageError, match=r"clips.csv: input manifest is not a file \(a folder's URI ends with /\)"):
        preflight.check(str(folder), str(tmp_path / "out"))
    assert list_here(str(folder), extensions=(".mp4",), max_rows=10, max_seconds=5) is None  # a manifest: Ray reads it
