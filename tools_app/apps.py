from django.apps import AppConfig


class ToolsAppConfig(AppConfig):
    name = "tools_app"
    verbose_name = "Tools"

    def ready(self) -> None:
        from sentinai.ops import stuck
        from sentinai.packs import domain
        from tools_app.packs import bind_tools
        from tools_app.stuck import RUNNING_EXECUTIONS

        domain.register_binder("tools", bind_tools)
        stuck.register(RUNNING_EXECUTIONS)
