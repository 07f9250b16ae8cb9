"""Kafka client configuration, in one place: the bootstrap servers, the managed-service security
settings by name, then KAFKA_CONFIG (any librdkafka property) over them."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def client_config(**extra: Any) -> dict[str, Any]:
    if not settings.KAFKA_BOOTSTRAP_SERVERS:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set: no Kafka cluster is configured")
    config: dict[str, Any] = {"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS}
    named = {
        "security.protocol": settings.KAFKA_SECURITY_PROTOCOL,
        "sasl.mechanism": settings.KAFKA_SASL_MECHANISM,
        "sasl.username": settings.KAFKA_SASL_USERNAME,
        "sasl.password": settings.KAFKA_SASL_PASSWORD,
        "ssl.ca.location": settings.KAFKA_SSL_CA_LOCATION,
    }
    config.update({k: v for k, v in named.items() if v})
    config.update(settings.KAFKA_CONFIG)
    config.update(extra)
    return config


def stream_enabled() -> bool:
    return bool(settings.SENTINAI.get("KAFKA_STREAM")) and bool(settings.KAFKA_BOOTSTRAP_SERVERS)


def topic_for(tenant_id: str) -> str:
    return settings.SENTINAI["KAFKA_TOPIC_TEMPLATE"].format(tenant=tenant_id)
