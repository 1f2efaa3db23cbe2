"""PathMatcher semantics, FileFilter decisions and the kernel filter's superset property."""

import fnmatch
import logging
import os
import random
import struct
from pathlib import Path

import pytest

from randguard.core.config import Config
from randguard.core.matcher import (
    KERNEL_FILTER_MAX_SUFFIXES,
    KERNEL_SUFFIX_LEN,
    KERNEL_SUFFIX_SIZE,
    KERNEL_TRIE_KEY_LEN,
    VERDICT_EXCLUDE,
    VERDICT_FORCE,
    VERDICT_READ,
    VERDICT_WATCH,
    FileFilter,
    KernelFilter,
    Memo,
    PathMatcher,
    TrieEntry,
    compile_kernel_filter,
    glob_to_regex,
    kernel_form,
    pack_suffix,
    pack_trie_key,
    pack_trie_value,
)
from randguard.core.paths import decode_path


def default_filter() -> FileFilter:
    return FileFilter.from_config(Config().file)


# --- PathMatcher ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["/etc", "/etc/", "//etc/./"])
def test_prefix_is_directory_aware(spec: str) -> None:
    m = PathMatcher([spec])
    assert m.matches("/etc")
    assert m.matches("/etc/x")
    assert m.matches("/etc/x/y/z")
    assert not m.matches("/etcd")
    assert not m.matches("/etcd/x")
    assert not m.matches("/et")
    assert not m.matches("/")
    assert not m.matches("/usr/etc")
    assert not m.matches("etc/x")


def test_nested_and_root_prefixes() -> None:
    m = PathMatcher(["/usr/lib/systemd/system"])
    assert m.matches("/usr/lib/systemd/system/a.service")
    assert not m.matches("/usr/lib/systemd")
    assert not m.matches("/usr/lib/systemd/systemx")
    root = PathMatcher(["/"])
    assert root.matches("/")
    assert root.matches("/anything/at/all")
    assert not root.matches("relative")


def test_empty_matcher_matches_nothing() -> None:
    m = PathMatcher()
    assert not m.matches("/")
    assert not m.matches("/etc/x")


def test_basename_patterns() -> None:
    m = PathMatcher([], ["*.service", "authorized_keys", "cron*", "id_[re]*"])
    assert m.matches("/etc/systemd/system/a.service")
    assert m.matches("/x.service")
    assert m.matches("relative/x.service")
    assert m.matches("/home/u/.ssh/authorized_keys")
    assert not m.matches("/home/u/.ssh/authorized_keys2")
    assert not m.matches("/home/u/.ssh/xauthorized_keys")
    assert not m.matches("/etc/a.service/x")  # only the basename counts
    assert m.matches("/etc/crontab")
    assert not m.matches("/etc/cron.d/job")
    assert m.matches("/root/.ssh/id_rsa")
    assert m.matches("/root/.ssh/id_ed25519")
    assert not m.matches("/root/.ssh/id_dsa")


def test_full_path_patterns_star_does_not_cross_slash() -> None:
    m = PathMatcher([], ["/etc/cron.*/*", "/home/*/.bashrc"])
    assert m.matches("/etc/cron.d/job")
    assert m.matches("/etc/cron.daily/logrotate")
    assert not m.matches("/etc/cron.d/sub/job")
    assert not m.matches("/etc/cron.d")
    assert m.matches("/home/u/.bashrc")
    assert not m.matches("/home/u/v/.bashrc")
    assert not m.matches("/home/.bashrc/x")


def test_glob_paths_are_anchored_and_directory_aware() -> None:
    m = PathMatcher(["/home/*/.ssh", "/etc/cron.?"])
    assert m.matches("/home/u/.ssh")
    assert m.matches("/home/u/.ssh/authorized_keys")
    assert not m.matches("/home/u/.sshx")
    assert not m.matches("/home/u/v/.ssh")
    assert not m.matches("/x/home/u/.ssh")
    assert m.matches("/etc/cron.d/job")
    assert not m.matches("/etc/cron.daily/job")


def test_glob_classes() -> None:
    assert PathMatcher([], ["[!a]x"]).matches("/bx")
    assert not PathMatcher([], ["[!a]x"]).matches("/ax")
    assert not PathMatcher([], ["/a[!b]c"]).matches("/a/c")  # a class never matches "/"
    assert not PathMatcher([], ["/a?c"]).matches("/a/c")
    assert PathMatcher([], ["[]]"]).matches("/]")
    assert PathMatcher([], ["x[a-c]"]).matches("/xb")
    assert not PathMatcher([], ["x[c-a]"]).matches("/xb")  # empty range
    assert PathMatcher([], ["a[b"]).matches("/a[b")  # unclosed: literal
    assert PathMatcher([], ["a.b"]).matches("/a.b")
    assert not PathMatcher([], ["a.b"]).matches("/axb")  # "." is literal
    assert PathMatcher([], ["*"]).matches("/line\nbreak")


