"""The gateway's admin entry point, on its database directly (DATABASE__URL): the first API key, and
keys when no gateway answers. With a gateway up, admins use `agentloop api-key` (the admin routes).

    python -m gateway.admin api-key create --role user|operator|admin [--name OWNER]   # prints the key once
    python -m gateway.admin api-key list
    python -m gateway.admin api-key revoke KEY_OR_ID
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from servicekit.db import make_engine
from servicekit.settings import DatabaseSettings

from .service.api_keys import create_api_key, list_api_keys, revoke_api_key

T = TypeVar("T")


def _with_engine(work: Callable[[Any], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = make_engine(os.environ.get("DATABASE__URL", DatabaseSettings().url), pool_size=1)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.admin", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)
    keys = groups.add_parser("api-key", help="manage API keys").add_subparsers(dest="command", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown once: only its hash is stored)")
    create.add_argument("--role", required=True, choices=["user", "operator", "admin"])
    create.add_argument("--name", help="owner of the key: the subject of its tokens")
    keys.add_parser("list", help="ids, owners, roles and times (never secrets)")
    revoke = keys.add_parser("revoke", help="revoke a key; tokens already issued stay valid until they expire")
    revoke.add_argument("key", help="the key id or the whole key")
    args = parser.parse_args(argv)
    actor = f"admin-cli:{getpass.getuser()}"
    if args.command == "create":
        owner = args.name or f"{getpass.getuser()}-{args.role}"
        key = _with_engine(lambda engine: create_api_key(engine, args.role, owner, created_by=actor))
        print(f"API key for {owner} (role {args.role}); shown once, store it now:", file=sys.stderr)
        print(key)
        return 0
    if args.command == "list":
        rows = _with_engine(list_api_keys)
        print("key id            name  role  created  last used  revoked")
        for row in rows:
            print("  ".join([row["key_id"], row["name"], str(row["role"]),
                             *(_when(row.get(k)) or "-" for k in ("created_at", "last_used_at", "revoked_at"))]))
        return 0
    if not _with_engine(lambda engine: revoke_api_key(engine, args.key, revoked_by=actor)):
        print("no active key matched", file=sys.stderr)
        return 1
    print("revoked", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
