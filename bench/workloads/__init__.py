"""The workloads: each section of the report runs the load generator (bench/gen.c) against
the tools under test and returns its figures (results.py). run_section() calls them."""
