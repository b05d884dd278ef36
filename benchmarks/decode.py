"""Decoding cost: read_clip vs the official STAM evaluation path, short vs long videos, per
codec and per decoder, and peak memory. Prints markdown tables (ms per 16-frame clip).

    .venv/bin/python benchmarks/decode.py            # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/decode.py --quick    # 1-minute videos instead of 10-minute ones
    .venv/bin/python benchmarks/decode.py --hd-only  # only the HD decode-cost table (about 3 minutes)

Videos are generated once into --workdir (default: a folder under the system temp dir) with
realistic-looking content (a panned multi-scale texture, moving objects, sensor grain),
because flat colours decode unrealistically fast. The "official" path is what torchvision's
Kinetics400 clips + the STAM transform do: decode every frame to RGB, pick 16 at 1.6 fps,
PIL Resize(256) + CenterCrop(224) (ToTensor left out on both sides).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stam_core  # noqa: E402
from jobs.tools.samples import DEFAULT_SUFFIX, make_video  # noqa: E402
from tests.support.videogen import official_transform  # noqa: E402

FRAMES = 16
CODECS = ["h264", "hevc", "vp9", "av1", "mpeg4"]
FAST_PRESETS = {"h264": "veryfast", "hevc": "superfast", "av1": "12"}  # for the long videos only


def official(path: Path, num_frames: int = FRAMES, frame_rate: float = 1.6) -> np.ndarray:
    """torchvision's Kinetics400 clip (read_video: every frame up to the clip's last one,
    each converted to RGB) resampled to 1.6 fps, then the STAM evaluation transform."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        step = float(stream.average_rate) / frame_rate  # torchvision VideoClips._resample_video_idx
        picks = np.floor(np.arange(num_frames) * step).astype(int)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_rgb().to_ndarray())
            if len(frames) > picks[-1]:
                break
    picks = np.minimum(picks, len(frames) - 1)
    return np.stack([official_transform(frames[i]) for i in picks])


def timed(*fns, reps: int) -> list[tuple[float, float]]:
    """(CPU ms, wall ms) per run of each function: the best of ``reps`` runs after a warm-up.

    The functions take turns, so a change in the machine's load hits them alike. The best
    run, as timeit recommends: slower runs are other processes interfering (the development
    machine is shared). CPU time is printed first because it is the least disturbed; it
    includes the CPU time of the decode worker process, when there is one.
    """
    cpu: list[list[float]] = [[] for _ in fns]
    wall: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(reps):
        for k, fn in enumerate(fns):
            c0, w0 = time.process_time() + _worker_cpu(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() + _worker_cpu() - c0)
            wall[k].append(time.perf_counter() - w0)
    return [(1000 * min(c), 1000 * min(t)) for c, t in zip(cpu, wall)]


def _worker_cpu() -> float:
    from stam_core.video import decode_worker

    pid = decode_worker.worker_pid()
    if pid is None:
        return 0.0
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9  # ns on a CPU


def keyframe_interval(path: Path) -> str:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
        if len(keys) < 2:
            return "1 GOP"
        return f"{float((keys[1] - keys[0]) * stream.time_base):.1f} s"


