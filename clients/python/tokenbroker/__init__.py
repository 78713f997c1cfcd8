"""Client of the tokenbroker HTTP gateway, standard library only.

    from tokenbroker import get_token, TokenSource, BearerAuth

    tok = get_token("crm-prod")                      # one request
    with TokenSource("crm-prod") as source:          # kept current by /events
        requests.get(api, auth=BearerAuth(source))

See the project's README, section "Python".
"""

from ._auth import BearerAuth
from ._client import DEFAULT_URL, Token, TokenBrokerError, get_token
from ._source import TokenSource

__all__ = ["BearerAuth", "DEFAULT_URL", "Token", "TokenBrokerError", "TokenSource", "get_token"]
__version__ = "0.1.0"
