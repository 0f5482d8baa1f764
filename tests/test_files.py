"""generator.core.files: writes that never follow a link, never leave half a file, and report a disk
that refuses them in one line."""

from __future__ import annotations

import errno
import os

import click
import pytest

from generator.core import files
from generator.core.errors import OutputError, WriteError, library_errors


def test_write_atomic_replaces_a_file_and_refuses_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "out.yaml"
    files.write_atomic(target, b"one")
    files.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    link = tmp_path / "link.yaml"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="link.yaml is a symbolic link"):
        files.write_atomic(link, b"three")
    assert victim.read_bytes() == b"precious" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.yaml", "out.yaml", "victim"]


def test_a_refused_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.yaml"
    target.write_bytes(b"old")

    def read_only(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(files, "_create_temporary", read_only)
    with pytest.raises(WriteError, match="cannot write .*out.yaml: Read-only file system"):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


def test_a_ctrl_c_just_after_the_rename_stays_a_ctrl_c(tmp_path, monkeypatch):
    """The Ray run's Ctrl-C once landed between ``os.replace`` and the return; the cleanup's
    FileNotFoundError then hid the interrupt."""
    target = tmp_path / "manifest.json"
    replace = os.replace

    def replace_then_interrupt(src, dst):
        replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_the_cli_reports_a_refusing_disk_as_one_line_with_status_1(code):
    with pytest.raises(click.ClickException) as caught:
        with library_errors():
            raise OSError(code, os.strerror(code), "data/x.tar")
    assert caught.value.exit_code == 1 and caught.value.message == f"cannot write data/x.tar: {os.strerror(code)}"


def test_a_bug_is_not_reported_as_a_disk_error():
    with pytest.raises(FileNotFoundError):
        with library_errors():
            raise FileNotFoundError(errno.ENOENT, "no such file", "x")


def test_open_in_place_refuses_links_hard_links_and_existing_files(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "soft").symlink_to(victim)
    os.link(victim, tmp_path / "hard")
    with pytest.raises(OutputError, match="soft is a symbolic link"):
        files.open_in_place(tmp_path / "soft", create=False)
    with pytest.raises(OutputError, match="hard link"):
        files.open_in_place(tmp_path / "hard", create=False)
    with pytest.raises(OutputError, match="soft exists already"):
        files.open_in_place(tmp_path / "soft", create=True)  # a dangling link would be refused too
    with files.open_in_place(tmp_path / "new", create=True) as f:
        f.write(b"x")
    assert victim.read_bytes() == b"precious"


def test_folder_lock_creates_the_folder_and_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "made"
    with files.folder_lock(folder):
        assert (folder / files.LOCK).read_text().strip() == str(os.getpid())
    assert not folder.exists()  # created for the run, still empty: removed
    (tmp_path / "kept").mkdir()
    with files.folder_lock(tmp_path / "kept"):
        (tmp_path / "kept" / "data").write_bytes(b"x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["data"]
