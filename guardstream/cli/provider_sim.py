"""`guardstream provider-sim`: a simulated OpenAI-compatible provider on a local port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from guardstream.cli.output import console
from guardstream.config.loader import load_model
from guardstream.dispatch.simulator import SimulatorConfig, running
from guardstream.errors import GuardstreamError

app = typer.Typer()

# Where config/providers.yaml expects it: ${GUARDSTREAM_PROVIDER_SIM_PORT:-8700}.
DEFAULT_PORT = int(os.environ.get("GUARDSTREAM_PROVIDER_SIM_PORT", "8700"))


@app.command("provider-sim")
def provider_sim_cmd(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0 picks a free one)")] = DEFAULT_PORT,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML file: seed, default behaviour, behaviour per deployment "
            "(guardstream.dispatch.simulator.SimulatorConfig)"
        ),
    ] = None,
) -> None:
    """Serve a simulated chat-completions provider for tests, demos and load tests."""
    sim_config = SimulatorConfig()
    if config is not None:
        sim_config = load_model(
            SimulatorConfig, config, "the simulator config", "fix that field of the file"
        )
    # Ctrl-C is how it is meant to stop: asyncio.run cancels _serve, which closes the server,
    # then re-raises the interrupt, which is no error here.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim_config, host, port))


async def _serve(config: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    # SIGTERM (docker stop, a test harness) stops as cleanly as Ctrl-C does.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with running(config, host, port) as (_, root):
            console.print(
                f"provider simulator on {root}/v1 (deployment <name>: {root}/d/<name>/v1, "
                f"stats: {root}/sim/stats)",
                highlight=False,
                soft_wrap=True,
            )
            await stop.wait()
    except OSError as exc:
        raise GuardstreamError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "choose another --port (0 picks a free one) or stop what uses it",
        ) from exc
