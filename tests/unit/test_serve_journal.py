"""shardpay.serve.journal: the lock, the format check before any write, torn tails cut, damage
named by offset, a failed append cut back, the export and the listing."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from shardpay.errors import InputError, ShardpayError
from shardpay.serve import journal as journal_module
from shardpay.serve.journal import CSV_HEADER, MAGIC, Journal, JournalBroken, encode_record, main, read_journal

SHA = "ab" * 32


def record(batch_id: str, rows: bytes, principal: str = "-@127.0.0.1") -> bytes:
    return encode_record(batch_id, principal, 1_765_000_000_000, 1, rows.count(b"\n"), SHA, rows)


def journal_file(tmp_path, *records: bytes):
    path = tmp_path / "j"
    path.write_bytes(MAGIC + b"".join(records))
    path.chmod(0o644)
    return path


def opened(path) -> tuple[Journal, list]:
    j = Journal(str(path))
    return j, list(j.records())


def test_a_new_journal_is_its_first_line_mode_0600_and_takes_records(tmp_path):
    path = tmp_path / "j"
    j, found = opened(path)
    assert found == [] and j.new
    j.ready()
    j.append(record("b1", b"deposit,1,1,5\n") + record("b2", b"withdrawal,1,2,1\n"))
    j.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(MAGIC)
    j, found = opened(path)
    assert [(r.batch_id, r.rows_data, r.offset) for r in found] == [
        ("b1", b"deposit,1,1,5\n", len(MAGIC)),
        ("b2", b"withdrawal,1,2,1\n", len(MAGIC) + len(record("b1", b"deposit,1,1,5\n")))]
    assert found[0].principal == "-@127.0.0.1" and found[0].sha256 == SHA and found[0].rows == 1
    j.close()


def test_a_second_opener_is_refused_at_once(tmp_path):
    path = journal_file(tmp_path)
    first = Journal(str(path))
    try:
        with pytest.raises(ShardpayError, match="in use by another shardpay serve"):
            Journal(str(path))
    finally:
        first.close()
    Journal(str(path)).close()  # free again


@pytest.mark.parametrize("content", [CSV_HEADER + b"deposit,1,1,5\n", b"\x00\x01binary", b"shardpay journal 2\n"])
def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path, content):
    path = tmp_path / "accounts.csv"
    path.write_bytes(content)
    path.chmod(0o644)
    with pytest.raises(InputError, match="is not a shardpay journal .* nothing was written to it"):
        Journal(str(path))
    assert path.read_bytes() == content and stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("cut", [1, 10, 40, 70, 120])
def test_a_torn_tail_is_cut(tmp_path, cut):
    good = record("b1", b"deposit,1,1,5\n")
    last = record("b2", b"deposit,1,2,5\n" * 5)
    path = journal_file(tmp_path, good, last[:cut])
    j, found = opened(path)
    assert [r.batch_id for r in found] == ["b1"]
    assert (j.end, j.torn) == (len(MAGIC) + len(good), cut)
    j.ready()
    j.close()
    assert path.read_bytes() == MAGIC + good


def test_a_last_record_with_a_wrong_crc_is_a_torn_tail(tmp_path):
    good, last = record("b1", b"deposit,1,1,5\n"), bytearray(record("b2", b"deposit,1,2,5\n"))
    last[-3] ^= 1  # '5' -> '4': the write of the tail went wrong
    j, found = opened(journal_file(tmp_path, good, bytes(last)))
    assert [r.batch_id for r in found] == ["b1"] and j.torn == len(last)
    j.close()


def test_a_torn_first_line_of_a_new_journal(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(MAGIC[:7])
    j, found = opened(path)
    assert found == [] and j.new
    j.ready()
    j.close()
    assert path.read_bytes() == MAGIC


@pytest.mark.parametrize(("where", "what"), [(-3, "CRC32"), (6, "CRC32"), (0, "not a batch record")])
def test_damage_in_the_middle_stops_naming_the_offset(tmp_path, where, what):
    first = bytearray(record("b1", b"deposit,1,1,5\n"))
    first[where] ^= 0x20  # a digit of the rows, a letter of the id, the record's first byte
    path = journal_file(tmp_path, bytes(first), record("b2", b"deposit,1,2,5\n"))
    before = path.read_bytes()
    j = Journal(str(path))
    with pytest.raises(InputError, match=rf"damaged at offset {len(MAGIC)}: .*{what}"):
        list(j.records())
    j.close()
    assert path.read_bytes() == before


def test_a_failed_append_is_cut_back_and_the_next_one_lands(tmp_path, monkeypatch):
    path = journal_file(tmp_path, record("b1", b"deposit,1,1,5\n"))
    j, _ = opened(path)
    j.ready()
    real = os.pwrite

    def half_then_full(fd, data, offset):
        real(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.os, "pwrite", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        j.append(record("b2", b"deposit,1,2,5\n" * 100))
    assert path.read_bytes() == MAGIC + record("b1", b"deposit,1,1,5\n")
    monkeypatch.setattr(journal_module.os, "pwrite", real)
    j.append(record("b3", b"deposit,1,3,5\n"))
    j.close()
    assert [r.batch_id for r in opened(path)[1]] == ["b1", "b3"]


def test_a_cut_back_that_fails_too_stops_the_server(tmp_path, monkeypatch):
    j, _ = opened(journal_file(tmp_path))
    j.ready()

    def fail(*args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module.os, "pwrite", fail)
    monkeypatch.setattr(journal_module.os, "ftruncate", fail)
    with pytest.raises(JournalBroken, match="cannot be cut back"):
        j.append(record("b2", b"deposit,1,2,5\n"))
    j.close()


def test_read_journal_leaves_out_a_batch_being_written(tmp_path):
    path = journal_file(tmp_path, record("b1", b"deposit,1,1,5\n"), record("b2", b"deposit,1,2,5\n")[:-4])
    records, scan = read_journal(str(path))
    assert [r.batch_id for r in records] == ["b1"] and scan.torn > 0


def test_export_and_list(tmp_path, capsysbinary):
    path = journal_file(tmp_path, record("b1", b"deposit,1,1,5\n"), record("b2", b"withdrawal,1,2,1\n", "alice@10.0.0.7"))
    assert main(["export", str(path)]) == 0
    assert capsysbinary.readouterr().out == CSV_HEADER + b"deposit,1,1,5\nwithdrawal,1,2,1\n"
    out = tmp_path / "tx.csv"
    assert main(["export", str(path), "-o", str(out)]) == 0
    assert out.read_bytes() == CSV_HEADER + b"deposit,1,1,5\nwithdrawal,1,2,1\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert main(["list", str(path)]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0] == "offset,batch,principal,time,rows,bytes"
    assert lines[2].startswith(f"{len(MAGIC) + len(record('b1', b'deposit,1,1,5' + bytes([10])))},b2,alice@10.0.0.7,2025-12-06T")
    with pytest.raises(InputError, match="not a shardpay journal"):
        main(["export", str(out)])
