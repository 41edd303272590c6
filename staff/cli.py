"""`visitroom practice create|list` and `visitroom user add|list|disable|enable`.

They work on the data directory's staff.sqlite3 directly (a running server sees
the change at once). They write no audit rows: the trail has one writer, the
server. A password is read from a prompt, or with
`--password-stdin` from the first line of standard input; never from argv.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from portal.passwords import Passwords
from staff.roles import Role, User
from staff.service import check_email, check_name, check_password
from staff.store import StaffError, StaffStore, new_user_id, open_database

T = TypeVar("T")
DataDir = Callable[[argparse.Namespace], Path]
CLI_ACTOR = "cli"


def add_commands(sub: Any, data_dir: DataDir) -> None:
    practice = sub.add_parser("practice", help="practices whose staff sign in")
    p_cmds = practice.add_subparsers(dest="practice_command", required=True)
    create = p_cmds.add_parser("create", help="add a practice")
    create.add_argument("--id", required=True, help="the practice id (the tokens' `practice`)")
    create.add_argument("--name", required=True, help="its name, as patients and staff see it")
    p_list = p_cmds.add_parser("list", help="list practices")
    user = sub.add_parser("user", help="staff users of a practice")
    u_cmds = user.add_subparsers(dest="user_command", required=True)
    add = u_cmds.add_parser("add", help="add a user (the password is asked for)")
    add.add_argument("--practice", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True, help="display name, e.g. 'Dr. Ana Smith'")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    u_list = u_cmds.add_parser("list", help="list users")
    u_list.add_argument("--practice", help="only this practice's")
    disable = u_cmds.add_parser("disable", help="disable a user (signs them out everywhere)")
    enable = u_cmds.add_parser("enable", help="enable a disabled user")
    reset_totp = u_cmds.add_parser(
        "reset-totp", help="turn off a user's two-step sign-in (a lost phone)"
    )
    for parser in (disable, enable, reset_totp):
        parser.add_argument("--email", required=True)
    commands = {
        create: cmd_practice_create, p_list: cmd_practice_list, add: cmd_user_add,
        u_list: cmd_user_list, disable: cmd_user_disable, enable: cmd_user_enable,
        reset_totp: cmd_user_reset_totp,
    }  # fmt: skip
    for parser, command in commands.items():
        parser.add_argument("--data-dir", help="where state is kept (VISITROOM_DATA_DIR, ./data)")
        parser.set_defaults(func=functools.partial(_run, command, data_dir=data_dir))


def _run(
    command: Callable[[argparse.Namespace, StaffStore], Awaitable[int]],
    args: argparse.Namespace,
    data_dir: DataDir,
) -> int:
    async def run() -> int:
        database = open_database(data_dir(args))
        await database.start()
        try:
            return await command(args, StaffStore(database))
        except StaffError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            await database.close()

    return asyncio.run(run())


async def cmd_practice_create(args: argparse.Namespace, store: StaffStore) -> int:
    if not 1 <= len(args.id) <= 64:
        raise StaffError("the practice id must be 1-64 characters")
    await store.create_practice(args.id, check_name(args.name), time.time())
    print(f"practice {args.id} created")
    return 0


async def cmd_practice_list(args: argparse.Namespace, store: StaffStore) -> int:
    for practice_id, name in await store.practices():
        print(f"{practice_id}\t{name}")
    return 0


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise StaffError("the passwords differ")
    return check_password(first)


async def cmd_user_add(args: argparse.Namespace, store: StaffStore) -> int:
    user = User(
        new_user_id(), args.practice, check_email(args.email), check_name(args.name),
        Role(args.role),
    )  # fmt: skip
    password = read_password(args.password_stdin)
    passwords = Passwords()
    try:
        hashed = await passwords.hash(password)
    finally:
        passwords.close()
    await store.add_user(user, hashed, time.time())
    print(f"user {user.user_id} added to {args.practice} as {args.role}")
    return 0


async def cmd_user_list(args: argparse.Namespace, store: StaffStore) -> int:
    for user in await store.users(args.practice):
        state = "disabled" if user.disabled else "active"
        factor = "totp" if user.totp else "-"
        print(f"{user.user_id}\t{user.practice}\t{user.role.value}\t{state}\t{factor}\t"
              f"{user.email}\t{user.display_name}")  # fmt: skip
    return 0


async def _set_disabled(args: argparse.Namespace, store: StaffStore, disabled: bool) -> int:
    user = await store.user_by_email(args.email)
    if user is None:
        raise StaffError("no user with this email")
    await store.update_user(user.user_id, time.time(), disabled=int(disabled))
    if disabled:
        await store.end_sessions_of(user.user_id)
    print(f"user {user.user_id} {'disabled' if disabled else 'enabled'}")
    return 0


async def cmd_user_disable(args: argparse.Namespace, store: StaffStore) -> int:
    return await _set_disabled(args, store, True)


async def cmd_user_enable(args: argparse.Namespace, store: StaffStore) -> int:
    return await _set_disabled(args, store, False)


async def cmd_user_reset_totp(args: argparse.Namespace, store: StaffStore) -> int:
    user = await store.user_by_email(args.email)
    if user is None:
        raise StaffError("no user with this email")
    await store.update_user(
        user.user_id, time.time(), totp_secret=None, totp_pending=None, totp_last_step=None
    )
    await store.end_sessions_of(user.user_id)
    print(f"user {user.user_id}: two-step sign-in is off; they can set it up again")
    return 0
