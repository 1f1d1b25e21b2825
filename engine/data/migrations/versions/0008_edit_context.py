"""edit context: imagerecord.strength, imagerecord.source_image_id

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.add_column(sa.Column('strength', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('source_image_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.drop_column('source_image_id')
        batch_op.drop_column('strength')