def test_backslash_in_config_is_literal() -> None:
    # a config backslash matches a backslash byte, which decode_path doubles
    raw = b"/a\\b/x"
    m = PathMatcher(["/a\\b"], ["*\\b"])
    assert m.matches(decode_path(raw))
    assert PathMatcher([], ["a\\b"]).matches(decode_path(b"/a\\b"))
    assert not m.matches(decode_path(b"/a/b"))


def _ref_matches(paths: list[str], patterns: list[str], path: str) -> bool:
    """Slow reference: fnmatch per path component."""

    def comp_match(pat: str, p: str) -> bool:
        ps, qs = pat.split("/"), p.split("/")
        return len(ps) == len(qs) and all(
            fnmatch.fnmatchcase(q, x) for x, q in zip(ps, qs, strict=True)
        )

    for spec in paths:
        spec = spec.rstrip("/") or "/"
        if spec == "/":
            if path.startswith("/"):
                return True
            continue
        parts = path.split("/")
        for i in range(2, len(parts) + 1):
            if comp_match(spec, "/".join(parts[:i])):
                return True
    base = path.rsplit("/", 1)[-1]
    for pat in patterns:
        if "/" in pat:
            if comp_match(pat, path):
                return True
        elif fnmatch.fnmatchcase(base, pat):
            return True
    return False


def test_matches_reference_on_random_inputs() -> None:
    rng = random.Random(99)
    comps = ["etc", "etcd", "e", "cron.d", "a.service", "x", "ab", "ba", ".ssh", "[x]"]
    path_specs = ["/", "/etc", "/etc/cron.d", "/e*", "/etc/*.d", "/*/x", "/e?c", "/[ae]*/x"]
    pat_specs = ["*.service", "x", "a*", "*b", "?b", "[!a]*", "/etc/*", "/*/*.d", "*", "[x]"]
    for _ in range(300):
        paths = rng.sample(path_specs, rng.randrange(4))
        patterns = rng.sample(pat_specs, rng.randrange(4))
        m = PathMatcher(paths, patterns)
        for _ in range(50):
            p = "/" + "/".join(rng.choice(comps) for _ in range(rng.randrange(1, 5)))
            assert m.matches(p) == _ref_matches(paths, patterns, p), (paths, patterns, p)


def test_64_prefixes() -> None:
    prefixes = [f"/srv/app{i}/conf" for i in range(64)] + [f"/opt/t{i}" for i in range(64)]
    m = PathMatcher(prefixes)
    for i in range(64):
        assert m.matches(f"/srv/app{i}/conf")
        assert m.matches(f"/srv/app{i}/conf/deep/er/file")
        assert not m.matches(f"/srv/app{i}/confx")
        assert m.matches(f"/opt/t{i}/x")
    assert not m.matches("/srv/app64/conf/x")
    assert not m.matches("/srv")
    assert not m.matches("/" + "/".join(["d"] * 200))


def test_many_prefix_lengths_under_one_directory() -> None:
    rng = random.Random(5)
    prefixes = ["/srv/" + "a" * i for i in range(1, 65, 3)] + ["/srv/a/b/c", "/srv/aaaa/x"]
    m = PathMatcher(prefixes)
    comps = ["a", "aa", "aaa", "aaaa", "b", "c", "x", "a" * 31, "a" * 64]
    for _ in range(3000):
        p = "/srv/" + "/".join(rng.choice(comps) for _ in range(rng.randrange(1, 5)))
        assert m.matches(p) == _ref_matches(prefixes, [], p), p


def test_glob_to_regex_crosses_slash_only_with_a_double_star() -> None:
    import re

    assert re.fullmatch(glob_to_regex("a*b"), "axxb")
    assert not re.fullmatch(glob_to_regex("a*b"), "ax/xb")
    assert not re.fullmatch(glob_to_regex("a?b"), "a/b")
    assert not re.fullmatch(glob_to_regex("a[/x]b"), "a/b")
    assert re.fullmatch(glob_to_regex("a**b"), "ax/xb")
    # "**/": any run of whole directories, none included
    deep = glob_to_regex("/**/site-packages/*.pth")
    for path in ("/site-packages/a.pth", "/tmp/v/lib/python3.11/site-packages/a.pth"):
        assert re.fullmatch(deep, path), path
    for path in ("/tmp/site-packages/sub/a.pth", "/tmp/xsite-packages/a.pth", "/tmp/a.pth"):
        assert not re.fullmatch(deep, path), path


# --- FileFilter ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "write", "wanted"), [
    ("/etc/ld.so.cache", False, False),
    ("/usr/bin/ls", False, False),
    ("/etc/shadow", False, True),
    ("/etc/sudoers.d/90-admin", False, True),
    ("/root/.ssh/authorized_keys", False, True),
    ("/etc/shadowx", False, False),
    ("/etc/x.service", False, False),
    ("/etc/ld.so.cache", True, True),
    ("/etc/shadow", True, True),
    ("/usr/bin/sudo", True, True),
    ("/bin/sh", True, True),
    ("/home/u/.config/systemd/user/evil.service", True, True),
    ("/home/u/notes.txt", True, False),
    ("/etcd/x", True, False),
    ("/usr/binx", True, False),
])
def test_default_filter(path: str, write: bool, wanted: bool) -> None:
    """Read-only opens pass only under read paths; writes under watch paths and patterns."""
    assert default_filter().wants(path, write=write) is wanted


