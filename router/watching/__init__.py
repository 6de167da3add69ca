"""Watching a running router: the tap (what it does with each event) and its OpenAPI contract."""
