"""``riad serve reasoner``: host the latent reasoner behind HTTP (uvicorn, or Ray Serve with ``--ray``).

Ctrl-C (SIGINT) or SIGTERM stops it cleanly: no new connections, requests in flight get ``--drain``
seconds to finish, the rest are cancelled (each stops within one latent iteration), the model
thread ends, and the process exits 0.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from riad_agent.errors import ConfigurationError, RiadError

if TYPE_CHECKING:
    from fastapi import FastAPI


def serve_reasoner(
    model: Annotated[str, typer.Option(help="'tiny' (random test model), a hub id or a local model path.")],
    device: Annotated[str, typer.Option(help="'auto', 'cuda' or 'cpu'.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="'auto', 'float32', 'bfloat16', 'float16' or 'int8' (builtin, CPU).")
    ] = "auto",
    host: Annotated[
        str, typer.Option(help="Bind address; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8700,
    max_queue: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="Requests waiting per model before 429. Size it to what the model answers within --timeout. "
            "Measured on CPU, the builtin model: 0.33 s per latent step plus 0.8 s, so a default 10-step "
            "request takes 4 s on an idle core, 7 s on a busy 2-core box, 8-10 requests a minute with "
            "batching; --max-queue 8 --timeout 120 drains in time (docs/deploy.md).",
        ),
    ] = 8,
    max_batch: Annotated[
        int,
        typer.Option(min=1, max=256, help="Waiting requests run together in one batch (1 = one at a time)."),
    ] = 4,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Per-request timeout in seconds (then 504).")
    ] = 120.0,
    drain: Annotated[
        int,
        typer.Option(
            min=0,
            help="On Ctrl-C / SIGTERM: seconds requests in flight may finish before they are cancelled.",
        ),
    ] = 10,
    token: Annotated[
        str | None, typer.Option(envvar="RIAD_REASONER_TOKEN", help="Bearer token clients must send.")
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Serve through Ray Serve replicas.")] = False,
    replicas: Annotated[
        int, typer.Option(min=1, max=1024, help="Ray replicas (initial count with --autoscale).")
    ] = 1,
    autoscale: Annotated[
        int, typer.Option(min=0, help="With --ray: autoscale up to this many replicas (0 = off).")
    ] = 0,
    gpus_per_replica: Annotated[float, typer.Option(min=0, help="With --ray: GPUs per replica.")] = 1.0,
    ray_address: Annotated[
        str, typer.Option(help="With --ray: 'auto' joins a running cluster, 'local' starts one.")
    ] = "auto",
) -> None:
    """Serve POST /v1/reason, GET /healthz and GET /readyz for HttpReasoner clients (RIAD_REASONER_URL)."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ConfigurationError(f"unknown device {device!r}; use auto, cuda or cpu")
        from riad_agent.serving.service import ServiceConfig, check_bind, create_app, model_loader

        check_bind(host, token)
        if (
            not ray
        ):  # fail now rather than report a failed load on /readyz; Ray replicas resolve on their node
            from riad_agent.models.device import resolve_device

            resolve_device(device)
        config = ServiceConfig(
            host=host, port=port, token=token, max_queue=max_queue, max_batch=max_batch, timeout_s=timeout
        )
        loader = model_loader(model, device=device, dtype=dtype)
        if ray:
            from riad_agent.serving.ray_app import RayOptions, run_ray

            run_ray(
                model,
                config,
                RayOptions(
                    replicas=replicas,
                    max_replicas=autoscale,
                    gpus_per_replica=0.0 if device == "cpu" else gpus_per_replica,
                    device=device,
                    dtype=dtype,
                    address=ray_address,
                ),
                log=lambda text: console.print(text, markup=False, highlight=False),
            )
            return
        app = create_app(loader, config)
        console.print(
            f"reasoner service for {model!r} on http://{host}:{port} (GET /readyz turns 200 once loaded)",
            markup=False,
            highlight=False,
        )
        serve_until_stopped(app, host, port, drain)
    except RiadError as exc:
        print(exc.one_line(), file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def serve_until_stopped(app: FastAPI, host: str, port: int, drain_s: int) -> None:
    """Run ``app`` under uvicorn until SIGINT / SIGTERM, then drain, cancel and close the model worker.

    uvicorn re-raises the signal once it has shut down (so a plain ``uvicorn.run`` ends in
    KeyboardInterrupt or death by SIGTERM); this server does not, and closes the service itself even
    when a second Ctrl-C skipped the app's shutdown, so the model thread never outlives the interpreter.
    """
    import asyncio
    import contextlib
    import socket
    from collections.abc import Iterator

    import uvicorn

    service = app.state.service

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # meanwhile uvicorn waits for the connections; a second Ctrl-C (force_exit) cuts the drain short
            draining = asyncio.ensure_future(service.drain(drain_s, lambda: self.force_exit))
            try:
                await super().shutdown(sockets)
            finally:
                await draining
            if (
                self.force_exit
            ):  # uvicorn skips the app's shutdown then; run it, the model thread must end first
                await self.lifespan.shutdown()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()  # handled: shut down, exit 0

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=drain_s + 60,  # a backstop: drain() cancels the jobs after drain_s
    )
    try:
        Server(config).run()
    finally:
        service.close()
