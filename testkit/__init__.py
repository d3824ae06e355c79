"""Test data and real peers for the tests and the benchmarks (not part of the service)."""
