"""64-bit seeds

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.alter_column('seed',
               existing_type=sa.INTEGER(),
               type_=sa.BigInteger(),
               existing_nullable=False)



def downgrade() -> None:
    with op.batch_alter_table('imagerecord', schema=None) as batch_op:
        batch_op.alter_column('seed',
               existing_type=sa.BigInteger(),
               type_=sa.INTEGER(),
               existing_nullable=False)

