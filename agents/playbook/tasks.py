from config.celery import app
from sentinai.pipeline.tasks import AgentTask, run_agent


@app.task(base=AgentTask, bind=True, name="agents.playbook.handle_batch")
def handle_batch(self, body):
    """Apply a batch of events to the playbook agent."""
    return run_agent(self, "playbook", body)
