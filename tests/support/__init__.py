"""Helpers shared by the test stages: real servers and processes, loopback destinations, bodies."""
