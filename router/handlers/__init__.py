"""HTTP handlers: request in, status out; the work happens in the pipeline."""
