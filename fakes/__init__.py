"""Fake destinations on loopback that follow the documented contracts, with injectable faults.

Importable by tests and benchmarks alike.
"""
