"""The tools under test, each started and stopped as a context manager: the randguard agent,
the minimal tracepoint pair, opensnoop and auditd (and Baseline: none)."""
