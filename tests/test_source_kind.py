"""stam_core.storage.source_kind: the one rule for how a video source is opened."""
import io
from pathlib import Path

import pytest

from stam_core.storage import source_kind


@pytest.mark.parametrize(("source", "filesystem", "kind"), [
    ("videos/a.mp4", None, "path"),
    (Path("a.mp4"), None, "path"),
    ("s3://bucket/a/b.mp4", None, "uri"),
    ("s3://bucket/a//b.mp4", None, "s3_exact_key"),
    ("s3://bucket/a/./b.mp4", None, "s3_exact_key"),
    ("bucket/a.mp4", object(), "uri"),  # any str with a filesystem is the filesystem's
    (b"\x00", None, "bytes"),
    (io.BytesIO(b"x"), None, "file"),
])
def test_source_kind(source, filesystem, kind):
    assert source_kind(source, filesystem) == kind


def test_source_kind_refuses_other_types():
    with pytest.raises(TypeError, match="unsupported video source"):
        source_kind(42)
