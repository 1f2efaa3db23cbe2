"""Path decoding (lossless, JSON-safe) and lexical normalization."""

import random

import msgspec
import pytest

from randguard.core.paths import decode_comm, decode_path, encode_path, join, normalize


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"/etc/passwd", "/etc/passwd"),
        (b"/caf\xc3\xa9", "/café"),
        (b"a\\b", "a\\\\b"),
        (b"/x\xff", "/x\\xff"),
        (b"\xe2\x82", "\\xe2\\x82"),  # truncated sequence: every byte escaped
        (b"\xe2\x82/", "\\xe2\\x82/"),
        (b"\\xff", "\\\\xff"),  # a literal backslash + "xff" is not a raw byte
        (b"\\\xff", "\\\\\\xff"),
        (b'line\nbreak\t"q"\x00\x1b', 'line\nbreak\t"q"\x00\x1b'),
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),  # UTF-8 encoded surrogate is invalid
        (b"", ""),
    ],
)
def test_decode_path_rule(raw: bytes, text: str) -> None:
    assert decode_path(raw) == text
    assert encode_path(text) == raw


def test_decode_path_escapes_are_lowercase() -> None:
    assert decode_path(b"\xab\xcd") == "\\xab\\xcd"


def _random_bytes(rng: random.Random) -> bytes:
    pieces = [
        b"/",
        b"\\",
        b"\\x",
        b"x41",
        b"\n",
        b'"',
        b"\x00",
        b"\x7f",
        b"\xff",
        b"\x80",
        b"\xc3",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xe2\x82",
        b"\xf0\x9f\x98\x80",
        b"\xed\xa0\x80",
        b"abc",
    ]
    if rng.random() < 0.3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    return b"".join(rng.choice(pieces) for _ in range(rng.randrange(12)))


def test_decode_path_round_trip_and_json() -> None:
    rng = random.Random(1234)
    seen: dict[str, bytes] = {}
    for _ in range(5000):
        raw = _random_bytes(rng)
        text = decode_path(raw)
        assert encode_path(text) == raw
        assert seen.setdefault(text, raw) == raw  # injective
        encoded = msgspec.json.encode({"path": text})
        assert msgspec.json.decode(encoded)["path"] == text


@pytest.mark.parametrize("bad", ["\\", "a\\b", "\\x4", "\\xZZ", "\\xAB", "ok\\\\then\\"])
def test_encode_path_rejects_text_decode_cannot_produce(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_path(bad)


def test_decode_comm_stops_at_nul() -> None:
    assert decode_comm(b"bash\x00\x00\x00garbage") == "bash"
    assert decode_comm(b"0123456789abcdef") == "0123456789abcdef"
    assert decode_comm(b"ba\\d\xff\x00") == "ba\\\\d\\xff"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("//", "/"),
        ("///etc", "/etc"),
        ("//etc/./x/../y", "/etc/y"),
        ("/..", "/"),
        ("/../../etc", "/etc"),
        ("/etc/..", "/"),
        ("/etc/", "/etc"),
        ("/etc//", "/etc"),
        ("/etc/.", "/etc"),
        ("/etc/./", "/etc"),
        ("/etc/x/..", "/etc"),
        ("/a/b/../../c/", "/c"),
        ("/.hidden/..dots/...", "/.hidden/..dots/..."),
        ("/etc/passwd", "/etc/passwd"),
        ("a/./b/../c", "a/c"),
        ("../a", "../a"),
        ("a/../..", ".."),
        ("./", "."),
        ("", "."),
    ],
)
def test_normalize(path: str, expected: str) -> None:
    assert normalize(path) == expected


def test_normalize_is_idempotent() -> None:
    rng = random.Random(7)
    comps = ["", ".", "..", "a", "bb", ".c", "..d", "e."]
    for _ in range(2000):
        p = "/" + "/".join(rng.choice(comps) for _ in range(rng.randrange(8)))
        n = normalize(p)
        assert n.startswith("/")
        assert normalize(n) == n
        assert "//" not in n
        assert n == "/" or not n.endswith("/")
        assert all(c not in (".", "..") for c in n.split("/"))


@pytest.mark.parametrize(
    ("base", "name", "expected"),
    [
        ("/home/u", "f.txt", "/home/u/f.txt"),
        ("/home/u", "../v/./f", "/home/v/f"),
        ("/home/u/", "f", "/home/u/f"),
        ("/", "etc", "/etc"),
        ("/", "..", "/"),
        ("/home/u", "/etc//shadow", "/etc/shadow"),
        ("", "/etc/./x", "/etc/x"),
        (None, "/etc/./x", "/etc/x"),
        ("", "rel/./x", "rel/./x"),
        (None, "rel", "rel"),
    ],
)
def test_join(base: str | None, name: str, expected: str) -> None:
    assert join(base, name) == expected
