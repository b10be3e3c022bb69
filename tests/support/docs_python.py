"""The Python interpreter of one document's examples (started by docs_runner): it runs each
block it is sent in one namespace, like a notebook, with top-level ``await``, and answers
with a marker line saying whether the block raised."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import sys
import traceback

MARK = "\0doctest "


def main() -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for line in sys.stdin:
        message = json.loads(line)
        os.environ.update(message["env"])
        os.chdir(message["cwd"])
        if message["cwd"] not in sys.path:
            sys.path.insert(0, message["cwd"])
        try:
            code = compile(
                message["code"], message["name"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
            )
            result = eval(code, namespace)  # the documents' own examples
            if inspect.iscoroutine(result):
                loop.run_until_complete(result)
            answer = {"ok": True}
        except BaseException:  # reported to the runner: the test fails
            answer = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.flush()
        sys.stderr.flush()
        print(MARK + json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
