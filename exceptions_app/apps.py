from django.apps import AppConfig


class ExceptionsAppConfig(AppConfig):
    name = "exceptions_app"
    verbose_name = "Exceptions"

    def ready(self) -> None:
        # The core depends on no app: this app hands it the exception row the event store projects
        # onto and the open-exception counts admission control reconciles with.
        from exceptions_app.models import ExceptionRecord
        from exceptions_app.selectors import open_exception_counts_all_tenants
        from sentinai.eventstore import store
        from sentinai.tenancy import admission

        store.register_projection(ExceptionRecord)
        admission.register_open_counts(open_exception_counts_all_tenants)