def test_exclude_wins() -> None:
    f = default_filter()
    assert not f.wants("/tmp/x.service", write=True)
    assert not f.wants("/var/log/syslog", write=True)
    assert not f.wants("/tmp", write=True)
    assert f.wants("/tmpx/a.service", write=True)
    nested = FileFilter(["/etc"], [], ["/etc/cron.d"], ["/etc/cron.d"])
    assert f.wants("/etc/crontab", write=True)
    assert not nested.wants("/etc/cron.d/job", write=True)
    assert not nested.wants("/etc/cron.d/job", write=False)
    assert nested.wants("/etc/cron.daily/job", write=True)
    inverse = FileFilter(["/etc/cron.d", "/"], ["*"], ["/etc"], ["/"])
    assert not inverse.wants("/etc/cron.d/job", write=True)
    assert not inverse.wants("/etc/passwd", write=False)
    assert inverse.wants("/usr/x", write=False)


def test_rename_either_side() -> None:
    f = default_filter()
    assert f.wants_any(["/home/u/evil", "/etc/cron.d/evil"], write=True)
    assert f.wants_any(["/etc/cron.d/evil", "/home/u/evil"], write=True)
    assert f.wants_any(["/home/u/a", "/home/u/a.service"], write=True)
    assert not f.wants_any(["/home/u/a", "/home/u/b"], write=True)
    assert not f.wants_any(["/tmp/a", "/tmp/b.service"], write=True)
    assert f.wants_any(["/tmp/a", "/etc/a"], write=True)
    assert not f.wants_any([], write=True)


def test_read_paths_may_hold_globs() -> None:
    f = FileFilter([], [], ["/home/skip"], ["/home/*/.ssh", "/etc/shadow"])
    assert f.wants("/home/u/.ssh/id_rsa", write=False)
    assert not f.wants("/home/skip/.ssh/id_rsa", write=False)
    assert not f.wants("/home/u/.sshx", write=False)
    assert not f.wants("/home/u/.ssh/id_rsa", write=True)


# --- kernel filter -------------------------------------------------------------------------


def test_default_kernel_filter() -> None:
    f = default_filter()
    k = compile_kernel_filter(f)
    assert k.pass_all == 0
    assert k.suffixes == [(b".service", VERDICT_WATCH)]
    assert not k.passes(b"/etc/ld.so.cache", write=False)
    assert k.passes(b"/etc/ld.so.cache", write=True)
    assert k.passes(b"/etc/shadow", write=False)
    assert not k.passes(b"/etc/shadowx", write=False)
    assert k.passes(b"/etc/sudoers.d/x", write=False)
    assert not k.passes(b"/tmp/a.service", write=True)
    assert k.passes(b"/home/a.service", write=True)
    assert not k.passes(b"/home/u/notes", write=True)
    assert not k.passes(b"/etcd", write=True)
    entries = {e.prefix: e for e in k.trie}
    assert entries[b"/etc/"] == TrieEntry(b"/etc/", False, VERDICT_WATCH, 0)
    assert entries[b"/etc"] == TrieEntry(b"/etc", True, VERDICT_WATCH, 0)
    rw = VERDICT_WATCH | VERDICT_READ
    assert entries[b"/etc/shadow"] == TrieEntry(b"/etc/shadow", True, rw, VERDICT_WATCH)
    assert entries[b"/tmp/"].verdict == VERDICT_EXCLUDE


def test_kernel_nesting_rules() -> None:
    k = compile_kernel_filter(FileFilter(["/etc"], [], ["/etc/cron.d"], []))
    assert not k.passes(b"/etc/cron.d/job", write=True)
    assert not k.passes(b"/etc/cron.d", write=True)
    assert k.passes(b"/etc/cron.dx", write=True)  # exact entry falls back to /etc/
    assert k.passes(b"/etc/crontab", write=True)
    k = compile_kernel_filter(FileFilter(["/etc/cron.d"], [], ["/etc"], []))
    assert not k.passes(b"/etc/cron.d/job", write=True)  # exclude wins at any depth
    k = compile_kernel_filter(FileFilter(["/", "/etc"], [], ["/tmp"], []))
    assert [e.prefix for e in k.trie if e.prefix == b"/"] == [b"/"]
    assert k.pass_all == 0
    assert k.passes(b"/anything", write=True)
    assert not k.passes(b"/anything", write=False)
    assert not k.passes(b"/tmp/x", write=True)