def peak_rss_mb(path: Path, decoder: str) -> float:
    """How far one read_clip raises a fresh process's peak resident memory (MB): the peak is
    reset after the imports (Linux clear_refs), so import-time peaks do not hide it."""
    code = (
        "import re, sys, stam_core, av, numpy, PIL.Image, decord\n"
        "def status(key):\n"
        "    return int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS')\n"
        f"stam_core.read_clip(sys.argv[1], {FRAMES}, timeout=None, decoder='{decoder}')\n"
        "print(status('VmHWM') - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(out.stdout.strip())


def cpu_description() -> str:
    """The CPU's model name and the vector extensions that matter here, from /proc/cpuinfo."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return platform.processor() or "unknown CPU"
    lines = info.read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
    return f"{model} ({', '.join(flag + (': yes' if flag in flags else ': no') for flag in wanted)})"


# The HD decode-cost cases: (file name, seconds, make_video settings). Textured, grainy, panning
# content (jobs/tools/samples.py's Scene), x264 veryfast CRF 23 / x265 superfast CRF 28, B-frames.
HD_CASES = [
    ("hd1080_h264_gop250.mp4", 10, dict(size=(1920, 1080), num_frames=250, fps=25, gop=250, bframes=3)),
    ("hd720_h264_gop250.mp4", 10, dict(size=(1280, 720), num_frames=250, fps=25, gop=250, bframes=3)),
    ("hd1080_hevc_gop250.mkv", 10, dict(codec="hevc", size=(1920, 1080), num_frames=250, fps=25, gop=250,
                                        bframes=3)),
    ("hd1080_h264_60s_gop50.mp4", 60, dict(size=(1920, 1080), num_frames=1500, fps=25, gop=50, bframes=3)),
]


def decode_all(path: Path, skip_frame: str = "DEFAULT") -> int:
    """Decode every packet with one thread (as read_clip does); frames produced. NONREF skips
    the non-reference frames: the floor for any reader that must decode every reference frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_type, ctx.thread_count, ctx.skip_frame = "NONE", 1, skip_frame
        return sum(1 for _ in container.decode(stream))


def hd_decode_cost(video, reps: int) -> None:
    """read_clip's CPU cost on HD long-GOP files, split into decode / RGB conversion / resize
    (Clip.decode_ms, convert_ms, resize_ms), against decoding every frame and the NONREF floor."""
    print("### HD decode cost: read_clip (16 samples, in-process) vs decoding every frame and the NONREF floor\n")
    print("CPU ms, best of runs; read_clip columns: total = decode + RGB conversion + resize "
          "(Clip.decode_cpu_ms and its split)\n")
    print("| video | every frame | NONREF floor (ref frames) | exact: total = decode + convert + resize | "
          "fast: total = decode + resize | frames decoded | decode / floor | exact / every | fast / every |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, seconds, settings in HD_CASES:
        path = video(name, grain=6, **settings)
        refs = decode_all(path, "NONREF")
        every_ms, floor_ms = (c for c, _ in timed(lambda p=path: decode_all(p), lambda p=path: decode_all(p, "NONREF"),
                                                  reps=reps))
        best: dict[str, stam_core.Clip] = {}
        for _ in range(reps):
            for resize in ("exact", "fast"):
                clip = stam_core.read_clip(path, FRAMES, timeout=None, resize=resize)
                if resize not in best or clip.decode_cpu_ms < best[resize].decode_cpu_ms:
                    best[resize] = clip
        exact, fast = best["exact"], best["fast"]
        label = f"{name} ({seconds} s, keyframes: {keyframe_interval(path)}, {kbps(path, seconds) / 1000:.1f} Mbit/s)"
        print(f"| {label} | {every_ms:.0f} | {floor_ms:.0f} ({refs}) | {exact.decode_cpu_ms:.0f} = "
              f"{exact.decode_ms:.0f} + {exact.convert_ms:.0f} + {exact.resize_ms:.0f} | {fast.decode_cpu_ms:.0f} = "
              f"{fast.decode_ms:.0f} + {fast.resize_ms:.0f} | {exact.info.frames_decoded} | "
              f"{exact.decode_ms / floor_ms:.2f} | {exact.decode_cpu_ms / every_ms:.2f} | "
              f"{fast.decode_cpu_ms / every_ms:.2f} |")
    print()


def kbps(path: Path, seconds: float) -> float:
    return path.stat().st_size * 8 / seconds / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "stam-decode-bench")
    parser.add_argument("--quick", action="store_true", help="1-minute long videos")
    parser.add_argument("--hd-only", action="store_true", help="only the HD decode-cost table")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    long_s = 60 if args.quick else 600

    def video(name: str, **kwargs) -> Path:
        path = args.workdir / name
        if not path.exists():
            print(f"  generating {name} ...", file=sys.stderr, flush=True)
            make_video(path.with_suffix(".tmp" + path.suffix), **kwargs).rename(path)
        return path

    print(f"machine: {cpu_description()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
          f"PyAV {av.__version__} (FFmpeg {av.library_versions['libavcodec']}), Python {platform.python_version()}")
    print(f"best of {args.reps} runs after a warm-up; CPU ms (wall ms); read_clip in-process (timeout=None) "
          "unless noted\n")
    hd_decode_cost(video, args.reps)
    if args.hd_only:
        return

    # 1. The acceptance clip: 10 s, 640x272, H.264 as x264 makes it by default.
    real = video("real_640x272.mp4", size=(640, 272), num_frames=250, fps=25, grain=6,
                 preset="medium")
    ours = stam_core.read_clip(real, FRAMES, timeout=None)
    with av.open(str(real)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mad = max(np.abs(frame.astype(int) - official_transform(every[i])).mean()
              for frame, i in zip(ours.frames, ours.indices))
    t_official, t_pyav, t_worker, t_decord = timed(
        lambda: official(real),
        lambda: stam_core.read_clip(real, FRAMES, timeout=None),
        lambda: stam_core.read_clip(real, FRAMES, timeout=60),
        lambda: stam_core.read_clip(real, FRAMES, timeout=None, decoder="decord"), reps=args.reps)
    print(f"### 10 s 640x272 H.264 clip ({kbps(real, 10):.0f} kbit/s, x264 medium CRF 23, B-frames, "
          f"keyframes every {keyframe_interval(real)}; {ours.info.frames_decoded} of 250 frames decoded)\n")
    print("| path | CPU ms per clip (wall) | vs official (CPU) |")
    print("|---|---:|---:|")
    for label, (cpu, wall) in (("official (decode all to RGB, PIL resize+crop)", t_official),
                               ("read_clip, PyAV (auto)", t_pyav),
                               ("read_clip, PyAV, worker process (timeout=60)", t_worker),
                               ("read_clip, decord", t_decord)):
        print(f"| {label} | {cpu:.1f} ({wall:.1f}) | {t_official[0] / cpu:.2f}x |")
    print(f"\nread_clip vs official transform, worst frame: mean absolute difference {mad:.3f} grey levels\n")

    # 2. Short vs long, per codec and decoder.
    print(f"### 16 frames from 10 s vs {long_s // 60} min, 320x240 at 15 fps, same encoding per codec\n")
    print("| codec | keyframes | decoder | 10 s: CPU ms (wall) | 10 s: frames decoded | "
          f"{long_s // 60} min: CPU ms (wall) | {long_s // 60} min: frames decoded | long / short (CPU) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for codec in CODECS:
        settings = dict(codec=codec, size=(320, 240), fps=15, grain=3, preset=FAST_PRESETS.get(codec))
        suffix = DEFAULT_SUFFIX[codec]
        short = video(f"short_{codec}{suffix}", num_frames=15 * 10, **settings)
        long = video(f"long{long_s}_{codec}{suffix}", num_frames=15 * long_s, **settings)
        for decoder in ("pyav", "decord"):
            try:
                row = []
                times = timed(*(lambda p=path: stam_core.read_clip(p, FRAMES, timeout=None, decoder=decoder)
                                for path in (short, long)), reps=args.reps)
                for path, (cpu, wall) in zip((short, long), times):
                    clip = stam_core.read_clip(path, FRAMES, timeout=None, decoder=decoder)
                    row += [cpu, wall, clip.info.frames_decoded if clip.info.frames_decoded >= 0 else "n/a"]
                print(f"| {codec} | {keyframe_interval(long)} | {decoder} | {row[0]:.1f} ({row[1]:.1f}) | {row[2]} | "
                      f"{row[3]:.1f} ({row[4]:.1f}) | {row[5]} | {row[3] / row[0]:.2f}x |")
            except stam_core.VideoError as exc:
                print(f"| {codec} | {keyframe_interval(long)} | {decoder} | fails: {exc.reason} | | | | |")

    # 3. Memory.
    long_h264 = args.workdir / f"long{long_s}_h264.mp4"
    print("\n### Memory one read_clip adds to a fresh process's peak, MB\n")
    print("| video | PyAV | decord |")
    print("|---|---:|---:|")
    for label, path in (("10 s 640x272 H.264", real), (f"{long_s // 60} min 320x240 H.264", long_h264)):
        print(f"| {label} | {peak_rss_mb(path, 'pyav'):.0f} | {peak_rss_mb(path, 'decord'):.0f} |")

if __name__ == "__main__":
    main()
