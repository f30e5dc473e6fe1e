"""Who is calling and what their role is: shared by the servers of a cluster.

- :mod:`identity`: tokens, client certificates and fixed identities, behind one ``Authenticator``;
- :mod:`roles`: the roles;
- :mod:`audit`: the audit log lines.

Each server applies them to its own calls: the session manager's gRPC guard
(:mod:`flame.session_manager.auth`), the object cache's Flight middleware, the dashboard.
"""

from __future__ import annotations

from flame.auth.identity import (
    Authenticator,
    CertificateAuthenticator,
    FixedIdentity,
    Identity,
    TokenAuthenticator,
)
from flame.auth.roles import Role, needed

__all__ = [
    "Authenticator",
    "CertificateAuthenticator",
    "FixedIdentity",
    "Identity",
    "Role",
    "TokenAuthenticator",
    "needed",
]
