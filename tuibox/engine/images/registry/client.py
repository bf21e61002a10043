"""An HTTP client for one registry (distribution-spec v2) on httpx.

It owns the three things every request needs: the endpoint (HTTPS, or plain HTTP for
an insecure registry, found by the ``/v2/`` ping), authentication (Basic, or Bearer
tokens fetched from the challenge's realm and cached per scope, refreshed on a 401) and
redirects, followed by hand so that ``Authorization`` only ever goes to the registry's
own origin — a blob redirect to a CDN or S3 must not carry it.

Thread-safe: pulls download blobs from several threads through one client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ...errors import RegistryAuthError, RegistryError
from ..reference import DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST
from .challenge import Challenge, pick_challenge
from .credentials import Credentials

USER_AGENT = "tuibox/0.1 (+httpx)"
MAX_REDIRECTS = 5
DEFAULT_TOKEN_TTL = 60.0
_REDIRECTS = (301, 302, 303, 307, 308)

Content = bytes | Iterable[bytes] | None


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def error_text(resp: httpx.Response) -> str:
    """The registry's error message (``{"errors": [{code, message}]}``) or the status."""
    try:
        doc = json.loads(resp.read())
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = str(first.get("code", "")).lower().replace("_", " ")
            message = str(first.get("message", ""))
            return f"{code}: {message}" if code and code != message else message or code
    except (ValueError, httpx.HTTPError):
        pass
    return f"HTTP {resp.status_code} {resp.reason_phrase}".strip()


