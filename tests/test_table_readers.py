"""A label table made by the job reads with plain tools, file by file; export's usage errors.

The README promises that every data file reads whole with pyarrow + pandas (list columns
included: a `string_view` in the files' Arrow schema used to break that) and with DuckDB's
read_parquet.
"""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from jobs.cli import main


def _data_files(table_dir):
    from deltalake import DeltaTable

    # The current version's files, as the Delta log lists them (the folder holds run plans too).
    files = [uri.removeprefix("file://") for uri in DeltaTable(str(table_dir)).file_uris()]
    assert files, f"no data files under {table_dir}"
    return files


def test_every_data_file_reads_with_pyarrow_and_pandas(windowed_labels):
    for path in _data_files(windowed_labels):
        df = pq.read_table(path).to_pandas()
        assert len(df) and isinstance(list(df["labels"].dropna().iloc[0]), list)


def test_every_data_file_reads_with_duckdb(windowed_labels):
    duckdb = pytest.importorskip("duckdb")
    for path in _data_files(windowed_labels):
        rows = duckdb.sql(f"SELECT labels, frame_indices FROM read_parquet('{path}')").fetchall()
        assert rows and any(isinstance(labels, list) for labels, _ in rows)


def test_export_unknown_column_is_a_usage_error(windowed_labels, tmp_path):
    result = CliRunner().invoke(main, ["export", str(windowed_labels), str(tmp_path / "x.csv"),
                                       "--columns", "video_uri,nope"])
    assert result.exit_code == 2, result.output
    assert "'nope'" in result.output and "--columns" in result.output and "video_uri" in result.output


def test_readme_pandas_one_line_gives_every_column(windowed_labels):
    import pandas as pd
    from deltalake import DeltaTable

    df = pd.concat(pq.read_table(f).to_pandas() for f in DeltaTable(str(windowed_labels)).file_uris())
    assert set(DeltaTable(str(windowed_labels)).schema().to_arrow().names) <= set(df.columns)
    assert len(df) == 4 and all(isinstance(list(v), list) for v in df["labels"])


def test_duckdb_delta_scan(windowed_labels):
    """The README's DuckDB route; the delta extension must be installed beforehand (network once)."""
    duckdb = pytest.importorskip("duckdb")
    try:
        duckdb.sql("LOAD delta")
    except duckdb.Error as exc:  # not installed here, and no network to autoload it
        pytest.skip(f"DuckDB's delta extension is not installed: {str(exc).splitlines()[0]}")
    count = duckdb.sql(f"SELECT count(*) FROM delta_scan('{windowed_labels}')").fetchall()[0][0]
    assert count == 4
