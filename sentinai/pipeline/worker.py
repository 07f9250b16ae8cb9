"""Worker-side customisation of Celery's consumer."""

from celery.utils.log import get_logger
from celery.worker.consumer import Consumer as CeleryConsumer

logger = get_logger(__name__)


class Consumer(CeleryConsumer):
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
