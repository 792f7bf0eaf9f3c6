"""Preview share levels: ``private`` (a bool) becomes ``visibility``; each exposed
port gets a short share code, an optional expiry and the time sharing was revoked.

Ports exposed before keep what they had: ``private`` ones stay private, the others
public (anyone with the link), as they were.
"""

from django.db import migrations, models

import sandboxes.models


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    ExposedPort = apps.get_model("sandboxes", "ExposedPort")
    for row in ExposedPort.objects.all():
        row.visibility = "private" if row.private else "public"
        row.share_code = sandboxes.models.new_share_code()
        row.save(update_fields=["visibility", "share_code"])


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    ExposedPort = apps.get_model("sandboxes", "ExposedPort")
    ExposedPort.objects.exclude(visibility="public").update(private=True)


class Migration(migrations.Migration):
    dependencies = [
        ("sandboxes", "0007_template_poolentry"),
    ]

    operations = [
        migrations.AddField(
            model_name="exposedport",
            name="visibility",
            field=models.CharField(
                choices=[
                    ("private", "Private"),
                    ("course", "Course"),
                    ("authenticated", "Authenticated"),
                    ("public", "Public"),
                ],
                default="private",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="exposedport",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="exposedport",
            name="revoked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="exposedport",
            name="share_code",
            field=models.CharField(max_length=14, null=True),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            model_name="exposedport",
            name="share_code",
            field=models.CharField(
                default=sandboxes.models.new_share_code, max_length=14, unique=True
            ),
        ),
        migrations.RemoveField(
            model_name="exposedport",
            name="private",
        ),
    ]
