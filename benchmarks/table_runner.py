"""How benchmarks/table.py runs its experiments: each in a fresh process, on a fresh copy of the table."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from table_experiments import exp_mix, exp_mixed, exp_new, exp_open, exp_relabel, exp_scattered
from table_skipset import exp_skipset

# The child process is table.py itself (its hidden --child options), so that sys.path is the same.
SCRIPT = str(Path(__file__).with_name("table.py"))

EXPERIMENTS = {"new": exp_new, "mix": exp_mix, "mixed": exp_mixed, "relabel": exp_relabel, "scattered": exp_scattered,
               "skipset": exp_skipset, "open": exp_open}


def child(args) -> None:
    """One experiment, in this (fresh) process; prints its result as the last JSON line."""
    kwargs = json.loads(args.child_kwargs)
    if args.s3:
        os.environ.update(json.loads(os.environ["BENCH_AWS_ENV"]))
    result = EXPERIMENTS[args.child](args.table, args.rows[0], **kwargs)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(name: str, table_uri: str, rows: int, s3: bool, timeout: float = 900, attempts: int = 2,
              **kwargs) -> dict:
    """The experiment in a fresh process; one retry (Ray Data 2.60 can fail the first read_parquet
    of several files in a process: see the note in docs/benchmarks.md); failures are counted."""
    cmd = [sys.executable, SCRIPT, "--child", name, "--table", table_uri, "--rows", str(rows),
           "--child-kwargs", json.dumps(kwargs)] + (["--s3"] if s3 else [])
    failures = []
    for _ in range(attempts):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not out.returncode and lines:
            result = json.loads(lines[-1][len("RESULT "):])
            if failures:
                result["failed_tries"] = failures
            return result
        log = Path(tempfile.gettempdir()) / f"bench-table-{name}-{os.getpid()}-{len(failures)}.stderr"
        log.write_text(out.stderr)
        last = [line for line in out.stderr.splitlines() if line.strip() and not set(line.strip()) <= set("^~")]
        failures.append(f"{last[-1][:200] if last else out.returncode} (stderr: {log})")
    raise RuntimeError(f"{name} failed {attempts} times: {failures}")


class Copier:
    """A fresh copy of the pristine table for each experiment (local folder or S3 prefix)."""

    def __init__(self, s3, root: str):
        self.s3, self.root, self.n = s3, root, 0

    def copy(self, src: str) -> str:
        self.n += 1
        if self.s3 is None:
            dst = f"{self.root}/copy{self.n}"
            shutil.copytree(src, dst)
            return dst
        client = self.s3.client()
        bucket, prefix = src[len("s3://"):].split("/", 1)
        new_prefix = f"copy{self.n}"
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                client.copy_object(Bucket=bucket, Key=new_prefix + obj["Key"][len(prefix):],
                                   CopySource={"Bucket": bucket, "Key": obj["Key"]})
        return f"s3://{bucket}/{new_prefix}"

    def drop(self, uri: str) -> None:
        if self.s3 is None:
            shutil.rmtree(uri, ignore_errors=True)
            return
        client = self.s3.client()
        bucket, prefix = uri[len("s3://"):].split("/", 1)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})