def test_kernel_patterns() -> None:
    k = compile_kernel_filter(
        FileFilter([], ["*.service", "authorized_keys", "/etc/cron.*/*"], ["/tmp"], [])
    )
    assert k.pass_all == 0
    assert (b"/authorized_keys", VERDICT_WATCH) in k.suffixes
    assert any(e.prefix == b"/etc/cron." and not e.exact for e in k.trie)
    assert k.passes(b"/tmp2/authorized_keys", write=True)
    assert not k.passes(b"/tmp/authorized_keys", write=True)  # trie exclude beats a suffix
    # nothing literal after the last wildcard, or no literal at all: pass_all
    for pat in ["cron*", "*", "/*", "x[ab]", "/*/x*"]:
        k = compile_kernel_filter(FileFilter([], [pat], [], []))
        assert (k.pass_all, k.suffixes, k.widened) == (VERDICT_WATCH, [], ((pat, b""),)), pat
    # a literal tail after the last wildcard: a suffix, userspace decides the rest
    for pat, sfx in [("*.d/*x", b"x"), ("/*/x", b"/x"), ("[ab].conf", b".conf")]:
        k = compile_kernel_filter(FileFilter([], [pat], [], []))
        assert (k.pass_all, k.suffixes, k.widened) == (0, [(sfx, VERDICT_WATCH)], ()), pat
    k = compile_kernel_filter(FileFilter([], [], [], ["/*/.ssh"]))
    assert k.pass_all == VERDICT_READ


def test_kernel_too_many_suffixes_share_shorter_ones() -> None:
    pats = [f"*.ext{i}" for i in range(KERNEL_FILTER_MAX_SUFFIXES + 1)]
    k = compile_kernel_filter(FileFilter(["/etc"], pats, [], []))
    assert len(k.suffixes) == KERNEL_FILTER_MAX_SUFFIXES
    assert k.pass_all == 0  # two of them share an ending, e.g. ".ext0" and ".ext10": "0"
    widened = dict(k.widened)
    (ending,) = set(widened.values())
    assert len(widened) == 2 and len(ending) == 1 and all(p.endswith(ending.decode())
                                                          for p in widened)
    for i in range(KERNEL_FILTER_MAX_SUFFIXES + 1):
        assert k.passes(f"/srv/a.ext{i}".encode(), write=True), i
    assert not k.passes(b"/srv/a.ext", write=True)
    k = compile_kernel_filter(FileFilter(["/etc"], pats[:-1], [], []))
    assert (k.pass_all, len(k.suffixes), k.widened) == (0, KERNEL_FILTER_MAX_SUFFIXES, ())


def test_kernel_64_prefixes_stay_on() -> None:
    prefixes = [f"/srv/app{i}/conf" for i in range(64)]
    f = FileFilter(prefixes, ["*.service"], ["/tmp"], [f"/srv/app{i}/secret" for i in range(64)])
    k = compile_kernel_filter(f)
    assert k.pass_all == 0
    assert len(k.trie) == 4 * 64 + 2
    assert k.passes(b"/srv/app63/conf/x", write=True)
    assert not k.passes(b"/srv/app64/conf/x", write=True)
    assert k.passes(b"/srv/app7/secret", write=False)


def test_kernel_long_prefixes_are_cut() -> None:
    long_dir = "/" + "d" * 299
    f = FileFilter([long_dir], [], [], [])
    k = compile_kernel_filter(f)
    assert all(len(e.prefix) <= 255 for e in k.trie)
    assert k.passes((long_dir + "/x").encode(), write=True)
    for n in (253, 254, 255):
        d = "/" + "d" * (n - 1)
        k = compile_kernel_filter(FileFilter([d], [], [], []))
        assert all(len(e.prefix) <= 255 for e in k.trie)
        for p in (d, d + "/x", d + "/" + "y" * 300):
            assert k.passes(p.encode(), write=True), (n, p)


def test_pack_layouts() -> None:
    key = pack_trie_key(b"/etc/")
    assert len(key) == 4 + KERNEL_TRIE_KEY_LEN
    assert struct.unpack_from("=I", key)[0] == 40
    assert key[4:9] == b"/etc/" and key[9:] == bytes(KERNEL_TRIE_KEY_LEN - 5)
    assert pack_trie_value(TrieEntry(b"/etc", True, 3, 1)) == bytes([3, 4, 1, 0])
    assert pack_trie_value(TrieEntry(b"/etc/", False, 1, 0)) == bytes([1, 0, 0, 0])
    s = pack_suffix(b".service", 1)
    # sizeof(struct rg_suffix) = 2 + RG_SUFFIX_LEN + 2: the kernel reads suffix i at 8 + 34 * i
    assert len(s) == KERNEL_SUFFIX_SIZE == 34
    assert s[:2] == bytes([8, 1]) and s[2:10] == b".service" and s[10:] == bytes(24)
    assert len(pack_suffix(b"x" * KERNEL_SUFFIX_LEN, 1)) == KERNEL_SUFFIX_SIZE
    with pytest.raises(ValueError):
        pack_suffix(b"x" * 31, 1)


