"""Log capture on real files: tails, rotation, platform lines, followers."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sos.runtime.base import LogLine
from sos.runtime.local.logs import LogStore, error_block


async def test_lines_are_read_back_per_stream(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    out, err = store.open("shop", "shop-00001", "shop-00001-a")
    out.write(b"hello\nworld\n")
    err.write(b"a warning\npartial")
    out.close()
    err.close()
    store.platform("shop", "shop-00001", "shop-00001-a", "started")
    lines = [
        (line.stream, line.text) async for line in store.read("shop", None, tail=10, follow=False)
    ]
    assert ("stdout", "hello") in lines and ("stdout", "world") in lines
    assert ("stderr", "a warning") in lines
    assert ("stderr", "partial") not in lines  # an unfinished line waits for its end
    assert ("platform", "started") in lines


async def test_a_big_file_is_rotated_and_nothing_is_lost(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=1000)
    out, err = store.open("shop", "shop-00001", "shop-00001-a")
    for i in range(50):
        out.write(f"line {i:03d} ".encode() + b"x" * 40 + b"\n")
        out.flush()
        if i % 10 == 9:
            await store.poll()
    out.close()
    err.close()
    await store.poll()
    texts = [line.text async for line in store.read("shop", None, tail=1000, follow=False)]
    assert [t[:8] for t in texts] == [f"line {i:03d}" for i in range(50)]
    folder = tmp_path / "shop" / "shop-00001"
    assert (folder / "shop-00001-a.out.log.1").exists()
    assert (folder / "shop-00001-a.out.log").stat().st_size <= 1000


async def test_a_line_without_end_is_cut_not_held_in_memory(tmp_path: Path) -> None:
    # an instance printing megabytes without a newline must not grow the server
    store = LogStore(tmp_path)
    out, err = store.open("shop", "shop-00001", "shop-00001-a")
    for _ in range(3):
        out.write(b"x" * 2**20)
        out.flush()
        await store.poll()
    out.write(b"\nafter\n")
    out.close()
    err.close()
    await store.poll()
    texts = [line.text async for line in store.read("shop", None, tail=100, follow=False)]
    assert texts[-1] == "after"
    assert all(len(text) < 70_000 for text in texts)
    assert texts[0].startswith("x" * 1000) and "line cut" in texts[0]


async def test_an_instance_writes_through_a_pipe_it_cannot_rewind(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    out, err = store.open("shop", "shop-00001", "shop-00001-a")
    pipe, writer = LogStore.writer(out, 1000)
    out.close()
    err.close()
    os.write(pipe, b"kept\n")
    with pytest.raises(OSError):
        os.ftruncate(pipe, 0)  # what an instance hiding its tracks would do
    os.write(pipe, b"y" * 2000 + b"\n")  # past the writer's size limit
    os.close(pipe)
    writer.wait(timeout=10)
    await store.poll()
    texts = [line.text async for line in store.read("shop", None, tail=10, follow=False)]
    assert texts[0] == "kept"
    size = (tmp_path / "shop" / "shop-00001" / "shop-00001-a.out.log").stat().st_size
    assert size <= 1000


async def test_followers_get_new_lines_of_their_revision_only(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    one, _ = store.open("shop", "shop-00001", "shop-00001-a")
    two, _ = store.open("shop", "shop-00002", "shop-00002-a")
    follow = store.read("shop", "shop-00002", tail=0, follow=True)
    waiting = asyncio.ensure_future(anext(follow))
    await asyncio.sleep(0)
    one.write(b"from one\n")
    one.flush()
    two.write(b"from two\n")
    two.flush()
    await store.poll()
    line = await asyncio.wait_for(waiting, 5)
    assert (line.revision, line.text) == ("shop-00002", "from two")
    await follow.aclose()


GUNICORN_BOOT = [
    "[INFO] Starting gunicorn 23.0.0",
    "[INFO] Listening at: http://127.0.0.1:41234 (4711)",
    "[INFO] Booting worker with pid: 4712",
]
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/srv/app.py", line 3, in <module>',
    "    load()",
    "FileNotFoundError: MovieLens file ratings.csv not found; set MOVIELENS_DIR",
]


@pytest.mark.parametrize(
    ("texts", "wanted"),
    [
        # the traceback, not the boot noise and shutdown lines after it
        (
            [*GUNICORN_BOOT, "[ERROR] Exception in worker process", *TRACEBACK, *GUNICORN_BOOT],
            TRACEBACK,
        ),
        # the last of two tracebacks
        (
            [*TRACEBACK, "ok", TRACEBACK[0], "ValueError: bad port"],
            [TRACEBACK[0], "ValueError: bad port"],
        ),
        # no traceback: the last run of lines naming an error
        (
            ["boot", "KeyError: 'DB_URL'", "FATAL: cannot start", "[INFO] bye"],
            ["KeyError: 'DB_URL'", "FATAL: cannot start"],
        ),
        # gunicorn's own [ERROR] level is not an error message; nothing explains it
        (["[ERROR] Worker (pid:3) exited with code 3", *GUNICORN_BOOT], []),
    ],
)
def test_error_block_finds_the_lines_that_explain_a_failure(
    texts: list[str], wanted: list[str]
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    lines = [LogLine(at, "shop", "shop-00001", "shop-00001-a", "stderr", t) for t in texts]
    assert [line.text for line in error_block(lines)] == wanted


async def test_last_error_is_bounded_and_keeps_the_exception(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    out, err = store.open("shop", "shop-00001", "shop-00001-a")
    frames = [f'  File "/srv/m{i}.py", line {i}, in f{i}' for i in range(40)]
    err.write("\n".join([TRACEBACK[0], *frames, TRACEBACK[-1], *GUNICORN_BOOT, ""]).encode())
    out.close()
    err.close()
    await store.poll()
    quoted = store.last_error("shop-00001")
    assert len(quoted) == 15
    assert quoted[0] == f"[stderr] {TRACEBACK[0]}" and quoted[-1] == f"[stderr] {TRACEBACK[-1]}"
    assert store.last_error("shop-00002") == []
