"""The compose topology, started for real by scripts/compose-test.sh (not by pytest)."""
