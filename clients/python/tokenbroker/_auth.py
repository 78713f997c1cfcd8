"""BearerAuth: an Authorization header from a TokenSource, for requests."""

from typing import Callable, Union

from ._client import Token


class BearerAuth:
    """Sets "Authorization: Bearer <token>" on each request it is given.

    It follows requests' AuthBase protocol without importing requests:

        session.auth = BearerAuth(source)
        requests.get(url, auth=BearerAuth(source))

    source is a TokenSource (anything with a token() method) or a callable
    returning a Token or the access token as a string, asked once per
    request, so that each request carries a current token. Any object with
    a dict-like headers attribute works, urllib.request.Request included.
    """

    def __init__(self, source: Union[object, Callable[[], Union[Token, str]]]):
        get = getattr(source, "token", None)
        if callable(get):
            self._get = get
        elif callable(source):
            self._get = source
        else:
            raise TypeError("BearerAuth needs a TokenSource or a callable returning a token")

    def __call__(self, r):
        tok = self._get()
        access = tok.access_token if isinstance(tok, Token) else tok
        if not isinstance(access, str) or not access:
            raise TypeError("the token source gave no access token")
        r.headers["Authorization"] = "Bearer " + access
        return r

    def __repr__(self) -> str:
        return "BearerAuth()"
