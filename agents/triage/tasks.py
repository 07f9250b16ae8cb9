from config.celery import app
from sentinai.pipeline.tasks import AgentTask, run_agent


@app.task(base=AgentTask, bind=True, name="agents.triage.handle_batch")
def handle_batch(self, body):
    """Apply a batch of events to the triage agent."""
    return run_agent(self, "triage", body)
