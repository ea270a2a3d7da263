"""The rules of gateway/s3/lifecycle.py on their own: days as S3 counts them, which rule expires an object first,
what a filter takes, and the x-amz-expiration header."""

from __future__ import annotations

import calendar

import pytest

from gateway.s3 import lifecycle as lc
from gateway.s3.errors import S3Error

MIDNIGHT = float(calendar.timegm((2026, 3, 10, 0, 0, 0)))


def _config(rule_xml: str) -> bytes:
    return f"<LifecycleConfiguration><Rule>{rule_xml}</Rule></LifecycleConfiguration>".encode()


def test_days_end_at_the_next_midnight_with_the_real_day_and_exactly_with_a_short_one() -> None:
    written = MIDNIGHT + 15 * 3600  # 15:00
    assert lc.after_days(written, 1, lc.DAY) == MIDNIGHT + 2 * lc.DAY
    assert lc.after_days(MIDNIGHT, 1, lc.DAY) == MIDNIGHT + lc.DAY
    assert lc.after_days(written, 3, 1.0) == written + 3


def test_the_earliest_matching_rule_expires_the_object() -> None:
    rules = [
        lc.Rule("late", True, days=10),
        lc.Rule("soon", True, prefix="logs/", days=2),
        lc.Rule("off", False, days=1),
        lc.Rule("big", True, size_gt=100, days=1),
    ]
    assert lc.expiry(rules, "logs/a", 50, {}, 0.0, 1.0) == (2.0, "soon")
    assert lc.expiry(rules, "other", 500, {}, 0.0, 1.0) == (1.0, "big")
    assert lc.expiry(rules[2:3], "x", 1, {}, 0.0, 1.0) is None


def test_filters_take_tags_and_sizes_strictly() -> None:
    r = lc.Rule("r", True, prefix="p/", tags={"a": "1"}, size_gt=10, size_lt=20)
    assert r.matches("p/x", 15, {"a": "1", "b": "2"})
    assert not r.matches("p/x", 10, {"a": "1"}) and not r.matches("p/x", 20, {"a": "1"})
    assert not r.matches("p/x", 15, {"a": "2"}) and not r.matches("q/x", 15, {"a": "1"})
    assert r.matches("p/x", tags={"a": "1"}, sized=False)  # a delete marker or an upload has no size


def test_header_quotes_the_rule_id() -> None:
    assert lc.expiration_header((MIDNIGHT, 'a"b')) == {
        "x-amz-expiration": 'expiry-date="Tue, 10 Mar 2026 00:00:00 GMT", rule-id="a\\"b"'
    }
    assert lc.expiration_header(None) == {}


@pytest.mark.parametrize(
    "rule_xml, code",
    [
        ("<ID>a&#10;b</ID><Filter/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>", "InvalidArgument"),
        ("<Filter/><Status>Enabled</Status><Expiration><Days>99999999999</Days></Expiration>", "InvalidArgument"),
        ("<Filter/><Status>Enabled</Status><Expiration><Days>-1</Days></Expiration>", "InvalidArgument"),
        ("<Filter/><Status>Enabled</Status><Expiration><Date>yesterday</Date></Expiration>", "InvalidArgument"),
        (
            "<Filter><Prefix>a</Prefix><Prefix>b</Prefix></Filter><Status>Enabled</Status><Expiration><Days>1</Days>"
            "</Expiration>",
            "MalformedXML",
        ),
        ("<Filter/><Status>Enabled</Status><Expiration/>", "MalformedXML"),
        ("<Filter/><Status>Enabled</Status><Bogus/><Expiration><Days>1</Days></Expiration>", "MalformedXML"),
    ],
)
def test_refused(rule_xml: str, code: str) -> None:
    with pytest.raises(S3Error) as err:
        lc.parse_configuration(_config(rule_xml))
    assert err.value.code == code


def test_configuration_round_trips_through_the_record() -> None:
    body = _config(
        "<ID>r</ID><Filter><And><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter>"
        "<Status>Enabled</Status><NoncurrentVersionExpiration><NoncurrentDays>3</NoncurrentDays>"
        "<NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
    )
    rules = lc.parse_configuration(body)
    assert lc.loads(lc.dumps(rules)) == rules
    assert lc.parse_configuration(lc.configuration_document(rules)) == rules
