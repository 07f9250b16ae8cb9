from config.celery import app
from sentinai.pipeline.tasks import PeriodicTask


@app.task(base=PeriodicTask, name="agents.sla.scan")
def scan() -> dict:
    """Announce SLAImminent / SLAExpired for open exceptions that reached them, and fire the timers of
    playbook `wait` steps (all tenants)."""
    from agents.sla.monitor import scan_all_tenants, timers_all_tenants

    return {**scan_all_tenants(), "timers": timers_all_tenants()}
