"""Benchmarks at call-centre scale: a bulk generator, in-process and HTTP benchmarks, one runner."""
