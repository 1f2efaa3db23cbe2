"""The workloads: each section of the report runs the load generator (bench/gen.c) against
the tools under test and puts its figures into the results (results.py); bench.py's run()
calls the sections in order."""
