"""Templates and the warm pool now belong to the core (``sandboxes`` 0007).

State only: the tables and their rows stay; courses point at the core's model.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("classroom", "0001_initial"),
        ("sandboxes", "0007_template_poolentry"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="course",
                    name="template",
                    field=models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="courses",
                        to="sandboxes.template",
                    ),
                ),
                migrations.DeleteModel(name="PoolEntry"),
                migrations.DeleteModel(name="Template"),
            ],
        ),
    ]
