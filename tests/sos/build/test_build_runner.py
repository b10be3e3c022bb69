"""How a builder's output becomes lines on the server (``sos.build.runner.LineReader``):
whatever a build prints, each line the server holds is bounded."""

from __future__ import annotations

from sos.build.runner import LineReader


def test_lines_come_whole_across_chunks_and_without_their_line_ends() -> None:
    lines = LineReader(most=100)
    assert lines.feed(b"one\ntw") == ["one"]
    assert lines.feed(b"o\r\nthr") == ["two"]
    assert lines.feed(b"ee") == [] and lines.end() == ["three"]
    assert lines.end() == []


def test_a_line_past_the_limit_is_cut_and_the_rest_of_it_dropped() -> None:
    lines = LineReader(most=10)
    found = [*lines.feed(b"x" * 8), *lines.feed(b"y" * 1000), *lines.feed(b"z" * 1000 + b"\nok\n")]
    assert found == ["x" * 8 + "yy [cut: a line longer than 10 bytes]", "ok"]
    many = LineReader(most=10).feed(b"a" * 50 + b"\n" + b"b" * 5 + b"\n")
    assert many == ["a" * 10 + " [cut: a line longer than 10 bytes]", "b" * 5]
