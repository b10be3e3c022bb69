"""Log capture on real files: tails, rotation, platform lines, followers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sos.runtime.local.logs import LogStore


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
