from django.apps import AppConfig


class PlaybooksAppConfig(AppConfig):
    name = "playbooks_app"
    verbose_name = "Playbooks"

    def ready(self) -> None:
        from playbooks_app.packs import bind_playbooks
        from sentinai.packs import domain

        domain.register_binder("playbooks", bind_playbooks)
