"""The GPU check's parts; benchmarks/gpu_check.py (started by benchmarks/gpu_check.sh) runs them.

    run.py                the run's state (Context), the section order, saving the report
    host.py               the host and its modules; section 1, the CUDA tests (pytest -m cuda)
    model.py              section 2, the model alone: videos/s per batch size, eager and compiled
    precision.py          section 2 too: bf16 vs fp32 agreement, the bf16 matmul probe
    decode.py             section 3, decoding rates (and the work done in the pool processes)
    decode_plus_model.py  section 4, all cores decoding into the model: videos/s, GPU busy share
    estimates.py          arithmetic ceilings, labelled as estimates
    report.py             the Markdown summary and JSON encoding
    common.py             configurations, reasons, skipped() and failed()

They import only the standard library at module level: torch, numpy, av and stam_core are
imported inside the sections, so the decode pool's spawned processes start light and a host
without one of them still gets a report saying so. No Ray, boto3 or network.
"""
