"""A manifest's `targets` -> Target models: the url (a kind of backend the factory
serves, plain http only on loopback), the state record's location, the credentials per
role and per reader scope (secrets only as ${ENV} references), and the CA bundle."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loader.backends.factory import kind_of, url_forms
from loader.fileroot import FileRoot, OutsideRoot
from loader.manifestpart import ManifestPart
from loader.model import Credential, Role, Target, excerpt
from loader.yamlsrc import JsonPath

_ENV_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class TargetReader(ManifestPart):
    def __init__(self, part: ManifestPart, file_root: FileRoot) -> None:
        super().__init__(part.doc, part.base, part.rejected, part.problems)
        self.file_root = file_root  # where a CA bundle may be

    def targets(self, section: Any) -> dict[str, Target]:
        """Every target the schema let through, by name."""
        if not isinstance(section, dict):
            return {}
        targets: dict[str, Target] = {}
        for name, spec in section.items():
            if (
                isinstance(spec, dict)
                and isinstance(spec.get("url"), str)
                and not self.is_rejected(("targets", name))
            ):
                targets[name] = self.target(name, spec)
        return targets

    def target(self, name: str, spec: dict[str, Any]) -> Target:
        path: JsonPath = ("targets", name)
        url: str = spec["url"]
        resolvable = not self.doc.unresolved((*path, "url"))
        kind = kind_of(url)
        if kind is None and resolvable:
            # The schema takes any scheme: which ones are served is known here, where
            # a kind registered by a plugin or a test is accepted too.
            shown = json.dumps(excerpt(url), ensure_ascii=False)
            self.error((*path, "url"), f"target url must be {url_forms()}, not {shown}")
        if url.startswith("local:"):
            url = f"local:{self.resolve_path(url.removeprefix('local:'))}"
        elif resolvable and url.startswith("http://"):
            host = urlsplit(url).hostname or ""
            if not is_loopback(host):
                self.error(
                    (*path, "url"),
                    "plain http is allowed only on loopback (tokens would travel "
                    "unencrypted): use https",
                )
        state = spec.get("state")
        if isinstance(state, str) and not _URL_SCHEME.match(state):
            state = str(self.resolve_path(state))
        elif not isinstance(state, str):
            stem = Path(self.doc.path).stem
            state = str(self.resolve_path(f"{stem}.{name}.state.json"))
        credentials, readers = self.credentials(path, spec)
        declared: dict[str, Any] = (
            spec["credentials"] if isinstance(spec.get("credentials"), dict) else {}
        )
        missing = [
            role.value
            for role in (Role.ADMIN, Role.UPDATER)
            if role.value not in declared and "all" not in declared
        ]
        # A url still to come from the environment is taken for a remote one, which is
        # what such a url names in practice (validate runs in CI without the secret); an
        # unknown scheme has had its error.
        if kind is not None:
            needs_credentials = kind.needs_credentials
        else:
            needs_credentials = not resolvable and not url.startswith("local:")
        if missing and needs_credentials:
            self.error(
                path,
                f"target '{name}' has no credential for the {' and '.join(missing)} "
                f"role{'s' if len(missing) > 1 else ''}: set "
                + " and ".join(f"credentials.{role}" for role in missing)
                + ", or credentials.all",
                key=True,
            )
        ca_bundle = spec.get("ca_bundle")
        if isinstance(ca_bundle, str) and resolvable:
            try:
                ca_bundle = str(self.file_root.resolve(ca_bundle))
            except OutsideRoot as refused:
                self.error((*path, "ca_bundle"), f"CA bundle {refused}")
                ca_bundle = None
            if ca_bundle is not None and not Path(ca_bundle).is_file():
                self.error((*path, "ca_bundle"), f"CA bundle not found: {spec['ca_bundle']}")
        elif isinstance(ca_bundle, str):
            ca_bundle = str(self.resolve_path(ca_bundle))
        return Target(name, url, state, credentials, readers, ca_bundle)

    def credentials(
        self, path: JsonPath, spec: dict[str, Any]
    ) -> tuple[dict[Role, Credential], dict[str, Credential]]:
        auth: dict[str, Any] = spec["auth"] if isinstance(spec.get("auth"), dict) else {}
        section = spec.get("credentials")
        if not isinstance(section, dict):
            return {}, {}
        base = (*path, "credentials")
        shared = self.credential((*base, "all"), section.get("all"), auth)
        roles: dict[Role, Credential] = {}
        for role in Role:
            own = self.credential((*base, role.value), section.get(role.value), auth)
            chosen = own or shared
            if chosen is not None:
                roles[role] = chosen
        if Role.READER not in roles and Role.ADMIN in roles:
            roles[Role.READER] = roles[Role.ADMIN]
        readers: dict[str, Credential] = {}
        scopes = section.get("scopes")
        for scope, value in scopes.items() if isinstance(scopes, dict) else ():
            credential = self.credential((*base, "scopes", scope), value, auth)
            if credential is not None:
                readers[scope] = credential
        return roles, readers

    def credential(self, path: JsonPath, spec: Any, auth: dict[str, Any]) -> Credential | None:
        if not isinstance(spec, dict):
            return None
        secret_field = "token" if "token" in spec else "client_secret"
        secret_env = self.secret_reference((*path, secret_field), spec.get(secret_field))
        if secret_env is None:
            return None
        if secret_field == "token":
            return Credential("token", secret_env)
        token_url = spec.get("token_url", auth.get("token_url"))
        audience = spec.get("audience", auth.get("audience"))
        if not isinstance(token_url, str):
            self.error(path, "client credentials need a token_url (here or in auth)")
            return None
        client_id = spec.get("client_id")
        return Credential(
            "client_credentials",
            secret_env,
            client_id=client_id if isinstance(client_id, str) else None,
            token_url=token_url,
            audience=audience if isinstance(audience, str) else None,
        )

    def secret_reference(self, path: JsonPath, value: Any) -> str | None:
        """The environment variable a secret comes from; a literal secret is refused."""
        if not isinstance(value, str):
            return None
        raw = self.doc.raw_scalars.get(path)
        if raw is None or not _ENV_REFERENCE.match(raw):
            self.error(
                path,
                f"literal secret in '{path[-1]}': write it as ${{ENV_VAR}}; "
                "secrets come only from the environment",
            )
            return None
        return raw[2:-1]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