def _compiled_file_object() -> Path:
    env = os.environ.get("RANDGUARD_BPF_DIR")
    bpf_dir = Path(env) if env else Path(__file__).resolve().parents[2] / "agent/randguard/bpf"
    path = bpf_dir / "file.bpf.o"
    if not path.exists():
        if os.environ.get("RANDGUARD_REQUIRE_KERNEL_TESTS") == "1":
            pytest.fail(f"{path} missing: the filter layout must be checked on CI")
        pytest.skip(f"{path} not built (run make)")
    return path


def test_filter_layouts_match_the_compiled_object() -> None:
    """What is packed here is what file.bpf.o reads (its BTF). Suffixes packed 32 bytes apart
    where the kernel has 34-byte `struct rg_suffix`es made it read every suffix but the first
    at the wrong offset: a pattern whose suffix sorted after `.service` never passed."""
    from randguard.kernel.libbpf import BpfObject

    with BpfObject(_compiled_file_object()) as obj:
        sfx = obj.struct_layout("rg_suffix")
        conf = obj.struct_layout("rg_filter_conf")
        key = obj.struct_layout("rg_filter_key")
        val = obj.struct_layout("rg_filter_val")
    assert sfx == (len(pack_suffix(b"", 0)), {
        "len": (0, 1), "verdict": (1, 1), "s": (2, KERNEL_SUFFIX_SIZE - 2)})
    assert conf == (8 + KERNEL_FILTER_MAX_SUFFIXES * KERNEL_SUFFIX_SIZE, {
        "nr_suffixes": (0, 4), "pass_all": (4, 4),
        "suffixes": (8, KERNEL_FILTER_MAX_SUFFIXES * KERNEL_SUFFIX_SIZE)})
    assert key == (len(pack_trie_key(b"/")), {"prefixlen": (0, 4),
                                               "data": (4, KERNEL_TRIE_KEY_LEN)})
    assert val == (len(pack_trie_value(TrieEntry(b"/", False, 1, 0))), {
        "verdict": (0, 1), "exact": (1, 1), "fallback": (2, 1), "_pad": (3, 1)})


# --- patterns of every shape ---------------------------------------------------------------


@pytest.mark.parametrize(("pat", "form"), [
    # a file name without a wildcard: the whole last component
    ("sitecustomize.py", ("suffix", b"/sitecustomize.py")),
    ("authorized_keys", ("suffix", b"/authorized_keys")),
    ("a[b", ("suffix", b"/a[b")),  # an unclosed "[" is literal
    ("caf\u00e9.py", ("suffix", "/caf\u00e9.py".encode())),
    ("x" * 40, ("suffix", b"x" * KERNEL_SUFFIX_LEN)),  # cut to the slot: still a superset
    # the literal tail after the last wildcard
    ("*.service", ("suffix", b".service")),
    ("?itecustomize.py", ("suffix", b"itecustomize.py")),
    ("[su]*customize.py", ("suffix", b"ustomize.py")),  # "c" may end a \xNc escape
    ("[!x]rc", ("suffix", b"rc")),
    ("rc.*.d?x", ("suffix", b"x")),
    ("*abc", ("suffix", b"c")),
    ("dir/*/x.py", ("suffix", b"/x.py")),
    ("*/site-packages/sitecustomize.py", ("suffix", b"site-packages/sitecustomize.py")),
    ("/*/.config/*/autostart/*.desktop", ("suffix", b".desktop")),
    # an absolute full-path pattern with a literal beginning: a trie prefix
    ("/usr/lib/python3*/*-packages/*.pth", ("prefix", b"/usr/lib/python3")),
    ("/etc/cron.*/*", ("prefix", b"/etc/cron.")),
    # nothing literal to hold on to: pass_all
    ("cron*", ("all", b"")),
    ("*.[ch]", ("all", b"")),
    ("*", ("all", b"")),
    ("/*", ("all", b"")),
    ("*\\x41", ("all", b"")),  # the tail may lie inside an escape
])
def test_kernel_form_of_each_pattern_shape(pat: str, form: tuple[str, bytes]) -> None:
    assert kernel_form(pat) == form


