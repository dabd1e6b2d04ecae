"""``shardpay serve``, authenticated: with ``--token-file`` nothing is read from a connection before
its token; a squatter without one claims no tx id; the journal names who sent each batch; TLS
with the ``ssl`` module; and a server beyond loopback without tokens does not start."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time

import pytest

import shardpay
from shardpay.errors import ServeError
from shardpay.serve.protocol import batch_request
from tests.conftest import run_cli, shardpay_cmd
from tests.integration.serve_harness import HEADER, Serve, close, send, token_file

ALICE = ("alice", "a1ice-0123456789abcdef0123456789")
BOB = ("bob", "b0b-fedcba9876543210fedcba987654")


def client_token(tmp_path, name: str, token: str):
    return token_file(tmp_path / f"{name}.token", (name, token))


@pytest.fixture
def guarded(tmp_path):
    tokens = token_file(tmp_path / "tokens", ALICE, BOB)
    server = Serve(tmp_path, "--workers", "1", "--token-file", str(tokens))
    yield server
    assert server.stop() == 0, server.stderr()


def test_a_squatter_without_a_token_claims_nothing(guarded, tmp_path):
    squat = HEADER + b"deposit,666,100,1\ndeposit,666,101,1\ndispute,1,1\n"

    async def raw(data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", guarded.port)
        writer.write(data)
        answer = await reader.read()
        await close(writer)
        return answer

    assert asyncio.run(raw(batch_request("squat", squat))) == (
        b"error - auth: this server needs 'auth NAME TOKEN' first\n")
    assert asyncio.run(raw(b"auth alice wrong-token-wrong-token\n" + batch_request("squat", squat))) == (
        b"error - auth: unknown name 'alice' or wrong token\n")
    assert asyncio.run(raw(b"auth mallory " + ALICE[1].encode() + b"\n" + batch_request("squat", squat))) == (
        b"error - auth: unknown name 'mallory' or wrong token\n")
    assert send(guarded.port, "squat", squat, credentials=("bob", ALICE[1])).startswith(b"error - auth:")
    # The owners' deposits are not duplicate_tx: nothing of the squatter's was read.
    assert send(guarded.port, "real", HEADER + b"deposit,1,100,5\ndeposit,2,101,5\n", credentials=ALICE) == (
        b"ok real accepted=2 rejected=0\n")
    listing = run_cli("journal", "list", str(guarded.journal)).stdout.decode().splitlines()
    assert [line.split(",")[1:3] for line in listing[1:]] == [["real", "alice@127.0.0.1"]]
    assert "refused a connection from 127.0.0.1: this server needs 'auth NAME TOKEN' first" in guarded.stderr()
    assert ALICE[1] not in guarded.stderr()  # a token is never logged


def test_batch_ids_are_per_token_name(guarded, tmp_path):
    body = HEADER + b"deposit,5,500,1\n"
    assert send(guarded.port, "day-1", body, credentials=ALICE) == b"ok day-1 accepted=1 rejected=0\n"
    assert send(guarded.port, "day-1", body, credentials=ALICE) == b"already day-1 accepted=1 rejected=0\n"
    bob = send(guarded.port, "day-1", body, credentials=BOB)  # bob's own day-1: applied (and a duplicate tx)
    assert bob.startswith(b"ok day-1 accepted=0 rejected=1\n2,duplicate_tx,")


def test_send_and_client_with_a_token_file(guarded, tmp_path):
    to = f"127.0.0.1:{guarded.port}"
    alice = client_token(tmp_path, *ALICE)
    sent = run_cli("send", "-", "--to", to, "--token-file", str(alice), "--batch-id", "s1", input=HEADER)
    assert sent.returncode == 0 and sent.stdout == b"batch s1: applied (accepted 0, rejected 0)\n"
    nobody = run_cli("send", "-", "--to", to, "--batch-id", "s2", input=HEADER)
    assert nobody.returncode == 1
    assert nobody.stderr == (b"shardpay: error: batch 's2' not applied: auth: this server needs "
                             b"'auth NAME TOKEN' first\n")
    alice.chmod(0o644)
    loose = run_cli("send", "-", "--to", to, "--token-file", str(alice), input=HEADER)
    assert loose.returncode == 1 and b"open to group or others (mode 0644): chmod 600 it" in loose.stderr
    alice.chmod(0o600)
    with shardpay.Client(to, token_file=str(alice)) as client:
        assert client.send(HEADER, "c1").status == "ok"
    with pytest.raises(ServeError) as err, shardpay.Client(to) as client:
        client.send(HEADER, "c2")
    assert err.value.code == "auth"


def test_no_token_beyond_loopback_does_not_start(tmp_path):
    t0 = time.monotonic()
    out = subprocess.run(shardpay_cmd() + ["serve", "--listen", "0.0.0.0:0", "--journal", str(tmp_path / "j")],
                         capture_output=True, timeout=60)
    assert out.returncode == 1 and time.monotonic() - t0 < 5
    assert out.stderr == (b"shardpay: error: --listen 0.0.0.0:0 is not a loopback address: anyone who reaches it "
                          b"could post rows for any client; give --token-file (and --tls-cert/--tls-key)\n")
    assert not (tmp_path / "j").exists()
    loose = token_file(tmp_path / "tokens", ALICE)
    loose.chmod(0o640)
    out = run_cli("serve", "--listen", "0.0.0.0:0", "--journal", str(tmp_path / "j"), "--token-file", str(loose))
    assert out.returncode == 1 and b"open to group or others (mode 0640)" in out.stderr


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: ``(cert.pem, key.pem)``."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=shardpay test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def test_tls(tmp_path, certificate):
    cert, key = certificate
    tokens = token_file(tmp_path / "tokens", ALICE)
    server = Serve(tmp_path, "--workers", "1", "--token-file", str(tokens), "--tls-cert", str(cert),
                   "--tls-key", str(key), "--idle-timeout", "2")
    try:
        assert "TLS on" in server.stderr()
        to = f"127.0.0.1:{server.port}"
        alice = client_token(tmp_path, *ALICE)
        sent = run_cli("send", "-", "--to", to, "--token-file", str(alice), "--tls-ca", str(cert), "--batch-id", "t1",
                       input=HEADER + b"deposit,1,1,5\n")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout == b"batch t1: applied (accepted 1, rejected 0)\n"
        context = ssl.create_default_context(cafile=str(cert))
        assert send(server.port, "t2", HEADER, credentials=ALICE, tls=context) == b"ok t2 accepted=0 rejected=0\n"
        untrusted = run_cli("send", "-", "--to", to, "--token-file", str(alice), "--tls", input=HEADER)
        assert untrusted.returncode == 1 and b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        plain = run_cli("send", "-", "--to", to, "--token-file", str(alice), "--batch-id", "t3", input=HEADER)
        assert plain.returncode == 1 and b"batch 't3'" in plain.stderr  # no answer in plain text
    finally:
        assert server.stop() == 0, server.stderr()
    listing = run_cli("journal", "list", str(server.journal)).stdout.decode()
    assert ",t1,alice@127.0.0.1," in listing and ",t3," not in listing
