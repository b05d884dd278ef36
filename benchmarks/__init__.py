"""Benchmarks: scripts, run by path (benchmarks/NAME.py); see docs/benchmarks.md.

A regular package so that `benchmarks.gpu` (the GPU check's parts, which its spawned decode
processes import by that name) resolves here even where another `benchmarks` is installed.
"""
