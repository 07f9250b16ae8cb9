from django.contrib import admin
from django.urls import path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from exceptions_app import api as exceptions_api
from playbooks_app import api as playbooks_api
from sentinai.api import deadletters as dead_letters_api
from sentinai.api.metrics import MetricsView
from sentinai.api.problems import api_not_found, api_server_error, database_outage
from sentinai.ops.health import health
from tools_app import api as tools_api


class TenantIdConverter:
    regex = "[a-z0-9][a-z0-9-]{1,62}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(TenantIdConverter, "tenant")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health", health, name="health"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="sentinai/redoc.html"), name="redoc"
    ),
    # exceptions
    path("api/exceptions/<tenant:tenant_id>", exceptions_api.ExceptionCollectionView.as_view(), name="exceptions"),
    path(
        "api/exceptions/<tenant:tenant_id>/batch", exceptions_api.ExceptionBatchView.as_view(), name="exceptions-batch"
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/manual",
        exceptions_api.ManualExceptionView.as_view(),
        name="exceptions-manual",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>",
        exceptions_api.ExceptionDetailView.as_view(),
        name="exception-detail",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>/trace",
        exceptions_api.ExceptionTraceView.as_view(),
        name="exception-trace",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>/playbook",
        playbooks_api.ExceptionPlaybookView.as_view(),
        name="exception-playbook",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>/playbook/recalculate",
        exceptions_api.RecalculatePlaybookView.as_view(),
        name="exception-playbook-recalculate",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>/approve",
        exceptions_api.ApproveView.as_view(),
        name="exception-approve",
    ),
    path(
        "api/exceptions/<tenant:tenant_id>/<uuid:exception_id>/feedback",
        exceptions_api.FeedbackView.as_view(),
        name="exception-feedback",
    ),
    # playbooks, tools, dead letters
    path("api/playbooks/<uuid:playbook_id>", playbooks_api.PlaybookDetailView.as_view(), name="playbook-detail"),
    path("api/tools/execute", tools_api.ToolExecuteView.as_view(), name="tools-execute"),
    path("api/tools/executions", tools_api.ToolExecutionListView.as_view(), name="tool-executions"),
    path(
        "api/tools/executions/<uuid:execution_id>",
        tools_api.ToolExecutionDetailView.as_view(),
        name="tool-execution-detail",
    ),
    path("api/dead-letters", dead_letters_api.DeadLetterListView.as_view(), name="dead-letters"),
    path(
        "api/dead-letters/<int:dead_letter_id>/replay",
        dead_letters_api.DeadLetterReplayView.as_view(),
        name="dead-letter-replay",
    ),
]

handler404 = "config.urls.not_found"
handler500 = "config.urls.server_error"


def not_found(request, exception=None):
    """Problem documents under /api/ (and /metrics); Django's page elsewhere (admin)."""
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    """Problem documents under /api/ and /metrics; a database outage is a 503 + Retry-After anywhere."""
    if request.path.startswith(("/api/", "/metrics")) or database_outage():
        return api_server_error(request)
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)
