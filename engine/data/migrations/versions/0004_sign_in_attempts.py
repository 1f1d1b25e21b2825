"""sign-in attempts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signinattempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signinattempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signinattempt_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_signinattempt_subject'), ['subject'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signinattempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signinattempt_subject'))
        batch_op.drop_index(batch_op.f('ix_signinattempt_at'))

    op.drop_table('signinattempt')
