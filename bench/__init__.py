"""Benchmarks; run them as modules, e.g. ``python -m bench.agent_turns``. See README.md."""
