"""A root agent refuses config and rules files that others could change (like sudo, sshd)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from randguard.core.config import ConfigError, load_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the check applies to a root agent")


def test_group_or_world_writable_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[agent]\n")
    for mode in (0o664, 0o646):
        cfg.chmod(mode)
        with pytest.raises(ConfigError) as e:
            load_config(cfg)
        assert str(e.value) == (f"{cfg}: -: writable by group or others (mode {mode:04o}); "
                                "a root agent refuses it: chmod go-w")
    cfg.chmod(0o644)
    assert load_config(cfg).agent.log_level == "info"


def test_file_of_another_user_in_roots_directory_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[agent]\n")
    os.chown(cfg, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        load_config(cfg)


def test_symlink_to_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    target = theirs / "c.toml"
    target.write_text("[agent]\n")
    os.chown(target, 65534, 65534)
    link = tmp_path / "c.toml"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        load_config(link)


def test_rules_d_file_is_checked_too(tmp_path: Path) -> None:
    from randguard.core.ruleset import load_ruleset

    cfg = tmp_path / "c.toml"
    cfg.write_text("[agent]\n")
    (tmp_path / "rules.d").mkdir()
    bad = tmp_path / "rules.d" / "x.toml"
    bad.write_text('[[rules]]\nid = "X"\nname = "x"\ntype = "file"\npaths = ["/x"]\n')
    bad.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by group or others"):
        load_ruleset(load_config(cfg), cfg)
