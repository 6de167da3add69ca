"""Operator consoles: clients of a running router (`metrics-router tap`, `metrics-router top`)."""
