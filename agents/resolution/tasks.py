from config.celery import app
from sentinai.pipeline.tasks import AgentTask, run_agent


@app.task(base=AgentTask, bind=True, name="agents.resolution.handle_batch")
def handle_batch(self, body):
    """Apply a batch of events to the resolution agent."""
    return run_agent(self, "resolution", body)
