"""One package per agent: logic.py (pure decisions) and tasks.py (its Celery task family)."""
