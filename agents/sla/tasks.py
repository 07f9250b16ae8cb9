from config.celery import app
from sentinai.tasks import AgentTask


@app.task(base=AgentTask, name="agents.sla.scan")
def scan() -> dict:
    """Announce SLAImminent / SLAExpired for open exceptions that reached them (all tenants)."""
    from agents.sla.monitor import scan_all_tenants

    return scan_all_tenants()
