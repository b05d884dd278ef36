"""What one small `stam-label run` costs on a warm Ray head: wall time, the machine's CPU time, and
how many Ray worker processes it starts (each one a Python interpreter importing Ray).

    .venv/bin/python benchmarks/run_overhead.py --runs 3 --videos 4

A Ray head of its own (`ray start --head --block`, 2 CPUs), a tiny checkpoint and --videos 1-s
videos in a temporary folder; then --runs times, each into a new OUTPUT:

    stam-label run VIDEOS OUTPUT --weights stam_tiny.pth --address HEAD

The CPU time is the whole machine's (/proc/stat, user + system, all processes) from the start of
the command until 3 s after it exits (the run's workers exit after their driver), so run it on an
otherwise idle machine. Worker processes are counted from the head's log folder (one
``worker-*-<job id>-<pid>.out`` file per process).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
VENV_BIN = Path(sys.executable).parent
SETTLE_S = 3.0


def machine_cpu_s() -> float:
    """User + system CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def workers_per_job(temp_dir: Path) -> Counter:
    logs = next(temp_dir.glob("session_2*")) / "logs"
    return Counter(p.name.split("-")[2] for p in logs.glob("worker-*.out"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--videos", type=int, default=4)
    args = ap.parse_args()

    import torch
    from decode import cpu_description

    import stam_core.model
    from jobs.tools.samples import make_sample_video

    print(f"machine: {cpu_description()}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        for i in range(args.videos):
            make_sample_video(tmp / "videos" / f"v{i}.mp4", seed=i, seconds=1.0, fps=10, size=(96, 64))
        torch.manual_seed(0)
        weights = stam_core.model.save_checkpoint(stam_core.model.create_model("stam_tiny"), tmp / "stam_tiny.pth")
        port, temp_dir = free_port(), tmp / "ray"
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        head = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}",
                                 "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
                                 "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not listening(port):
                if time.monotonic() > deadline or head.poll() is not None:
                    raise SystemExit("the Ray head did not start")
                time.sleep(0.5)
            time.sleep(5)  # the head's own start-up work settles
            print(f"{'run':>4} {'wall s':>7} {'machine CPU s':>14} {'Ray workers':>12}")
            for run in range(1, args.runs + 1):
                before_jobs = workers_per_job(temp_dir)
                cpu, started = machine_cpu_s(), time.monotonic()
                done = subprocess.run([str(VENV_BIN / "stam-label"), "run", str(tmp / "videos"), str(tmp / f"out{run}"),
                                       "--weights", str(weights), "--address", f"127.0.0.1:{port}",
                                       "--progress-interval", "0"], env=env, capture_output=True, text=True, check=False)
                wall = time.monotonic() - started
                if done.returncode != 0:
                    raise SystemExit(f"run {run} failed:\n{done.stderr[-3000:]}")
                time.sleep(SETTLE_S)
                spent = machine_cpu_s() - cpu
                new = workers_per_job(temp_dir) - before_jobs
                print(f"{run:>4} {wall:>7.2f} {spent:>14.2f} {sum(new.values()):>12}")
        finally:
            os.killpg(head.pid, signal.SIGTERM)
            try:
                head.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
