"""A deploy file: `sos deploy docs/sos/examples/sfix-service.py`.

The artifact comes from `sos build docs/sos/examples/sfix-service --push`.
"""

from sos import (
    Artifact,
    Autoscaling,
    EnvVar,
    GunicornConfig,
    HealthCheck,
    Resources,
    Revision,
    Service,
)

service = Service(name="sfix-service", team="recs", description="similar items")
revision = Revision(
    artifact=Artifact(name="sfix_service", version="0.0.16"),
    env_vars=[EnvVar(id="LOG_LEVEL", value="info")],
    resources=Resources(memory="512Mi", cpu="500m"),
    health_check=HealthCheck(liveness_probe="/healthz", readiness_probe="/healthz"),
    gunicorn_config=GunicornConfig(worker_count=2, thread_count=4),
    autoscaling=Autoscaling(min_scale=1, max_scale=3, target_concurrency=10),
)
