"""Image references with Docker's normalisation (distribution/reference semantics).

``busybox`` means ``docker.io/library/busybox:latest``; the *familiar* form
(``busybox:latest``, ``localhost:5000/x:1``) is what users see and what the local
store uses as its key, so the same image is found however the user spells it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
# The host that actually serves docker.io's registry API.
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_DOMAIN_RE = re.compile(_DOMAIN)
_REMOTE_RE = re.compile(_REMOTE_NAME)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST)
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short repository name users type: ``busybox``, ``user/app``, ``ghcr.io/a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        # Only a single-component official image loses its "library/" prefix.
        if path.startswith(OFFICIAL_REPO_PREFIX) and path.count("/") == 1:
            return path[len(OFFICIAL_REPO_PREFIX):]
        return path

    @property
    def registry_host(self) -> str:
        """Where the registry API for this reference lives."""
        return DEFAULT_REGISTRY_HOST if self.domain == DEFAULT_DOMAIN else self.domain

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def familiar(self) -> str:
        """``busybox:latest``: the local store's key and what ``images`` shows."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag)

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry only if it looks like a host."""
    first, sep, rest = name.partition("/")
    looks_like_host = (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    if not sep or not looks_like_host:
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _check_digest(digest: str, text: str) -> None:
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidArgument(f"invalid reference format: bad digest in {text!r}")
    # sha256 is the only algorithm registries use; insist on its exact shape.
    if digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest):
        raise InvalidArgument(
            f"invalid reference format: {digest!r} is not a sha256 digest of 64 lowercase hex"
        )


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise ``text``; with ``default_tag`` a bare name gets ``:latest``.

    Raises ``InvalidArgument`` with Docker-like wording for anything malformed.
    """
    if not text:
        raise InvalidArgument("invalid reference format: empty reference")
    if _HEX64_RE.fullmatch(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest, _, digest = text.partition("@")
    if digest:
        _check_digest(digest, text)
    elif text.endswith("@"):
        raise InvalidArgument(f"invalid reference format: {text!r}")
    # The tag separator is the last ':' after the last '/', so registry ports are kept.
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidArgument(f"invalid reference format: bad tag {tag!r} in {text!r}")
    domain, path = _split_domain(rest)
    if path.lower() != path:
        raise InvalidArgument(
            f"invalid reference format: repository name ({path}) must be lowercase"
        )
    if not _DOMAIN_RE.fullmatch(domain) or not _REMOTE_RE.fullmatch(path):
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    if default_tag and tag is None and not digest:
        tag = DEFAULT_TAG
    return Reference(domain=domain, path=path, tag=tag, digest=digest or None)
