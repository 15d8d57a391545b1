"""Benchmarks behind ``make bench``, ``make bench-peers`` and ``make bench-scale``.

Each command measures, then rewrites its own marked section of ``BENCHMARKS.md``; figures
go to ``benchmarks/figures`` and the raw numbers to ``benchmarks/results``.
"""
