"""docs/benchmarks.md from the results: the tables (markdown.py), the pass thresholds
(targets.py) and the number formats they share (numbers.py)."""
