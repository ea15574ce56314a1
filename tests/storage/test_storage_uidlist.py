"""dovecot-uidlist parsing and writing (mailslot.storage.index) against Dovecot-written files."""

import os

import pytest

from mailslot.storage import index, uidvalidity

# Written by Dovecot 2.3.19's dovecot-lda and imap on this machine's Debian packages.
DOVECOT_WRITTEN = (
    "3 V1795345272 N1 G35826d0778cb026b1726000083ecc375\n"
    "1 :1795345272.M124314P9751.vm,S=29,W=33\n"
    "2 W33 :1795345273.M1P2.vm,S=29\n"
    "5 G1795345000.M1P1.old :1795345274.M2P3.vm,S=29,W=33\n"
)


@pytest.fixture
def dir_fd(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_read_dovecot_written_list(tmp_path, dir_fd):
    (tmp_path / "dovecot-uidlist").write_text(DOVECOT_WRITTEN)
    header, records = index.read_uidlist(dir_fd)
    assert (header.version, header.uid_validity, header.next_uid, header.guid) == (
        3, 1795345272, 1, "35826d0778cb026b1726000083ecc375")
    assert records == [
        (1, [], "1795345272.M124314P9751.vm,S=29,W=33"),
        (2, ["W33"], "1795345273.M1P2.vm,S=29"),
        (5, ["G1795345000.M1P1.old"], "1795345274.M2P3.vm,S=29,W=33"),
    ]


def test_inspect_then_append(tmp_path, dir_fd):
    (tmp_path / "dovecot-uidlist").write_text(DOVECOT_WRITTEN)
    state = index.inspect_uidlist(dir_fd)
    assert state.status == "ok" and state.next_uid == 6
    assert index.append_records(state, ["a,S=1,W=1", "b,S=2,W=2:2,S"], fsync=True) == 6
    state.close()
    assert (tmp_path / "dovecot-uidlist").read_text() == (
        DOVECOT_WRITTEN + "6 :a,S=1,W=1\n7 :b,S=2,W=2\n")


def test_inspect_reads_only_the_ends_of_a_long_list(tmp_path, dir_fd):
    lines = ["3 V1 N1 G0123456789abcdef0123456789abcdef\n"]
    lines += [f"{uid} :{uid}.M1P1.h{'x' * 200},S=1,W=1\n" for uid in range(1, 3000)]
    (tmp_path / "dovecot-uidlist").write_text("".join(lines))
    state = index.inspect_uidlist(dir_fd)
    assert state.next_uid == 3000
    state.close()


def test_header_only_list_starts_at_its_next_uid(tmp_path, dir_fd):
    (tmp_path / "dovecot-uidlist").write_text("3 V9 N17 G0123456789abcdef0123456789abcdef\n")
    state = index.inspect_uidlist(dir_fd)
    assert (state.status, state.next_uid) == ("ok", 17)
    state.close()


@pytest.mark.parametrize("content,status", [
    (None, "missing"),
    ("", "missing"),
    ("3 V9 N17 G0123456789abcdef0123456789abcdef", "unusable"),   # header not finished
    ("2 V9 N1\n", "unusable"),
    ("3 V0 N1 G0123456789abcdef0123456789abcdef\n", "unusable"),
    ("3 V1 N4294967295 G0123456789abcdef0123456789abcdef\n", "unusable"),
])
def test_inspect_states(tmp_path, dir_fd, content, status):
    if content is not None:
        (tmp_path / "dovecot-uidlist").write_text(content)
    state = index.inspect_uidlist(dir_fd)
    assert state.status == status
    state.close()


def test_write_new_list(tmp_path, dir_fd):
    header = index.UidlistHeader(1234, 1, "0123456789abcdef0123456789abcdef")
    assert index.write_new_uidlist(dir_fd, header, ["a,S=1,W=1", "b:2,S"], mode=0o640,
                                   fsync=True) == 1
    path = tmp_path / "dovecot-uidlist"
    assert path.read_text() == ("3 V1234 N1 G0123456789abcdef0123456789abcdef\n"
                                "1 :a,S=1,W=1\n2 :b\n")
    assert path.stat().st_mode & 0o777 == 0o640
    assert not (tmp_path / "dovecot-uidlist.tmp").exists()


def test_new_guid_is_random_128_bit():
    guids = {index.new_mailbox_guid() for _ in range(100)}
    assert len(guids) == 100
    assert all(len(g) == 32 and int(g, 16) >= 0 for g in guids)


@pytest.mark.parametrize("bad", ["", "x/y", "a\nb"])
def test_format_record_refuses_bad_names(bad):
    with pytest.raises(ValueError):
        index.format_record(1, bad)


def test_uidvalidity_sequence_like_dovecot(tmp_path, dir_fd):
    first = uidvalidity.next_uid_validity(dir_fd, mode=0o600)
    second = uidvalidity.next_uid_validity(dir_fd, mode=0o600)
    assert second == first + 1
    assert (tmp_path / "dovecot-uidvalidity").read_text() == f"{second:08x}"
    assert sorted(os.listdir(tmp_path)) == ["dovecot-uidvalidity",
                                            f"dovecot-uidvalidity.{second:08x}"]
    # A lost main file is rebuilt from the marker, never going backwards.
    os.unlink(tmp_path / "dovecot-uidvalidity")
    assert uidvalidity.next_uid_validity(dir_fd, mode=0o600) == second + 1


def test_uidvalidity_continues_dovecots_files(tmp_path, dir_fd):
    (tmp_path / "dovecot-uidvalidity").write_text("6b02cb7a")
    (tmp_path / "dovecot-uidvalidity.6b02cb7a").write_text("")
    assert uidvalidity.next_uid_validity(dir_fd) == 0x6B02CB7B


def test_appends_go_where_the_inspection_left_the_end(tmp_path, dir_fd, monkeypatch):
    """append_records() writes at the length inspect_uidlist() saw under the lock
    (pwrite, no lseek per save), also after a partial last line was cut and across
    two appends through one state."""
    (tmp_path / "dovecot-uidlist").write_text(DOVECOT_WRITTEN + "6 :partial-by-a-cr")
    state = index.inspect_uidlist(dir_fd)

    def no_lseek(*args):
        raise AssertionError("lseek per append")
    monkeypatch.setattr(index.os, "lseek", no_lseek)
    assert index.append_records(state, ["a,S=1,W=1"], fsync=True) == 6
    assert index.append_records(state, ["b,S=2,W=2"], fsync=False) == 7
    state.close()
    assert (tmp_path / "dovecot-uidlist").read_text() == (
        DOVECOT_WRITTEN + "6 :a,S=1,W=1\n7 :b,S=2,W=2\n")
