"""TRIAGE_HOME at rest: every process makes it owner-only (or group-readable when configured) and
refuses one others can write. Run as real `triage` processes: the umask they set
is process-wide."""

import grp
import os
import stat

import pytest

from testkit.peers import triage_env
from tests.test_cli import triage


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_the_database_are_owner_only(settings):
    settings.home.mkdir(parents=True)
    settings.home.chmod(0o755)
    listed = triage("users", "list", env=triage_env(settings))
    assert listed.returncode == 0, listed.stderr
    assert mode(settings.home) == 0o700
    assert mode(settings.home / "triage.db") == 0o600


def test_a_database_created_readable_by_all_is_tightened(settings):
    assert triage("users", "list", env=triage_env(settings)).returncode == 0
    (settings.home / "triage.db").chmod(0o644)
    assert triage("users", "list", env=triage_env(settings)).returncode == 0
    assert mode(settings.home / "triage.db") == 0o600


def test_a_configured_group_may_read(settings):
    group = grp.getgrgid(os.getegid()).gr_name  # the service user's own group
    listed = triage("users", "list", env=triage_env(settings, TRIAGE_HOME_GROUP=group))
    assert listed.returncode == 0, listed.stderr
    assert mode(settings.home) == 0o2750 and settings.home.stat().st_gid == os.getegid()
    assert mode(settings.home / "triage.db") == 0o640
    unknown = triage("users", "list", env=triage_env(settings, TRIAGE_HOME_GROUP="no-such-group-here"))
    assert unknown.returncode == 2 and "is not a group of this host" in unknown.stderr


@pytest.mark.parametrize("writable", [0o777, 0o770], ids=["by-anyone", "by-its-group"])
def test_a_home_others_can_write_is_refused(settings, writable):
    settings.home.mkdir(parents=True)
    settings.home.chmod(writable)
    for command in (("users", "list"), ("listener",)):
        refused = triage(*command, env=triage_env(settings))
        assert refused.returncode == 2
        assert "refusing to start" in refused.stderr and "can be written by others" in refused.stderr
    assert not (settings.home / "triage.db").exists(), "nothing was written into it"


def test_a_home_under_a_folder_anyone_can_write_is_refused(make_settings, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # without the sticky bit anyone may rename home away and put theirs instead
    settings = make_settings(home=shared / "home")
    refused = triage("users", "list", env=triage_env(settings))
    assert refused.returncode == 2 and "can be written by anyone" in refused.stderr
    shared.chmod(0o1777)  # like /tmp: others cannot rename what is ours
    assert triage("users", "list", env=triage_env(settings)).returncode == 0