# pattern -> (raw paths it matches, raw near misses); the kernel must pass the first and, unless
# the pattern leaves it nothing to match (pass_all), drop the second
_SHAPES: dict[str, tuple[list[bytes], list[bytes]]] = {
    "sitecustomize.py": (
        [b"/var/tmp/x/site-packages/sitecustomize.py", b"/sitecustomize.py",
         b"/root/.local/lib/python3.11/site-packages/sitecustomize.py"],
        [b"/var/tmp/x/xsitecustomize.py", b"/var/tmp/sitecustomize.py.bak",
         b"/var/tmp/sitecustomize.py/x", b"/var/tmp/x/usercustomize.py"],
    ),
    "usercustomize.py": (
        [b"/opt/venv/lib/python3.12/site-packages/usercustomize.py"],
        [b"/opt/venv/lib/python3.12/site-packages/_usercustomize.py"],
    ),
    "*.pth": (
        [b"/opt/venv/lib/python3.11/site-packages/a.pth", b"/.pth", b"/x/\xff.pth"],
        [b"/opt/a.pthx", b"/opt/a.pt", b"/opt/a.pth/x"],
    ),
    "[su]*customize.py": (
        [b"/x/usercustomize.py", b"/x/sitecustomize.py", b"/x/s\xffcustomize.py"],
        [b"/x/customize.py.bak", b"/x/notes"],
    ),
    "?itecustomize.py": (
        [b"/x/sitecustomize.py", "/x/\u00e9itecustomize.py".encode()],
        [b"/x/site.py", b"/x/tecustomize.py"],
    ),
    "rc.*.d?x": ([b"/etc/rc.local.dbx"], [b"/etc/rc.local.dby"]),
    "*abc": ([b"/x/abc", b"/x/\xabc", b"/x/zabc"], [b"/x/abd"]),
    "/*/site-packages/*customize.py": (
        [b"/venv/site-packages/sitecustomize.py", b"/\xff/site-packages/customize.py"],
        [b"/venv/site-packages/x.py", b"/a/b/notes"],
    ),
    "/usr/lib/python3*/*-packages/*.pth": (
        [b"/usr/lib/python3.11/site-packages/a.pth", b"/usr/lib/python3/dist-packages/a.pth"],
        [b"/usr/lib/python2/site-packages/a.pth", b"/usr/local/lib/a.pth"],
    ),
    "/etc/cron.*/*": ([b"/etc/cron.d/job", b"/etc/cron.daily/x"], [b"/etc/crontab"]),
    # relative with "/": matches no absolute path, "/dir/a/x.py" passes the kernel by "/x.py"
    "dir/*/x.py": ([], [b"/dir/a/x.pyc", b"/dir/a/y.py"]),
    "cron*": ([b"/etc/crontab", b"/var/spool/cron.allow"], [b"/var/spool/at.allow"]),
    "*": ([b"/a", b"/a/b"], []),
}


@pytest.mark.parametrize("pat", sorted(_SHAPES))
@pytest.mark.parametrize("forced", [False, True], ids=["watch_pattern", "detection"])
def test_every_pattern_shape_reaches_userspace(pat: str, forced: bool) -> None:
    """Each shape alone: every path it matches passes the kernel, also where the rest of the
    config would not (an unwatched or, for a detection, an excluded directory)."""
    matching, near = _SHAPES[pat]
    if forced:
        f = FileFilter(["/etc/ssh"], [], ["/tmp", "/var/tmp"], [], force=((), [pat]))
        # a name pattern matches in an excluded directory too
        examples = matching + ([b"/tmp" + p for p in matching] if "/" not in pat else [])
    else:
        f = FileFilter(["/etc/ssh"], [pat], ["/srv"], [])
        examples = matching
    k = compile_kernel_filter(f)
    for raw in examples:
        assert f.wants(decode_path(raw), True), raw  # the example is right
        assert k.passes(raw, write=True), (raw, k)
        assert not k.passes(raw, write=False)  # reads are not watched
    for raw in near:
        assert not f.wants(decode_path(raw), True), raw
        if kernel_form(pat)[0] != "all":
            assert not k.passes(raw, write=True), (raw, k)  # the kernel form stays narrow
    assert k.widened == (((pat, b""),) if kernel_form(pat)[0] == "all" else ())


def test_more_suffixes_than_slots_share_endings_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    names = [f"rg-hook-{i}.py" for i in range(20)]
    f = FileFilter(["/etc"], ["*.service"], ["/tmp"], [], force=((), names))
    with caplog.at_level(logging.WARNING, logger="randguard.matcher"):
        k = compile_kernel_filter(f)
    assert len(k.suffixes) == KERNEL_FILTER_MAX_SUFFIXES and k.pass_all == 0
    for name in names:  # none is dropped, not even under an exclude
        for d in ("/var/tmp/", "/tmp/", "/"):
            assert k.passes(f"{d}{name}".encode(), write=True), (d, name)
    assert k.passes(b"/srv/a.service", write=True)
    assert not k.passes(b"/tmp/a.service", write=True)  # not forced: the exclude holds
    assert not k.passes(b"/var/tmp/notes.txt", write=True)  # still a filter
    widened = dict(k.widened)
    assert len(widened) >= 2 * 5 and set(widened) <= set(names)  # 21 -> 16: five merges
    for pat, sfx in widened.items():
        assert sfx and (b"/" + pat.encode()).endswith(sfx) and len(sfx) < len(pat) + 1
    (rec,) = [r for r in caplog.records if r.name == "randguard.matcher"]
    msg = rec.getMessage()
    assert rec.levelno == logging.WARNING
    assert f"21 suffixes for {KERNEL_FILTER_MAX_SUFFIXES} slots" in msg
    assert all(repr(pat) in msg for pat in widened)
    assert "'*.service'" not in msg and "writes, also under exclude_paths" in msg


