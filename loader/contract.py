"""The FlowKit-UI service's contract, as the loader's client, its embedded backend and its
`serve` all keep it (standard library only): the scopes a token carries, the scope each
operation needs, the role whose credential sends it, and the wire formats.

One home, so that the planner (which counts the roles a plan needs), the backends (which
refuse a call without its scope, as the service does) and the server (which routes by
scope) cannot drift apart. See reference/backend-contract.md for the service itself.
"""

from __future__ import annotations

from loader.model import EntityKind, Role

# -- scopes (in a token's `scope` claim) ---------------------------------------------------

ADMIN = "admin"  # the setup and the config entities
WRITE_DATA = "write:data"  # datasets, scope mappings, and a data provider's update
READ_FREE_DATA = "read:free_data"  # every read: /setup, config entities, /query, /csv
READ_PREMIUM_DATA = "read:premium_data"
SCOPES = (ADMIN, WRITE_DATA, READ_FREE_DATA, READ_PREMIUM_DATA)

# The permission (and the scope mapping the service adds to every dataset by itself) that
# sees every dataset: a reader without it takes what it cannot see for gone.
SEES_EVERYTHING = ADMIN

# What each role's credential must carry for the work the planner gives it.
ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.ADMIN: (ADMIN,),
    Role.UPDATER: (WRITE_DATA,),
    Role.READER: (READ_FREE_DATA,),
}
_ROLE_OF_SCOPE = {scope: role for role, scopes in ROLE_SCOPES.items() for scope in scopes}


def entity_write_scope(kind: EntityKind, *, update: bool) -> str:
    """The scope a write of a config entity needs: a data provider's update is a data
    writer's (the service lets `write:data` patch providers); everything else is admin's."""
    return WRITE_DATA if update and kind is EntityKind.DATA_PROVIDER else ADMIN


def role_for(scope: str) -> Role:
    """The role whose credential sends a call that needs `scope`."""
    return _ROLE_OF_SCOPE[scope]


# -- wire formats -------------------------------------------------------------------------

# A dataset's `dt` as the backend stores, returns and expects it in /data and /query.
BACKEND_DT_FORMAT = "%Y-%m-%d %H:%M:%S"
# The API versions (`/setup`'s `config.api_version` prefixes) this loader knows.
KNOWN_API_VERSIONS = ("1.2", "1.3")
# The categories whose values /csv gives exactly (the stored DECIMAL's text): the service
# writes its CSV by the built-in categories' names and fails for any other.
CSV_CATEGORIES = ("residents", "presence", "relocations", "movements")
CSV_FLOW_CATEGORIES = ("relocations", "movements")
