from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sandboxes", "0005_sandbox_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="sandbox",
            name="egress_detail",
            field=models.TextField(blank=True, default=""),
        ),
    ]