def test_suffixes_without_common_endings_fall_back_to_pass_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pats = [f"*.{c}" for c in "abcdefghijklmnopq"]  # 17 suffixes, 17 different last bytes
    with caplog.at_level(logging.WARNING, logger="randguard.matcher"):
        k = compile_kernel_filter(FileFilter(["/etc"], pats, [], []))
    assert (k.suffixes, k.pass_all) == ([], VERDICT_WATCH)
    assert dict(k.widened) == {p: b"" for p in pats}
    assert k.passes(b"/srv/x.a", write=True) and k.passes(b"/srv/x", write=True)
    assert not k.passes(b"/srv/x.a", write=False)  # only the bits the patterns need
    (rec,) = caplog.records
    assert "every path (pass_all) (writes)" in rec.getMessage()


def test_nothing_is_logged_when_every_pattern_fits(caplog: pytest.LogCaptureFixture) -> None:
    pats = [f"*.ext{i}" for i in range(KERNEL_FILTER_MAX_SUFFIXES)] + ["x.ext1", "/etc/cron.*/*"]
    with caplog.at_level(logging.DEBUG, logger="randguard.matcher"):
        k = compile_kernel_filter(FileFilter([], pats, [], []))
    # "/x.ext1" ends with ".ext1", which passes everything it does: no slot needed, no loss
    assert len(k.suffixes) == KERNEL_FILTER_MAX_SUFFIXES and (b"/x.ext1", 1) not in k.suffixes
    assert (k.pass_all, k.widened, caplog.records) == (0, (), [])
    assert k.passes(b"/srv/x.ext1", write=True)


def test_merged_suffixes_keep_force_and_read_bits() -> None:
    many = [f"rg{i}.conf" for i in range(KERNEL_FILTER_MAX_SUFFIXES + 4)]
    f = FileFilter([], [], ["/tmp"], [], force=((), many[:10]), force_read=((), many[10:]))
    k = compile_kernel_filter(f)
    assert len(k.suffixes) <= KERNEL_FILTER_MAX_SUFFIXES
    for i, name in enumerate(many):
        write = i < 10
        assert k.passes(f"/tmp/x/{name}".encode(), write=write), name
    assert all(v & VERDICT_FORCE for _, v in k.suffixes)


# --- superset property ---------------------------------------------------------------------

_CFG_COMPS = ["etc", "etcd", "e", "cron.d", "x.service", "ssh", "a\\b", "x41", "caf\u00e9"]
_CFG_COMPS.append("L" * 120)
_RAW_COMPS = [c.encode() for c in _CFG_COMPS] + [
    b"\xff",
    b"\xffz",
    b"\xe2\x82",
    b"\\x41",
    b"\\",
    b"ab.conf",
    b"\xab.conf",
    b"\xabc",
    b"authorized_keys",
    b"a.service",
    b"d" * 254,
    b"sitecustomize.py",
    b"xsitecustomize.py",
    b"site-packages",
    b"a.pth",
]
_PATTERNS = [
    "*.service",
    "*service",
    "authorized_keys",
    "*.conf",
    "*bc",
    "*xabc",
    "*abc",
    "*xab.conf",
    "*b.conf",
    "*\\\\xab.conf",
    "*x41",
    "*41",
    "*\\x41",
    "*\\",
    "x41",
    "*b",
    "cron*",
    "*.d/*x",
    "/etc/*.conf",
    "/etc/cron.*/*",
    "/e*",
    "/*/x.service",
    "[ae]*",
    "?tc",
    "*" + "y" * 40,
    "z" * 40,
    "sitecustomize.py",
    "[su]*customize.py",
    "?itecustomize.py",
    "*/site-packages/sitecustomize.py",
    "/*/site-packages/*.pth",
    "/e*/cron.d/*.service",
    "site-packages/*.py",
    "[!x]*.conf",
    "rc.*.d?x",
]


