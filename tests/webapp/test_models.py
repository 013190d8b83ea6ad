"""The ORM's column types: timestamps come back as aware UTC datetimes on every backend."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, create_engine, insert, select

from webapp.extensions import UtcDateTime


def test_timestamps_come_back_aware_utc_from_sqlite_whatever_zone_went_in():
    table = Table("moments", MetaData(), Column("id", Integer, primary_key=True), Column("at", UtcDateTime()))
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    tokyo = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": 1, "at": tokyo}, {"id": 2, "at": datetime(2026, 12, 1, 0, 30)},
                                           {"id": 3, "at": None}])
        rows = dict(connection.execute(select(table.c.id, table.c.at)).all())
        # Stored as UTC, so SQLite's text comparison orders moments correctly.
        earlier = connection.scalar(select(table.c.id).where(table.c.at < datetime(2026, 12, 1, 0, 45,
                                                                                    tzinfo=timezone.utc)))
    assert rows[1] == datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc) and rows[1].tzinfo == timezone.utc
    assert rows[2] == datetime(2026, 12, 1, 0, 30, tzinfo=timezone.utc)  # naive values are taken as UTC
    assert rows[3] is None
    assert earlier == 1


def test_the_orm_maps_every_timestamp_column_to_the_utc_type():
    from webapp import models  # noqa: F401  (registers the tables)
    from webapp.extensions import db

    columns = [column for table in db.metadata.tables.values() for column in table.columns
               if isinstance(column.type, (DateTime, UtcDateTime))]
    assert len(columns) > 10 and all(isinstance(column.type, UtcDateTime) for column in columns)
