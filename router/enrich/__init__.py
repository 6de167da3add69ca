"""Validate and enrich: flow ids, user agent, location, locale, the metrics-context stash."""
