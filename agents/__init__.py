"""One package per agent: logic.py (pure decisions). Their batch tasks are generated in
sentinai.pipeline.tasks; an agent with work of its own (the SLA scan) adds a tasks.py."""
