"""Every code example in the README and the docs runs (tests/support/docs_runner.py says how):
each document in a fresh copy of the repository, its blocks in order, against the real
servers its examples start. Blocks that cannot run here say why in a `doctest: skip`."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_runner import DATA, NOT_CODE, REPO, RUN, Session, blocks, scratch_copy

DOCS = sorted(
    {REPO / "README.md", *REPO.glob("docs/**/*.md"), *REPO.glob("examples/*/README.md")}
    | {REPO / "runtime-images" / "README.md"}
)
WITH_CODE = [doc for doc in DOCS if any(b.lang not in NOT_CODE for b in blocks(doc))]


def test_every_block_is_run_parsed_or_skipped_with_a_reason() -> None:
    problems = []
    for doc in DOCS:
        for block in blocks(doc):
            skip = block.directive("skip")
            if skip is not None and len(skip.split()) < 3:
                problems.append(f"{block.where}: `doctest: skip` needs a reason")
            if block.lang not in RUN | DATA | NOT_CODE:
                problems.append(
                    f"{block.where}: no runner for ```{block.lang}: use bash, python, json, "
                    "yaml, toml or text, or mark it `<!-- doctest: skip REASON -->`"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("doc", WITH_CODE, ids=[str(d.relative_to(REPO)) for d in WITH_CODE])
def test_code_examples_run(doc: Path, tmp_path: Path) -> None:
    root = scratch_copy(tmp_path / "repo")
    session = Session(root, tmp_path / "home")
    outcome: list[str] = []
    try:
        for block in blocks(root / doc.relative_to(REPO), root):
            if block.lang in NOT_CODE:
                continue
            outcome.append(f"{block.line}: {block.lang} {session.run(block)}")
    finally:
        session.close()
        print("\n".join(outcome))
        print("\n".join(session.transcript)[-6000:])
