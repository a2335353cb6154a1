"""Alembic migrations, run from code on every start (`upgrade_to_head`).

The revision files in `versions/` are the schema's history: a new column
or table is a new revision, so an existing database is upgraded in place and
keeps its data. Generate one after changing models.py with:

    alembic -c consultant/migrations/alembic.ini revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")
