"""GET /metrics, for operators only: the scrape needs an API key with the `operate` scope
(Prometheus: `authorization: {credentials_file: ...}`). Tenant labels are off unless allow-listed
(sentinai.kernel.metrics.tenant_label)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema

from sentinai.api.views import ApiView
from sentinai.kernel.metrics import metrics_view
from sentinai.models import Scope


class MetricsView(ApiView):
    read_scope = Scope.OPERATE

    @extend_schema(exclude=True)
    def get(self, request):
        return metrics_view(request)
