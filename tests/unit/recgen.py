"""Raw ring-buffer records built from randguard.core.records' field lists (the kernel's
layouts), for tests that feed the pure pipeline without a kernel:
`record(KIND_FILE, op=1, path=b"/etc/x")`. String slots take bytes (appended after the fixed
part, as the kernel does) or None. The header's `flags` (truncated slots) is `hflags` here:
`flags` is the record's own field (a file record's open flags)."""

from __future__ import annotations

from randguard.core import records

_BY_KIND = {lay.kind: lay for lay in records.LAYOUTS.values()}


def record(kind: int, **values: object) -> bytes:
    """One record of `kind`; fields not given are 0 (b"" for char arrays, None for strings),
    `tid` defaults to `pid` and `version` to the schema's."""
    lay = _BY_KIND[kind]
    st = lay.struct
    head = {"kind": kind, "version": records.SCHEMA_VERSION, "size": 0,
            "tid": values.get("pid", 0)}
    blob = b""
    out: list[object] = []
    for f in records.HEADER_FIELDS:
        key = "hflags" if f.c == "flags" else f.c
        out.append(values.get(key, head.get(f.c, 0)))
    for f in lay.fields:
        if f.conv == records.PAD:
            continue
        if f.conv == records.SLOT:
            s = values.get(f.c)
            if s is None:
                out += [0, 0]
            else:
                assert isinstance(s, bytes)
                out += [st.size + len(blob), len(s)]
                blob += s
        else:
            out.append(values.get(f.c, b"" if f.conv in (records.CSTR, records.RAW) else 0))
    out[2] = st.size + len(blob)  # the header's size
    return st.pack(*out) + blob