class RegistryClient:
    """Requests to one registry, authenticated; ``path`` arguments start at ``/v2/``."""

    def __init__(self, domain: str, *, credentials: Credentials | None = None,
                 insecure: bool = False, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.domain = domain
        self.host = DEFAULT_REGISTRY_HOST if domain == DEFAULT_DOMAIN else domain
        self.credentials = credentials
        self.insecure = insecure
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False, verify=not insecure, transport=transport,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._base: str | None = None
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoint -----------------------------------------------------------------------

    @property
    def base(self) -> str:
        if self._base is None:
            self.ping()
        assert self._base is not None
        return self._base

    def ping(self) -> Challenge | None:
        """``GET /v2/``: pick the scheme and learn the auth challenge (None: open)."""
        schemes = ("https", "http") if self.insecure else ("https",)
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:
                resp = self._http.get(url)
            except httpx.TransportError as exc:
                # An insecure registry that speaks plain HTTP fails the TLS handshake.
                last = exc
                continue
            with closing(resp):
                if resp.status_code == 401:
                    self._challenge = pick_challenge(resp.headers.get_list("www-authenticate"))
                elif resp.status_code != 200:
                    raise RegistryError(
                        f"{self.host} is not a v2 registry: GET /v2/ answered "
                        f"{error_text(resp)}")
            self._base = f"{scheme}://{self.host}"
            return self._challenge
        raise RegistryError(f"cannot reach registry {self.host}: {last}") from last

    # -- authentication -----------------------------------------------------------------

    def _fetch_token(self, challenge: Challenge, scope: str | None) -> _Token:
        realm = challenge.realm
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(f"{self.host} sent a bearer challenge without a realm")
        params: dict[str, str] = {}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        scope = scope or challenge.params.get("scope")
        if scope:
            params["scope"] = scope
        headers = {"Authorization": self.credentials.basic()} if self.credentials else {}
        try:
            resp = self._http.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise RegistryError(f"cannot reach the token server {realm}: {exc}") from exc
        with closing(resp):
            if resp.status_code in (401, 403):
                who = f"user {self.credentials.username!r}" if self.credentials else "anonymous"
                raise RegistryAuthError(
                    f"{self.host}: authentication failed for {who}: {error_text(resp)}")
            if resp.status_code != 200:
                raise RegistryAuthError(
                    f"{self.host}: the token server answered {error_text(resp)}")
            try:
                doc = resp.json()
            except ValueError as exc:
                raise RegistryAuthError(f"{realm} sent a token that is not JSON") from exc
        value = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryAuthError(f"{realm} answered without a token")
        ttl = doc.get("expires_in")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else DEFAULT_TOKEN_TTL
        return _Token(value, time.monotonic() + ttl)

    def _authorization(self, scope: str | None, *, refresh: bool = False) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self.credentials.basic() if self.credentials else None
        key = scope or ""
        with self._lock:
            token = self._tokens.get(key)
            # A margin, so a token does not expire between being picked and being used.
            if token is not None and not refresh and token.expires - 5 > time.monotonic():
                return f"Bearer {token.value}"
        token = self._fetch_token(challenge, scope)
        with self._lock:
            self._tokens[key] = token
        return f"Bearer {token.value}"

    def authenticate(self) -> None:
        """Check the credentials (``login``): fetch a token or pass Basic auth on /v2/."""
        challenge = self.ping()
        if challenge is None:
            return
        if challenge.scheme == "bearer":
            self._fetch_token(challenge, None)
            return
        resp = self.request("GET", "/v2/", scope=None, expect=(200, 401))
        if resp.status_code == 401:
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous"
            raise RegistryAuthError(f"{self.host}: authentication failed for {who}")

    # -- requests -----------------------------------------------------------------------

    def _send(self, method: str, url: str, *, auth: str | None, headers: dict[str, str],
              content: Content, stream: bool) -> httpx.Response:
        base_origin = _origin(self.base)
        for _ in range(MAX_REDIRECTS + 1):
            h = dict(headers)
            # Only the registry's own origin ever sees our credentials.
            if auth is not None and _origin(url) == base_origin:
                h["Authorization"] = auth
            request = self._http.build_request(method, url, headers=h, content=content)
            resp = self._http.send(request, stream=stream)
            location = resp.headers.get("location")
            if (resp.status_code not in _REDIRECTS or location is None
                    or method not in ("GET", "HEAD")):
                return resp
            resp.close()
            url = urljoin(url, location)
        raise RegistryError(f"{self.host}: too many redirects for {method} {url}")

    def request(self, method: str, path: str, *, scope: str | None,
                headers: dict[str, str] | None = None,
                content: Callable[[], Content] | None = None,
                stream: bool = False, expect: Iterable[int] = (200,)) -> httpx.Response:
        """One authenticated request; a status outside ``expect`` is a ``RegistryError``.

        ``content`` is a factory, so the body can be sent again after a 401.  With
        ``stream`` the caller must close the response.
        """
        url = path if path.startswith(("https://", "http://")) else self.base + path
        expected = set(expect)
        resp: httpx.Response | None = None
        try:
            for attempt in range(2):
                auth = self._authorization(scope, refresh=attempt > 0)
                resp = self._send(method, url, auth=auth, headers=headers or {},
                                  content=content() if content else None, stream=stream)
                if resp.status_code != 401 or 401 in expected:
                    break
                challenge = pick_challenge(resp.headers.get_list("www-authenticate"))
                retry = challenge is not None and attempt == 0 and (
                    challenge.scheme == "bearer" or self.credentials is not None)
                if not retry:
                    break
                # A registry that let /v2/ through may still guard the repository.
                self._challenge = challenge
                resp.close()
        except httpx.TransportError as exc:
            raise RegistryError(f"cannot reach registry {self.host}: {exc}") from exc
        assert resp is not None
        if resp.status_code in expected:
            return resp
        try:
            text = error_text(resp)
        finally:
            resp.close()
        if resp.status_code in (401, 403):
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous"
            raise RegistryAuthError(f"{self.host}: access denied ({who}): {text}")
        raise RegistryError(f"{self.host}: {method} {urlsplit(url).path}: {text}",
                            ) from None

    def json_request(self, method: str, path: str, *, scope: str | None,
                     **kw: Any) -> Any:
        resp = self.request(method, path, scope=scope, **kw)
        with closing(resp):
            try:
                return resp.json()
            except ValueError as exc:
                raise RegistryError(f"{self.host}: {path} did not answer JSON") from exc
