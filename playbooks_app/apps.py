from django.apps import AppConfig


class PlaybooksAppConfig(AppConfig):
    name = "playbooks_app"
    verbose_name = "Playbooks"
