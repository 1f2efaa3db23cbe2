"""Path text handling: lossless bytes -> str decoding and lexical path normalization.

Kernel paths (and comm strings) are arbitrary bytes, but the output is JSON, which needs valid
Unicode. `decode_path` maps bytes to text with one documented, reversible escaping rule:

* a backslash byte (0x5c) becomes two backslashes ``\\\\``;
* every byte that is not part of valid UTF-8 becomes ``\\xNN`` (lowercase hex, 4 characters);
* everything else is decoded as UTF-8 and left unchanged, including newlines, quotes and other
  control characters: the JSON encoder escapes those itself.

Because a literal backslash is always doubled, ``\\xNN`` in the output can only mean a raw byte,
so `encode_path` recovers the exact original bytes. Paths without backslashes that are valid
UTF-8 (almost all of them) take a fast path that is a plain ``bytes.decode``.

`normalize` and `join` are purely lexical (no file system access, no symlink resolution): they
give a canonical spelling for matching, not the file the kernel actually opened.
"""

from __future__ import annotations

import re

__all__ = ["CUT", "decode_comm", "decode_path", "encode_path", "join", "normalize", "walked"]

_ESCAPE_RE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def decode_path(raw: bytes) -> str:
    """Decode kernel bytes to text that is always valid for JSON and can be encoded back.

    See the module docstring for the escaping rule.
    """
    if b"\\" not in raw:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    # 0x5c never occurs inside a multi-byte UTF-8 sequence, so doubling it first does not change
    # which bytes are invalid; "backslashreplace" then writes each invalid byte as \xNN.
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


CUT = "..."  # starts a resolved path whose beginning the kernel had to cut (over 4095 bytes)


def walked(raw: bytes | None, cut: int) -> str | None:
    """A path the kernel walked (None: none); one it had to cut starts with CUT."""
    if raw is None:
        return None
    return CUT + decode_path(raw) if cut else decode_path(raw)


def decode_comm(raw: bytes) -> str:
    """Decode a NUL-padded task comm (or any C string buffer) with the same rule as paths."""
    end = raw.find(b"\0")
    return decode_path(raw if end < 0 else raw[:end])


def encode_path(s: str) -> bytes:
    """Invert `decode_path`: give back the original bytes.

    Raises ValueError for a backslash that is not part of ``\\\\`` or ``\\xNN``, since such
    text cannot have come from `decode_path`.
    """
    if "\\" not in s:
        return s.encode("utf-8")
    out = bytearray()
    pos = 0
    for m in _ESCAPE_RE.finditer(s):
        chunk = s[pos : m.start()]
        if "\\" in chunk:
            break
        out += chunk.encode("utf-8")
        esc = m.group(1)
        out.append(0x5C if esc == "\\" else int(esc[1:], 16))
        pos = m.end()
    else:
        tail = s[pos:]
        if "\\" not in tail:
            out += tail.encode("utf-8")
            return bytes(out)
    raise ValueError(f"invalid escape in decoded path: {s!r}")


def normalize(path: str) -> str:
    """Lexically normalize a path so that matching sees one spelling per path.

    For an absolute path: collapse ``//``, drop ``.``, resolve ``..`` (never above ``/``) and drop
    a trailing slash except for the root. Unlike posixpath.normpath, a leading ``//`` collapses
    too. A relative path is normalized the same way, keeping leading ``..`` components (there is
    no base to resolve them against); an empty relative result is ``.``.
    """
    # Fast path: nothing to do for the common already-canonical absolute path.
    if (
        path.startswith("/")
        and "//" not in path
        and "/." not in path
        and (len(path) == 1 or not path.endswith("/"))
    ):
        return path
    absolute = path.startswith("/")
    parts: list[str] = []
    for comp in path.split("/"):
        if not comp or comp == ".":
            continue
        if comp == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append(comp)
            continue
        parts.append(comp)
    if absolute:
        return "/" + "/".join(parts)
    return "/".join(parts) or "."


def join(base: str | None, name: str) -> str:
    """Resolve a syscall path argument against the directory it is relative to.

    An absolute ``name`` ignores ``base``. An empty or None ``base`` means the directory is
    unknown: an absolute name is normalized, a relative one is returned unchanged (normalizing
    it could make it look like something it is not).
    """
    if name.startswith("/"):
        return normalize(name)
    if not base:
        return name
    return normalize(base + "/" + name)
