"""Authentication and authorization of the session manager's gRPC calls (``cluster.auth``).

- :mod:`roles`: the role table, method path -> roles allowed;
- :mod:`flame.auth`: tokens, client certificates, fixed identities, roles and the audit log,
  shared with the object cache and the dashboard;
- :mod:`guard`: the check that applies both before a servicer method runs;
- :mod:`access`: session ownership, asked by the servicers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flame.auth.identity import Authenticator, CertificateAuthenticator, FixedIdentity, Identity, TokenAuthenticator
from flame.config import AuthConfig
from flame.session_manager.auth.access import CURRENT, Access
from flame.session_manager.auth.guard import Guard
from flame.session_manager.auth.roles import RULES, Role

logger = logging.getLogger(__name__)

FLAMEPY_IDENTITY = "flamepy"


@dataclass
class Auth:
    """What the server needs: a guard per listener (None: no checks), ownership, reloading."""

    config: AuthConfig
    access: Access
    main: Guard | None = None
    flamepy: Guard | None = None
    tokens: TokenAuthenticator | None = field(default=None, repr=False)
    certificates: CertificateAuthenticator | None = None  # mode mtls: certificate names -> identities

    def reload(self) -> bool:
        """Re-read the tokens file (SIGHUP). False when there is none or it was refused."""
        if self.tokens is None:
            logger.info("SIGHUP: nothing to reload (cluster.auth.mode is %s)", self.config.mode)
            return False
        return self.tokens.reload()


def build_auth(config: AuthConfig) -> Auth:
    """Read the tokens file or the certificate identities; raises InvalidArgument on a bad tokens file."""
    auth = Auth(config, Access(config.user_sessions))
    authenticator: Authenticator | None = None
    if config.mode == "token":
        assert config.tokens_file is not None  # the config refuses token mode without one
        auth.tokens = TokenAuthenticator(config.tokens_file)
        authenticator = auth.tokens
    elif config.mode == "mtls":
        authenticator = auth.certificates = CertificateAuthenticator(config.identities)
    if authenticator is not None:
        auth.main = Guard(authenticator, certificates=config.mode == "mtls")
    if config.flamepy_endpoint is not None:
        identity = Identity(FLAMEPY_IDENTITY, Role(config.flamepy_role), "flamepy listener")
        auth.flamepy = Guard(FixedIdentity(identity))
    return auth


__all__ = [
    "CURRENT",
    "FLAMEPY_IDENTITY",
    "RULES",
    "Access",
    "Auth",
    "Guard",
    "Identity",
    "Role",
    "build_auth",
]
