"""randguard: eBPF endpoint telemetry for Linux lab hosts."""

__version__ = "0.1.0"
