"""The Loop's writers: a reader and a writer per fd, each added and removed on its own."""

from __future__ import annotations

import os
import socket

import pytest

from entrypoint.runtime.loop import Loop


def test_reader_and_writer_on_one_socket() -> None:
    loop = Loop()
    left, right = socket.socketpair()
    seen: list[str] = []
    try:
        right.send(b"x")
        loop.add_reader(left, lambda: seen.append("read"))
        loop.add_writer(left, lambda: seen.append("write"))
        loop.run_once(1)
        assert sorted(seen) == ["read", "write"]
        loop.remove_writer(left)
        seen.clear()
        loop.run_once(1)
        assert seen == ["read"]
        loop.remove_reader(left)
        loop.add_writer(left, lambda: seen.append("write"))
        seen.clear()
        loop.run_once(1)
        assert seen == ["write"]
        loop.remove_writer(left)
        seen.clear()
        loop.run_once(0)
        assert seen == []
    finally:
        left.close()
        right.close()
        loop.close()


def test_adding_twice_or_removing_what_is_not_there_is_a_key_error() -> None:
    loop = Loop()
    read_fd, write_fd = os.pipe()
    try:
        loop.add_reader(read_fd, lambda: None)
        with pytest.raises(KeyError):
            loop.add_reader(read_fd, lambda: None)
        with pytest.raises(KeyError):
            loop.remove_writer(read_fd)
        loop.remove_reader(read_fd)
        with pytest.raises(KeyError):
            loop.remove_reader(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
        loop.close()


def test_a_callback_removed_earlier_in_the_batch_is_not_called() -> None:
    loop = Loop()
    first_r, first_w = os.pipe()
    second_r, second_w = os.pipe()
    called: list[int] = []

    def first() -> None:
        called.append(first_r)
        os.read(first_r, 1)
        for fd in (first_r, second_r):
            loop.remove_reader(fd)

    def second() -> None:
        called.append(second_r)
        os.read(second_r, 1)
        for fd in (first_r, second_r):
            loop.remove_reader(fd)

    try:
        os.write(first_w, b"x")
        os.write(second_w, b"x")
        loop.add_reader(first_r, first)
        loop.add_reader(second_r, second)
        loop.run_once(1)
        assert len(called) == 1
    finally:
        for fd in (first_r, first_w, second_r, second_w):
            os.close(fd)
        loop.close()
