import pytest
from django.test import Client

from config.celery import app as celery_app


@pytest.mark.django_db
def test_health_names_engine_and_transport_and_answers_200():
    response = Client().get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {**body["database"], "engine": "postgresql", "ok": True}
    assert body["broker"]["transport"] == "amqp" and body["broker"]["ok"] is True
    assert body["cache"]["backend"] == "RedisCache" and body["cache"]["ok"] is True


@pytest.mark.django_db
def test_health_answers_503_when_the_broker_does_not(monkeypatch):
    dead = "amqp://guest:guest@127.0.0.1:1//"
    monkeypatch.setattr(celery_app.conf, "broker_url", dead)
    monkeypatch.setattr(celery_app.conf, "broker_write_url", dead)
    response = Client().get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["broker"]["ok"] is False and body["database"]["ok"] is True
