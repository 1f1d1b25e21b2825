"""favourites and boards: imagerecord.favorite, imagerecord.board

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.add_column(sa.Column('favorite', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('board', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_imagerecord_board'), ['board'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imagerecord_board'))
        batch_op.drop_column('board')
        batch_op.drop_column('favorite')
