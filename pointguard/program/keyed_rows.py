"""Reading rows the program wrote: dataclasses from rows, and rows found by idempotency key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from pointguard.db import PgConnection

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RowT = TypeVar("RowT", bound="DataclassInstance")


def from_row(cls: type[RowT], row: Any) -> RowT:
    """A dataclass from the row's columns of the same names."""
    return cls(**{f.name: row[f.name] for f in fields(cls)})


async def row_by_key(
    pg: PgConnection,
    sql: str,
    merchant_id: str,
    key: str,
    member_id: str,
    owner_column: str,
    owner_id: str,
    reused: Callable[[str, str], Exception],
) -> Any:
    """The row a key made before, if any (`sql` takes the merchant and the key). A key belongs
    to one member and one `owner_column` value: used for another, it raises
    `reused(owner_id, key)`."""
    row = await pg.fetchrow(sql, merchant_id, key)
    if row is not None and (row["member_id"], row[owner_column]) != (member_id, owner_id):
        raise reused(owner_id, key)
    return row
