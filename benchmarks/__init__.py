"""Benchmarks: a seeded generator of realistic monitoring data and the measuring script."""
