"""Templates and the warm pool moved from the classroom app into the core.

State only: the tables the classroom app made (``classroom_template``,
``classroom_poolentry``) are kept with their rows; the models now name them in
``Meta.db_table``. The classroom's 0002 then forgets its copies.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import sandboxes.models


class Migration(migrations.Migration):
    dependencies = [
        ("sandboxes", "0006_sandbox_egress_detail"),
        ("classroom", "0001_initial"),  # made the tables this names
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Template",
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
                        ("name", models.CharField(max_length=39)),
                        ("description", models.TextField(blank=True, default="")),
                        ("image", models.CharField(blank=True, default="", max_length=200)),
                        ("repo_url", models.CharField(blank=True, default="", max_length=500)),
                        ("repo_branch", models.CharField(blank=True, default="", max_length=200)),
                        ("setup_command", models.TextField(blank=True, default="")),
                        ("env", models.JSONField(blank=True, default=dict)),
                        ("limits", models.JSONField(blank=True, default=dict)),
                        ("open_files", models.JSONField(blank=True, default=list)),
                        ("preview_port", models.PositiveIntegerField(blank=True, null=True)),
                        (
                            "warm_pool",
                            models.PositiveIntegerField(default=sandboxes.models.default_warm_pool),
                        ),
                        ("starter_head", models.CharField(blank=True, default="", max_length=40)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "owner",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="sandbox_templates",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "classroom_template",
                        "ordering": ["name"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("owner", "name"), name="unique_template_name_per_owner"
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="PoolEntry",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("starter_head", models.CharField(blank=True, default="", max_length=40)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "sandbox",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="pool_entry",
                                to="sandboxes.sandbox",
                            ),
                        ),
                        (
                            "template",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="pool",
                                to="sandboxes.template",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "classroom_poolentry",
                        "ordering": ["created_at"],
                    },
                ),
            ],
        ),
    ]
