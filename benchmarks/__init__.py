"""Reproducible measurements.

Owns the kernel and service benchmarks, which print their results and save them as JSON, each
timing reported as a ratio to dense measured in the same run (median of many repetitions after
warm-up, device synchronised before reading a clock). May import ``models`` along with torch and
numpy.
"""
