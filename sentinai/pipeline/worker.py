"""Worker-side customisation of Celery's consumer."""

from __future__ import annotations

from celery.utils.log import get_logger
from celery.worker.consumer import Consumer as CeleryConsumer

logger = get_logger(__name__)


def lane_share(slots: int, queues: int) -> int:
    """How many messages one queue (a lane) may hold in a worker with `slots` of concurrency.

    RabbitMQ applies the prefetch limit to each consumer, i.e. to each lane separately (global QoS is
    off for quorum queues). A worker consuming several lanes gives each one slot fewer than it has,
    so a lane with a deep backlog never occupies every slot: the next message of any other lane
    starts as soon as it arrives instead of waiting for a noisy tenant's batch to finish. A worker
    on one queue (a tenant's own worker on its dedicated lane) uses every slot."""
    return slots - 1 if queues > 1 and slots > 1 else slots


class Consumer(CeleryConsumer):
    def __init__(self, *args, initial_prefetch_count: int = 2, **kwargs):
        super().__init__(*args, initial_prefetch_count=initial_prefetch_count, **kwargs)
        self.initial_prefetch_count = self._lane_share(initial_prefetch_count)

    def _lane_share(self, slots: int) -> int:
        return lane_share(slots, len(self.app.amqp.queues.consume_from))

    @property
    def max_prefetch_count(self) -> int:
        # Celery resets the prefetch count to this after a reconnection.
        return self._lane_share(super().max_prefetch_count)

    class Blueprint(CeleryConsumer.Blueprint):
        # Retries are scheduled in the database, never with countdown/ETA, so the 28 queues of
        # Celery's native delayed delivery would be unused topology on every broker.
        default_steps = [
            step
            for step in CeleryConsumer.Blueprint.default_steps
            if step != "celery.worker.consumer.delayed_delivery:DelayedDelivery"
        ]

    def on_connection_error_after_connected(self, exc):
        from sentinai.kernel import dependencies

        dependencies.down(
            "broker", exc, consequence="the worker reconnects; unacknowledged batches return to their queue"
        )
        super().on_connection_error_after_connected(exc)

    def on_connection_error_before_connected(self, exc):
        from sentinai.kernel import dependencies

        dependencies.down("broker", exc, consequence="the worker keeps trying to connect")
        super().on_connection_error_before_connected(exc)

    def connect(self):
        conn = super().connect()  # retries until the broker answers (broker_connection_max_retries=None)
        from sentinai.kernel import dependencies

        dependencies.up("broker")
        return conn

    def on_decode_error(self, message, exc):
        """Celery acks a message it cannot decode, which would lose it without a trace. Reject it
        without requeue instead: the queue's dead-letter exchange moves it to the `dead_letter`
        queue, where `consume_dead_letters` records it for operators."""
        logger.error(
            "undecodable message (content_type=%s): %r; dead-lettering it",
            message.content_type,
            exc,
        )
        message.reject(requeue=False)
