"""Command-line tools: demo, benchmarks, GPU check, weights helper."""
