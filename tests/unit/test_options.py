"""The options ``shardpay FILE`` and ``shardpay serve`` share (``shardpay.options``)."""

from __future__ import annotations

import argparse

import pytest

from shardpay.options import add_backend_options, add_workers_option, check_backend_options, workers_count


@pytest.mark.parametrize("text, want", [("1", 1), ("256", 256), (" 8 ", 8)])
def test_workers_count_takes_whole_numbers_in_range(text, want):
    assert workers_count(text) == want


@pytest.mark.parametrize("text, words", [("0", "outside 1..256"), ("257", "outside 1..256"), ("two", "not a whole number"),
                                         ("1.5", "not a whole number")])
def test_workers_count_names_what_is_wrong(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        workers_count(text)


def parser():
    p = argparse.ArgumentParser(prog="x")
    add_workers_option(p, 2)
    add_backend_options(p)
    return p


def test_defaults_and_the_ray_address_needs_the_ray_backend(capsys):
    p = parser()
    a = p.parse_args([])
    assert (a.workers, a.backend, a.ray_address) == (None, "local", None)
    check_backend_options(p, p.parse_args(["--backend", "ray", "--ray-address", "h:1"]))
    with pytest.raises(SystemExit) as exit_:
        check_backend_options(p, p.parse_args(["--ray-address", "h:1"]))
    assert exit_.value.code == 2 and "--ray-address needs --backend ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["--backend", "spark"])
