"""CORS rules as S3 has them: the CORSConfiguration document, its checks, the form a bucket record keeps
(canonical JSON), and which rule answers a browser's origin, method and headers."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from gateway.s3.errors import S3Error
from gateway.s3.numbers import decimal
from gateway.s3.xml import document, parse

MAX_RULES = 100
MAX_ID = 255
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_AGE = (1 << 31) - 1
# What S3 answers on an actual or preflight request: caches must keep answers per origin and request.
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
_LISTS = ("AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader")


def _pattern(text: str, fold: bool) -> re.Pattern[str]:
    """A wildcard pattern (`*`: any run of characters) as a regex; `fold`: case-insensitive (header names)."""
    regex = ".*".join(re.escape(piece) for piece in text.split("*"))
    return re.compile(regex, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


@dataclass(frozen=True)  # no slots: the compiled patterns are cached on the instance
class CorsRule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    rule_id: str = ""

    @functools.cached_property
    def _origins(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_pattern(o, fold=False) for o in self.allowed_origins)

    @functools.cached_property
    def _headers(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_pattern(h, fold=True) for h in self.allowed_headers)

    def allows(self, origin: str, method: str, headers: tuple[str, ...] = ()) -> bool:
        """Whether this rule lets `origin` use `method` sending `headers` (lowercase names)."""
        return (
            method in self.allowed_methods
            and answerable(origin)
            and all(answerable(h) for h in headers)
            and any(p.fullmatch(origin) for p in self._origins)
            and all(any(p.fullmatch(h) for p in self._headers) for h in headers)
        )

    def answer(self, origin: str) -> dict[str, str]:
        """The Access-Control-* headers of a response this rule allows (a preflight adds Allow-Headers)."""
        out = {"Access-Control-Allow-Methods": ", ".join(self.allowed_methods), "Vary": VARY}
        named = any(p.fullmatch(origin) for o, p in zip(self.allowed_origins, self._origins, strict=True) if o != "*")
        if not named:
            out["Access-Control-Allow-Origin"] = "*"  # any origin, without credentials, as S3 answers it
        else:
            out["Access-Control-Allow-Origin"] = origin
            out["Access-Control-Allow-Credentials"] = "true"
        if self.expose_headers:
            out["Access-Control-Expose-Headers"] = ", ".join(self.expose_headers)
        if self.max_age is not None:
            out["Access-Control-Max-Age"] = str(self.max_age)
        return out


def first_match(
    rules: tuple[CorsRule, ...], origin: str, method: str, headers: tuple[str, ...] = ()
) -> CorsRule | None:
    """The first rule (in document order, as S3 evaluates them) that allows the request."""
    return next((r for r in rules if r.allows(origin, method, headers)), None)


def answerable(text: str) -> bool:
    """Whether a request's text may be echoed in a response header: printable ASCII only (an undecodable byte
    arrives as a surrogate, which no header can carry)."""
    return text.isascii() and text.isprintable()


def requested_headers(value: str | None) -> tuple[str, ...]:
    """The names of an Access-Control-Request-Headers value, lowercase."""
    if not value:
        return ()
    return tuple(h for h in (part.strip().lower() for part in value.split(",")) if h)


# -- the document


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidRequest", message)


def _rule(el: ET.Element) -> CorsRule:
    values: dict[str, list[str]] = {name: [] for name in _LISTS}
    rule_id, max_age = "", None
    for child in el:
        text = (child.text or "").strip()
        if child.tag in values:
            values[child.tag].append(text)
        elif child.tag == "ID" and len(text) <= MAX_ID:
            rule_id = text
        elif child.tag == "MaxAgeSeconds" and max_age is None:
            max_age = decimal(text, 0, MAX_AGE)
            if max_age is None:
                raise S3Error("MalformedXML")
        else:
            raise S3Error("MalformedXML")
    if not values["AllowedOrigin"] or not values["AllowedMethod"]:
        raise S3Error("MalformedXML")
    for method in values["AllowedMethod"]:
        if method not in METHODS:
            raise _invalid(f"Found unsupported HTTP method in CORS config. Unsupported method is {method}")
    for name in ("AllowedOrigin", "AllowedHeader"):
        for value in values[name]:
            if value.count("*") > 1:
                raise _invalid(f'{name} "{value}" can not have more than one wildcard.')
    return CorsRule(
        tuple(values["AllowedOrigin"]),
        tuple(dict.fromkeys(values["AllowedMethod"])),
        tuple(values["AllowedHeader"]),
        tuple(values["ExposeHeader"]),
        max_age,
        rule_id,
    )


def parse_config(body: bytes) -> tuple[CorsRule, ...]:
    """The rules of a PutBucketCors body; MalformedXML or InvalidRequest as S3 answers them."""
    root = parse(body, "CORSConfiguration")
    if any(child.tag != "CORSRule" for child in root) or not 1 <= len(root) <= MAX_RULES:
        raise S3Error("MalformedXML")
    return tuple(_rule(el) for el in root)


def config_document(rules: tuple[CorsRule, ...]) -> bytes:
    """The CORSConfiguration GetBucketCors answers."""
    items = []
    for r in rules:
        fields: list[tuple[str, object]] = [("ID", r.rule_id or None)]
        fields += [("AllowedHeader", h) for h in r.allowed_headers]
        fields += [("AllowedMethod", m) for m in r.allowed_methods]
        fields += [("AllowedOrigin", o) for o in r.allowed_origins]
        fields += [("ExposeHeader", h) for h in r.expose_headers]
        fields.append(("MaxAgeSeconds", r.max_age))
        items.append(("CORSRule", fields))
    return document("CORSConfiguration", items)


def to_record(rules: tuple[CorsRule, ...]) -> str:
    """The rules as the bucket record keeps them: canonical JSON."""
    return json.dumps(
        [
            {
                "ID": r.rule_id,
                "AllowedOrigin": list(r.allowed_origins),
                "AllowedMethod": list(r.allowed_methods),
                "AllowedHeader": list(r.allowed_headers),
                "ExposeHeader": list(r.expose_headers),
                "MaxAgeSeconds": r.max_age,
            }
            for r in rules
        ],
        separators=(",", ":"),
    )


@functools.lru_cache(maxsize=256)
def from_record(text: str) -> tuple[CorsRule, ...]:
    """The rules a bucket record keeps (cached: every request with an Origin header reads them)."""
    if not text:
        return ()
    return tuple(
        CorsRule(
            tuple(d["AllowedOrigin"]),
            tuple(d["AllowedMethod"]),
            tuple(d.get("AllowedHeader", ())),
            tuple(d.get("ExposeHeader", ())),
            d.get("MaxAgeSeconds"),
            d.get("ID", ""),
        )
        for d in json.loads(text)
    )
