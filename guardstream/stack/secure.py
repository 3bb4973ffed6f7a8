"""The secured local stack (`stack up --secure`): SCRAM users, their credentials, ACLs.

The broker authenticates every client with SASL/SCRAM-SHA-512 and authorizes it with
KRaft's StandardAuthorizer, denying whatever no ACL allows. Three kinds of user:

- `guardstream-operator`: a super user (topics, tenants, lag, ACLs); the broker also talks to
  itself as this user;
- `guardstream-worker`: reads and writes guardstream's topics and Faust's own, nothing else;
- one user per client service (`GUARDSTREAM_SECURE_CLIENTS`): writes `requests` and `usage`,
  reads `admitted` and `rejected`, commits offsets in groups named after itself.

Passwords are random, made once, and kept in one 0600 env file per user under
`data_dir/secure/`, which `set -a; . FILE; set +a` turns into the client settings every
guardstream command reads. The broker gets salted SCRAM hashes at format time, so no
password is ever on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from guardstream.config.settings import Settings
from guardstream.errors import GuardstreamError
from guardstream.streams.topics import Topic

if TYPE_CHECKING:
    from confluent_kafka.admin._acl import AclBinding

MECHANISM = "SCRAM-SHA-512"
OPERATOR = "guardstream-operator"
WORKER = "guardstream-worker"
# The broker listener clients and the broker itself use; the controller's stays PLAINTEXT.
LISTENER = "SASL_PLAINTEXT"
# Kafka accepts 4096..16384 for SCRAM-SHA-512; the low end keeps every login cheap on the
# 2-core machines this stack runs on, and the passwords are random, not guessable words.
_ITERATIONS = 4096
# A user name becomes a file name, a SCRAM argument and an ACL principal: keep it plain.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Role(StrEnum):
    """What a user of the secured stack is for; it decides the user's ACLs."""

    OPERATOR = "operator"
    WORKER = "worker"
    CLIENT = "client"


@dataclass(frozen=True)
class User:
    """A SCRAM user of the secured stack."""

    name: str
    role: Role
    password: str = field(repr=False)

    @property
    def principal(self) -> str:
        """The principal ACLs name this user by."""
        return f"User:{self.name}"


# --- where things live ---------------------------------------------------------------------


def credentials_dir(settings: Settings) -> Path:
    """The 0700 directory holding one credentials env file per user."""
    return settings.data_dir / "secure"


def credentials_file(settings: Settings, name: str) -> Path:
    """The env file with a user's client settings (`set -a; . FILE; set +a`)."""
    return credentials_dir(settings) / f"{name}.env"


def _mode_file(settings: Settings) -> Path:
    return settings.data_dir / "kafka" / "security"


def _formatted(settings: Settings) -> bool:
    return (settings.data_dir / "kafka" / "data" / "meta.properties").exists()


# --- plain or secured: one data dir holds one kind of stack ---------------------------------


def stored_mode(settings: Settings) -> str | None:
    """`secure` or `plain` for a formatted data dir (what it was formatted as), else None."""
    marker = _mode_file(settings)
    if marker.exists():
        return marker.read_text().strip()
    # Data dirs formatted before `--secure` existed carry no marker: they are plain.
    return "plain" if _formatted(settings) else None


def record_mode(settings: Settings, secure: bool) -> None:
    """Remember what the data dir was formatted as (called right after formatting)."""
    _mode_file(settings).write_text("secure\n" if secure else "plain\n")


def check_mode(settings: Settings, secure: bool) -> None:
    """Refuse to start a data dir formatted the other way, naming the fix.

    The SCRAM users live in the broker's metadata log, and a plain broker on a secured log
    (or the reverse) would either drop every ACL or lock every client out.
    """
    stored = stored_mode(settings)
    wanted = "secure" if secure else "plain"
    if stored is None or stored == wanted:
        if secure and stored == "secure" and not credentials_file(settings, OPERATOR).exists():
            raise GuardstreamError(
                f"the secured stack in {settings.data_dir} has lost its credentials "
                f"({credentials_file(settings, OPERATOR)} is missing)",
                f"`guardstream stack down`, delete {settings.data_dir / 'kafka'} and run "
                "`guardstream stack up --secure` again",
            )
        return
    asked = "guardstream stack up --secure" if secure else "guardstream stack up"
    other = "guardstream stack up" if secure else "guardstream stack up --secure"
    raise GuardstreamError(
        f"`{asked}`: {settings.data_dir} holds a broker formatted "
        f"{'with SASL/SCRAM and ACLs' if stored == 'secure' else 'without security'}",
        f"run `{other}`, or `guardstream stack down` and set GUARDSTREAM_DATA_DIR to another "
        f"directory (or delete {settings.data_dir / 'kafka'} to start over)",
    )


