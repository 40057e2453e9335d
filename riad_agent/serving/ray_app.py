"""The reasoner service scaled out with Ray Serve: one model per replica (one GPU each in production).

Each replica runs the same :class:`~riad_agent.serving.service.ReasonerService` as the single-process
service, so the HTTP contract (``/v1/reason``, ``/healthz``, ``/readyz``, errors, auth) is identical;
answers carry the replica id in the ``X-Riad-Replica`` header and the ``replica`` field. Ray routes
each request to a replica with a short queue and, with autoscaling on, adds replicas when the
ongoing requests per replica exceed the target.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from riad_agent.errors import BackendUnavailableError, ConfigurationError
from riad_agent.serving.service import ReasonerService, ServiceConfig, model_loader, read_limited

APP_NAME = "riad-reasoner"


@dataclass(frozen=True)
class RayOptions:
    """How the deployment is placed and scaled."""

    replicas: int = 1
    max_replicas: int = 0  # > replicas turns autoscaling on, between ``replicas`` and this
    gpus_per_replica: float = 1.0
    cpus_per_replica: float = 1.0
    target_ongoing_requests: float = 2.0
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int | None = None
    address: str = "auto"  # 'auto' joins a running cluster (falls back to a local one), 'local' starts one
    num_cpus: int | None = None  # for a local cluster only


class ReasonerReplica:
    """One Ray Serve replica: a model worker behind the shared request logic."""

    def __init__(
        self, model: str, config: ServiceConfig, device: str, dtype: str, torch_threads: int | None
    ) -> None:
        from ray import serve

        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        replica = serve.get_replica_context().replica_id.unique_id
        config = ServiceConfig(**{**config.__dict__, "replica": replica})
        self.service = ReasonerService(model_loader(model, device=device, dtype=dtype), config)
        self.service.start()

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/")
        if path.endswith("/healthz"):
            reply = self.service.health()
        elif path.endswith("/readyz"):
            reply = self.service.readiness()
        elif path.endswith("/v1/reason") and request.method == "POST":
            reply = await self.service.reason(
                request.headers.get("authorization"), lambda limit: read_limited(request, limit)
            )
        else:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"no route {request.method} {path}"}},
                status_code=404,
            )
        return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)

    def check_health(self) -> None:
        """Ray's health probe: a replica whose model failed to load is restarted."""
        if self.service.worker.load_error:
            raise RuntimeError(self.service.worker.load_error)


def build_application(model: str, config: ServiceConfig, options: RayOptions) -> Any:
    """The bound Ray Serve application (``serve.run`` it)."""
    from ray import serve

    actor: dict[str, Any] = {"num_cpus": options.cpus_per_replica}
    if options.gpus_per_replica > 0:
        actor["num_gpus"] = options.gpus_per_replica
    scaling: dict[str, Any]
    if options.max_replicas > options.replicas:
        scaling = {
            "autoscaling_config": {
                "min_replicas": options.replicas,
                "initial_replicas": options.replicas,
                "max_replicas": options.max_replicas,
                "target_ongoing_requests": options.target_ongoing_requests,
            }
        }
    else:
        scaling = {"num_replicas": options.replicas}
    deployment: Any = serve.deployment(
        name="reasoner",
        ray_actor_options=actor,
        # a running batch + max_queue waiting inside each replica; beyond that Ray answers 503 (client retries)
        max_ongoing_requests=config.max_queue + config.max_batch,
        max_queued_requests=config.max_queue * max(options.replicas, options.max_replicas),
        health_check_period_s=10,
        **scaling,
    )(ReasonerReplica)
    return deployment.bind(model, config, options.device, options.dtype, options.torch_threads)


def start_ray(model: str, config: ServiceConfig, options: RayOptions) -> str:
    """Connect to (or start) Ray, deploy the reasoner and return its base URL; does not block."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}
        kwargs: dict[str, Any] = {"include_dashboard": False, "runtime_env": {"env_vars": env}}
        try:
            if options.address == "local":
                ray.init(address="local", num_cpus=options.num_cpus, **kwargs)
            else:
                try:
                    ray.init(address=options.address, **kwargs)
                except ConnectionError:
                    ray.init(address="local", num_cpus=options.num_cpus, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BackendUnavailableError(
                f"cannot start or join a Ray cluster at {options.address}: {exc}"
            ) from exc
    if options.device == "auto" and options.gpus_per_replica > 0 and not ray.cluster_resources().get("GPU"):
        options = replace(options, gpus_per_replica=0.0)  # 'auto' on a cluster without GPUs: CPU replicas
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        serve.run(build_application(model, config, options), name=APP_NAME, route_prefix="/")
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot deploy the reasoner on Ray: {exc}") from exc
    return f"http://{config.host}:{config.port}"


def stop_ray() -> None:
    """Remove the deployment, stop Serve and disconnect from Ray."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def run_ray(
    model: str, config: ServiceConfig, options: RayOptions, log: Callable[[str], None] = print
) -> None:
    """Deploy and block until interrupted (``riad serve reasoner --ray``)."""
    import time

    url = start_ray(model, config, options)
    log(f"reasoner on Ray Serve at {url} ({options.replicas} replica(s)); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    finally:
        stop_ray()