def _random_dir(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return "/"
    if r < 0.15:
        return "/" + "d" * rng.choice([253, 254, 255, 256, 300])
    if r < 0.25:
        return "/e*/" + rng.choice(_CFG_COMPS) if rng.random() < 0.5 else "/etc/cron.?"
    return "/" + "/".join(rng.choice(_CFG_COMPS) for _ in range(rng.randrange(1, 4)))


def _random_filter(rng: random.Random) -> FileFilter:
    return FileFilter(
        [_random_dir(rng) for _ in range(rng.randrange(5))],
        rng.sample(_PATTERNS, rng.randrange(5)),
        [_random_dir(rng) for _ in range(rng.randrange(4))],
        [_random_dir(rng) for _ in range(rng.randrange(4))],
    )


def _random_paths(rng: random.Random, f: FileFilter) -> list[bytes]:
    out = []
    for _ in range(60):
        comps = [rng.choice(_RAW_COMPS) for _ in range(rng.randrange(1, 6))]
        out.append(b"/" + b"/".join(comps))
    for d in (*f.watch_paths, *f.exclude_paths, *f.read_paths):
        b = d.replace("*", "x").replace("?", "x").rstrip("/").encode()
        tail = rng.choice(_RAW_COMPS)
        if b:  # near misses: the path itself, below it, and siblings sharing its text
            out += [b, b + b"/" + tail, b + b"x", b + b"x/" + tail, b + tail]
    return out


def test_kernel_filter_is_superset_of_userspace() -> None:
    rng = random.Random(20240601)
    checked = dropped = 0
    for _ in range(400):
        f = _random_filter(rng)
        k = compile_kernel_filter(f)
        assert len(k.suffixes) <= KERNEL_FILTER_MAX_SUFFIXES
        assert all(len(e.prefix) <= 255 for e in k.trie)
        assert all(e.verdict in (0, 1, 2, 3, 4) for e in k.trie)
        for raw in _random_paths(rng, f):
            path = decode_path(raw)
            for write in (True, False):
                want = f.wants(path, write)
                passes = k.passes(raw, write)
                assert passes or not want, (
                    f.watch_paths,
                    f.watch_patterns,
                    f.exclude_paths,
                    f.read_paths,
                    raw,
                    write,
                    k,
                )
                checked += want
                dropped += not passes
    # the property is not met trivially
    assert checked > 1000 and dropped > 1000


def test_kernel_filter_is_superset_with_more_suffixes_than_slots() -> None:
    """Many patterns of every shape: merged suffixes and pass_all still pass everything."""
    rng = random.Random(20250618)
    pool = [p for i in range(12) for p in (
        f"rg{i}.conf", f"*.e{i}", f"[ab]*x{i}", f"/*/d{i}/*.py", f"?{i}z", f"/srv/c{i}*/*")]
    comps = [c for i in range(12) for c in (
        f"rg{i}.conf", f"xrg{i}.conf", f"a.e{i}", f"bx{i}", f"cx{i}", f"d{i}", "k.py", f"q{i}z",
        f"c{i}", f"c{i}x")] + ["srv", "tmp", "etc"]
    # and names that decode to escapes: "\\xab" (a raw 0xab), "\\\\xab" (a backslash)
    raw_comps = [c.encode() for c in comps] + [b"\xab", b"\\xab", b"\xffx1", b"e\xab"]
    checked = dropped = merged = 0
    for _ in range(150):
        pats = rng.sample(pool, rng.randrange(14, 40))
        a, b = sorted(rng.sample(range(len(pats)), 2))
        f = FileFilter(["/etc"], pats[:a], ["/tmp"], ["/etc/shadow"],
                       force=(["/srv/x"], pats[a:b]), force_read=((), pats[b:]))
        k = compile_kernel_filter(f)
        assert len(k.suffixes) <= KERNEL_FILTER_MAX_SUFFIXES
        merged += bool(k.widened)
        for _ in range(120):
            raw = b"/" + b"/".join(rng.choice(raw_comps) for _ in range(rng.randrange(1, 5)))
            path = decode_path(raw)
            for write in (True, False):
                want = f.wants(path, write)
                passes = k.passes(raw, write)
                assert passes or not want, (pats, a, b, raw, write, k)
                checked += want
                dropped += not passes
    assert checked > 1000 and dropped > 1000 and merged > 50


def test_kernel_passes_emulation_matches_kernel_rules() -> None:
    k = KernelFilter(
        [
            TrieEntry(b"/a/", False, VERDICT_WATCH, 0),
            TrieEntry(b"/a", True, VERDICT_READ, VERDICT_EXCLUDE),
        ],
        [(b".x", VERDICT_READ)],
        0,
    )
    assert k.passes(b"/a", write=False)
    assert not k.passes(b"/ab.x", write=False)  # exact miss -> fallback EXCLUDE beats suffix
    assert k.passes(b"/a/b", write=True)
    assert k.passes(b"/a/b.x", write=False)
    assert not k.passes(b"/b", write=True)


def test_memo_answers_from_memory_and_stays_bounded() -> None:
    calls: list[str] = []

    def judge(path: str) -> bool:
        calls.append(path)
        return path.startswith("/etc")

    memo = Memo(judge, size=3)
    assert memo["/etc/passwd"] is True and memo["/etc/passwd"] is True
    assert calls == ["/etc/passwd"]  # the second answer came from memory
    for p in ("/a", "/b", "/c", "/d"):
        assert memo[p] is False
    assert len(memo) <= 3  # cleared when full, never larger
    assert memo["/etc/passwd"] is True and calls.count("/etc/passwd") == 2


def test_filter_verdicts_do_not_leak_between_write_and_read() -> None:
    f = FileFilter(watch_paths=["/etc"], read_paths=["/etc/shadow"])
    assert f.wants("/etc/passwd", True) is True
    assert f.wants("/etc/passwd", False) is False  # same path, the read side's own answer
    assert f.wants("/etc/shadow", False) is True
