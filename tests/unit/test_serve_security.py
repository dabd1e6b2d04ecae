"""shardpay.serve.security and .config: token files (private, well-formed, never echoed), the
constant-time check, what counts as loopback, and the limits checked at start."""

from __future__ import annotations

import argparse

import pytest

from shardpay.errors import ShardpayError
from shardpay.serve.config import (
    DEFAULT_MAX_CONNECTIONS,
    FD_RESERVE,
    ServeOptions,
    _size,
    check_exposure,
    connection_limit,
    parse_address,
    parse_args,
)
from shardpay.serve.security import Tokens, client_credentials, is_loopback, read_token_file, server_tls

ALICE = "alice 0123456789abcdef0123456789abcdef\n"


def token_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_a_token_file_names_its_credentials(tmp_path):
    path = token_file(tmp_path, "# loaders\n\n" + ALICE + "  batch-loader.2   tok_tok_tok_tok_tok!  \n")
    assert read_token_file(path) == [("alice", "0123456789abcdef0123456789abcdef"),
                                     ("batch-loader.2", "tok_tok_tok_tok_tok!")]
    assert client_credentials(path) == ("alice", "0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_token_file_open_to_others_is_refused(tmp_path, mode):
    with pytest.raises(ShardpayError, match=rf"open to group or others \(mode {mode:04o}\): chmod 600 it"):
        read_token_file(token_file(tmp_path, ALICE, mode))


@pytest.mark.parametrize(("text", "words"), [
    ("alice short\n", "line 1: expected 'NAME TOKEN'"),
    ("al/ice 0123456789abcdef\n", "line 1: expected"),
    ("alice 0123456789abcdef extra\n", "line 1: expected"),
    (ALICE + ALICE, "line 2: the name 'alice' comes twice"),
    ("# nothing\n", "holds no token"),
])
def test_malformed_token_files_are_named_without_the_token(tmp_path, text, words):
    with pytest.raises(ShardpayError, match=words) as err:
        read_token_file(token_file(tmp_path, text))
    assert "0123456789abcdef" not in str(err.value)


def test_missing_token_file(tmp_path):
    with pytest.raises(ShardpayError, match="cannot read the token file .*No such file"):
        read_token_file(str(tmp_path / "none"))


def test_verify():
    tokens = Tokens([("alice", "0123456789abcdef0123456789abcdef"), ("bob", "fedcba9876543210fedcba9876543210")])
    assert tokens.verify("alice", "0123456789abcdef0123456789abcdef")
    assert not tokens.verify("alice", "fedcba9876543210fedcba9876543210")  # bob's token under alice's name
    assert not tokens.verify("alice", "0123456789abcdef0123456789abcde")
    assert not tokens.verify("carol", "0123456789abcdef0123456789abcdef")
    assert not tokens.verify("carol", "")
    assert len(tokens) == 2


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.10", False), ("10.0.0.1", False),
    ("no-such-host.invalid", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_non_loopback_address_needs_tokens():
    opts = ServeOptions(host="0.0.0.0", port=7878, workers=1, journal="j")
    with pytest.raises(ShardpayError, match=r"--listen 0.0.0.0:7878 is not a loopback address: .*--token-file"):
        check_exposure(opts)
    check_exposure(ServeOptions(host="0.0.0.0", port=7878, workers=1, journal="j", token_file="t"))
    check_exposure(ServeOptions(host="127.0.0.1", port=7878, workers=1, journal="j"))


def test_connection_limit_stays_under_the_open_file_limit():
    assert connection_limit(None, 20000) == DEFAULT_MAX_CONNECTIONS
    assert connection_limit(None, 1024) == (1024 - FD_RESERVE) // 2
    assert connection_limit(3000, 20000) == 3000
    with pytest.raises(ShardpayError, match=r"--max-connections 5000 needs 10064 open files, but this process "
                                            r"may open 4096 \(ulimit -n\)"):
        connection_limit(5000, 4096)
    with pytest.raises(ShardpayError, match=r"may open 60 files \(ulimit -n\): too few to serve any connection"):
        connection_limit(None, 60)


def test_sizes_and_addresses():
    assert [_size(t) for t in ("65536", "64K", "16M", "16MiB", "1g", "2KB")] == [65536, 65536, 16 << 20, 16 << 20,
                                                                               1 << 30, 2048]
    for bad in ("", "0", "-1", "1.5M", "16X", "M"):
        with pytest.raises(argparse.ArgumentTypeError):
            _size(bad)
    assert parse_address("[::1]:7878") == ("::1", 7878)
    assert parse_address(":7878") == ("127.0.0.1", 7878)


def test_parse_args_defaults_and_pairs(capsys):
    opts = parse_args(["--journal", "j"])
    assert (opts.host, opts.port, opts.idle_timeout, opts.drain_timeout) == ("127.0.0.1", 7878, 30.0, 10.0)
    assert (opts.max_batch_bytes, opts.max_buffer_bytes, opts.max_connections) == (16 << 20, 256 << 20, None)
    for argv in (["--journal", "j", "--tls-cert", "c.pem"],
                 ["--journal", "j", "--max-batch-bytes", "2M", "--max-buffer-bytes", "1M"]):
        with pytest.raises(SystemExit) as stop:
            parse_args(argv)
        assert stop.value.code == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_tls_key_must_be_private_and_load(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    key.chmod(0o644)
    with pytest.raises(ShardpayError, match="TLS key .* open to group or others"):
        server_tls(str(tmp_path / "cert.pem"), str(key))
    key.chmod(0o600)
    with pytest.raises(ShardpayError, match="cannot load the TLS certificate"):
        server_tls(str(tmp_path / "cert.pem"), str(key))
