"""Raw ring-buffer records built from randguard.records' field lists (the kernel's layouts), for
tests that feed the pure pipeline without a kernel: `record(KIND_FILE, op=1, path=b"/etc/x")`.
String slots take bytes (appended after the fixed part, as the kernel does) or None. The
header's `flags` (truncated slots) is `hflags` here: `flags` is the record's own field (a file
record's open flags)."""

from __future__ import annotations

import struct

from randguard import records

_LAYOUTS: dict[int, tuple[struct.Struct, tuple[tuple[str, str], ...]]] = {
    records.KIND_FILE: (records.FILE, records.FILE_FIELDS),
    records.KIND_PROC_EXEC: (records.EXEC, records.EXEC_FIELDS),
    records.KIND_PROC_FORK: (records.FORK, records.FORK_FIELDS),
    records.KIND_PROC_EXIT: (records.EXIT, records.EXIT_FIELDS),
    records.KIND_PROC_EXEC_FAILED: (records.EXEC_FAILED, records.EXEC_FAILED_FIELDS),
    records.KIND_NET: (records.NET, records.NET_FIELDS),
}


def record(kind: int, **values: object) -> bytes:
    """One record of `kind`; fields not given are 0 (b"" for char arrays, None for strings),
    `tid` defaults to `pid` and `version` to the schema's."""
    st, fields = _LAYOUTS[kind]
    head = {"kind": kind, "version": records.SCHEMA_VERSION, "size": 0,
            "tid": values.get("pid", 0)}
    blob = b""
    out: list[object] = []
    for name, _fmt in records.HEADER_FIELDS:
        key = "hflags" if name == "flags" else name
        out.append(values.get(key, head.get(name, 0)))
    for name, fmt in fields:
        if fmt.endswith("x"):
            continue
        if fmt == records.STR_FIELD:
            s = values.get(name)
            if s is None:
                out += [0, 0]
            else:
                assert isinstance(s, bytes)
                out += [st.size + len(blob), len(s)]
                blob += s
        else:
            out.append(values.get(name, b"" if fmt.endswith("s") else 0))
    out[2] = st.size + len(blob)  # the header's size
    return st.pack(*out) + blob
