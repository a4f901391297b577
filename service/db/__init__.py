"""Database access: the embedded cluster, connection URLs and engines, schema migrations."""

from service.db.database import Database, DbStatus, Role
from service.db.migrate import check_schema, default_sql_dir

__all__ = ["Database", "DbStatus", "Role", "check_schema", "default_sql_dir"]
