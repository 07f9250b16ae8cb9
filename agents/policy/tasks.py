from config.celery import app
from sentinai.pipeline.tasks import AgentTask, run_agent


@app.task(base=AgentTask, bind=True, name="agents.policy.handle_batch")
def handle_batch(self, body):
    """Apply a batch of events to the policy agent."""
    return run_agent(self, "policy", body)
