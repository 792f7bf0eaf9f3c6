from django.apps import AppConfig


class SandboxesConfig(AppConfig):
    name = "sandboxes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every process that can change a sandbox row tells the others' lookup caches.
        from sandboxes import rows  # noqa: F401
