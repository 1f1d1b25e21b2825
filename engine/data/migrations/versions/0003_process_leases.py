"""process leases on jobs and pending charges

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('process_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_process_id'), ['process_id'], unique=False)

    with op.batch_alter_table('pendingcharge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('process_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_pendingcharge_lease_expires_at'), ['lease_expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_pendingcharge_process_id'), ['process_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pendingcharge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pendingcharge_process_id'))
        batch_op.drop_index(batch_op.f('ix_pendingcharge_lease_expires_at'))
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('process_id')

    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_process_id'))
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('process_id')

