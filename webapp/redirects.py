"""Where a ?next= may send a browser: a path on this site, never another site."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MAX_REDIRECT_LENGTH = 2048
MAX_DECODINGS = 4


def local_path(target: str | None, *, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (a ?next= must not leave the site).

    Browsers drop tabs and newlines anywhere in a URL and read "\\" as "/", and servers or
    proxies on the way may decode percent-escapes or fold Unicode look-alikes ("／"): "/%09/evil.example",
    "/\\evil.example" or "/%2F%2Fevil.example" can all end up as "//evil.example", another site. So
    only printable ASCII is kept, whose path still starts with a single "/" and holds no
    backslash, space or non-ASCII character once every percent-escape is decoded.
    """
    if not target or len(target) > MAX_REDIRECT_LENGTH:
        return default
    if not all("!" <= char <= "~" for char in target) or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    path = parts.path
    for _ in range(MAX_DECODINGS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return default  # still encoded after that many rounds: nobody's real link
    if (not path.startswith("/") or path.startswith("//") or "\\" in path
            or not all("!" <= char <= "~" for char in path)):
        return default
    return target
