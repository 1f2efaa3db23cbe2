"""The pure core: raw ring-buffer records in, output events out, over plain values with no I/O
(decode, process context, filter, detections and rules, encode), and the config and record
contracts it works by. Tested without a kernel."""
