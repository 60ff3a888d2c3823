"""Benchmarks behind `inferq bench ...`: each starts and stops what it measures."""
