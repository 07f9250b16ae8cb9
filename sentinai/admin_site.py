"""The admin site of SentinAI: titled for it, with the operations overview (sentinai/ops/overview.py)
linked from its index. Installed through SentinaiAdminConfig (sentinai/apps.py) in place of
django.contrib.admin, so every app's `admin.register` lands here."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path


class SentinaiAdminSite(admin.AdminSite):
    site_header = "SentinAI administration"
    site_title = "SentinAI admin"
    index_title = "Operations"
    index_template = "admin/sentinai/index.html"

    def get_urls(self):
        return [path("overview/", self.admin_view(self.overview_view), name="overview"), *super().get_urls()]

    def overview_view(self, request):
        from sentinai.ops.overview import overview_all_tenants

        context = {**self.each_context(request), "title": "Operations overview", "overview": overview_all_tenants()}
        return TemplateResponse(request, "admin/sentinai/overview.html", context)