# --- users and their credentials files ------------------------------------------------------


def wanted_users(settings: Settings) -> list[tuple[str, Role]]:
    """Every user the secured stack has: the operator, the worker, then each client service."""
    clients = settings.secure_client_users
    for name in clients:
        if not _USER_NAME.fullmatch(name) or name in (OPERATOR, WORKER):
            raise GuardstreamError(
                f"GUARDSTREAM_SECURE_CLIENTS names '{name}', which cannot be a client user",
                "use letters, digits, '.', '_' and '-' (at most 64), and neither "
                f"{OPERATOR} nor {WORKER}",
            )
    return [(OPERATOR, Role.OPERATOR), (WORKER, Role.WORKER)] + [
        (c, Role.CLIENT) for c in dict.fromkeys(clients)
    ]


def env_text(settings: Settings, user: User) -> str:
    """The credentials file of a user: the `GUARDSTREAM_KAFKA_*` client settings."""
    path = credentials_file(settings, user.name)
    return (
        f"# {user.name} ({user.role}) on the secured local stack in {settings.data_dir}.\n"
        f"# Use: set -a; . {path}; set +a\n"
        f"GUARDSTREAM_KAFKA_SECURITY_PROTOCOL={LISTENER}\n"
        f"GUARDSTREAM_KAFKA_SASL_MECHANISM={MECHANISM}\n"
        f"GUARDSTREAM_KAFKA_SASL_USERNAME={user.name}\n"
        f"GUARDSTREAM_KAFKA_SASL_PASSWORD={user.password}\n"
    )


def read_env_file(path: Path) -> dict[str, str]:
    """The `KEY=VALUE` lines of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: a chmod after writing would leave a window.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


def load_or_create_users(settings: Settings) -> tuple[list[User], list[User]]:
    """Every user with its password, and which of them were created by this call.

    A user keeps its password across `stack up`s (its file is read back); a missing file
    gets a fresh random password.
    """
    folder = credentials_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    users: list[User] = []
    created: list[User] = []
    for name, role in wanted_users(settings):
        path = credentials_file(settings, name)
        if path.exists():
            password = read_env_file(path).get("GUARDSTREAM_KAFKA_SASL_PASSWORD", "")
            if not password:
                raise GuardstreamError(
                    f"{path} holds no GUARDSTREAM_KAFKA_SASL_PASSWORD",
                    "restore the file, or delete it and the broker data and `stack up --secure`",
                )
            users.append(User(name, role, password))
            continue
        user = User(name, role, secrets.token_urlsafe(24))
        _write_private(path, env_text(settings, user))
        users.append(user)
        created.append(user)
    return users, created


def user_settings(settings: Settings, name: str) -> Settings:
    """`settings` with a user's credentials in place of whatever the environment set."""
    values = read_env_file(credentials_file(settings, name))
    return settings.model_copy(
        update={
            "kafka_security_protocol": LISTENER,
            "kafka_sasl_mechanism": MECHANISM,
            "kafka_sasl_username": name,
            "kafka_sasl_password": SecretStr(values["GUARDSTREAM_KAFKA_SASL_PASSWORD"]),
        }
    )


def stack_settings(settings: Settings) -> Settings:
    """The settings the stack's own calls (health, topics, ACLs) use on this data dir.

    On a secured data dir that is the operator, whoever the environment says the user is:
    a shell that sourced a client's file must still be able to run `stack status`.
    """
    if stored_mode(settings) == "secure" and credentials_file(settings, OPERATOR).exists():
        return user_settings(settings, OPERATOR)
    return settings


# --- the broker's side ------------------------------------------------------------------------


