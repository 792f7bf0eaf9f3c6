"""Template images: a template's Dockerfile and the image its latest build made,
and the builds themselves (status, bounded log, failing step)."""

import django.db.models.deletion
from django.db import migrations, models

import sandboxes.models


class Migration(migrations.Migration):
    dependencies = [
        ("sandboxes", "0009_snapshots"),
    ]

    operations = [
        migrations.AddField(
            model_name="template",
            name="built_image",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="template",
            name="dockerfile",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.CreateModel(
            name="TemplateBuild",
            fields=[
                (
                    "id",
                    models.CharField(
                        default=sandboxes.models.new_sandbox_id,
                        editable=False,
                        max_length=12,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("image", models.CharField(blank=True, default="", max_length=200)),
                ("reused", models.BooleanField(default=False)),
                ("step", models.PositiveIntegerField(default=0)),
                ("steps", models.PositiveIntegerField(default=0)),
                ("step_text", models.TextField(blank=True, default="")),
                ("log", models.TextField(blank=True, default="")),
                ("log_dropped", models.BigIntegerField(default=0)),
                ("error", models.TextField(blank=True, default="")),
                ("failed_step", models.TextField(blank=True, default="")),
                ("last_lines", models.JSONField(blank=True, default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "template",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="builds",
                        to="sandboxes.template",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
            },
        ),
    ]
