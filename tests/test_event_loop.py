"""cli.event_loop: the loop every process runs on."""

from __future__ import annotations

import asyncio
import sys

import pytest

from cli import event_loop


async def _loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build")
def test_runs_on_uvloop() -> None:
    import uvloop  # a dependency wherever it builds

    assert event_loop.run(_loop_type()) is uvloop.Loop


def test_returns_the_result_and_closes_the_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        loops.append(asyncio.get_running_loop())
        return 42

    assert event_loop.run(main()) == 42
    assert loops[0].is_closed()
