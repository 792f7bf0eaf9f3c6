from django.apps import AppConfig


class IdeConfig(AppConfig):
    name = "ide"