def scram_argument(user: User, salt: bytes | None = None) -> str:
    """`kafka-storage format --add-scram` value: the salted hash, never the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", user.password.encode(), salt, _ITERATIONS)
    b64 = base64.b64encode
    return (
        f"{MECHANISM}=[name={user.name},iterations={_ITERATIONS},"
        f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]'
    )


def broker_properties(settings: Settings, operator: User) -> dict[str, str]:
    """The server.properties entries that secure the broker (they replace the plain listeners).

    The controller listener stays PLAINTEXT: the KRaft quorum is this one process, and its
    principal there (ANONYMOUS) must be a super user for the broker to register with it.
    Whoever reaches that port is therefore a super user for what the controller serves
    directly (e.g. dynamic configs, shown with Kafka 3.9.1), so it binds to loopback whatever
    `host` is: only processes on this machine can reach it.
    """
    host, port, cport = settings.host, settings.kafka_port, settings.kafka_controller_port
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{operator.name}" password="{operator.password}";'
    )
    return {
        "listeners": f"{LISTENER}://{host}:{port},CONTROLLER://127.0.0.1:{cport}",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "advertised.listeners": f"{LISTENER}://{host}:{port}",
        "listener.security.protocol.map": f"{LISTENER}:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": LISTENER,
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:ANONYMOUS;User:{operator.name}",
        "allow.everyone.if.no.acl.found": "false",
    }


def acl_bindings(settings: Settings, users: list[User]) -> list[AclBinding]:
    """The ALLOW ACLs of every non-super user (anything not listed is denied)."""
    # The submodules, because the package does not re-export these names for type checkers.
    from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    op, topic_, group = AclOperation, ResourceType.TOPIC, ResourceType.GROUP
    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    grants: list[tuple[str, ResourceType, str, ResourcePatternType, AclOperation]] = []
    for user in users:
        p = user.principal
        if user.role is Role.WORKER:
            # guardstream's topics, and Faust's changelog and leader topics (named after the
            # app id). Create, yes (a worker creates what is missing); delete or alter, no.
            for prefix in dict.fromkeys((f"{settings.topic_prefix}.", settings.app_id)):
                for o in (op.READ, op.WRITE, op.DESCRIBE, op.CREATE, op.DESCRIBE_CONFIGS):
                    grants.append((p, topic_, prefix, prefixed, o))
            # Groups hold offsets, not data: the worker's side consumers (gap checks, the
            # tenants reader) use fixed group names besides the Faust app id.
            for o in (op.READ, op.DESCRIBE):
                grants.append((p, group, "*", literal, o))
        elif user.role is Role.CLIENT:
            for t in (Topic.REQUESTS, Topic.USAGE):
                for o in (op.WRITE, op.DESCRIBE):
                    grants.append((p, topic_, settings.topic(t), literal, o))
            # Not deadletter: it holds other clients' raw, unredacted bytes.
            for t in (Topic.ADMITTED, Topic.REJECTED):
                for o in (op.READ, op.DESCRIBE):
                    grants.append((p, topic_, settings.topic(t), literal, o))
            for o in (op.READ, op.DESCRIBE):
                grants.append((p, group, user.name, prefixed, o))
    return [
        AclBinding(rtype, name, pattern, principal, "*", o, AclPermissionType.ALLOW)
        for principal, rtype, name, pattern, o in grants
    ]


def apply(admin_settings: Settings, users: list[User], late: list[User]) -> None:
    """Create the `late` users (made after the broker was formatted) and every ACL.

    Both calls are idempotent, so each `stack up --secure` re-asserts the whole set.
    """
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._scram import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    from guardstream.streams.clients import kafka_config

    admin = AdminClient(kafka_config(admin_settings, log_level=0))
    try:
        if late:
            info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, _ITERATIONS)
            upserts: list[UserScramCredentialAlteration] = [
                UserScramCredentialUpsertion(u.name, info, u.password.encode()) for u in late
            ]
            for future in admin.alter_user_scram_credentials(upserts).values():
                future.result()
        for future in admin.create_acls(acl_bindings(admin_settings, users)).values():
            future.result()
    except Exception as exc:
        raise GuardstreamError(
            f"securing the broker (users, ACLs) failed: {exc}",
            "read the broker log (`guardstream stack logs kafka`) and run "
            "`guardstream stack up --secure` again",
        ) from exc
