"""A deploy file: `sos deploy docs/sos/examples/sfix-service.py`."""

from sos import Artifact, Autoscaling, EnvVar, GunicornConfig, Resources, Revision, Service

service = Service(name="sfix-service", team="recs", description="similar items")
revision = Revision(
    artifact=Artifact(name="sfix_service", version="v0.0.16"),
    env_vars=[EnvVar(id="LOG_LEVEL", value="info")],
    resources=Resources(memory="2G", cpu="1000m"),
    gunicorn_config=GunicornConfig(worker_count=2, thread_count=4),
    autoscaling=Autoscaling(min_scale=0, max_scale=5, target_concurrency=10),
)
