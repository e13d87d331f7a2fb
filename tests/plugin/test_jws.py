"""Detached RS256 JWS as Saleor-style senders sign: parsing, verification, and every refusal."""

from __future__ import annotations

import json

import pytest

from pointguard.errors import BadSignature, MissingKeyId, MissingSignature, UnsupportedAlgorithm
from pointguard.plugin.jwks import parse_key_set
from pointguard.plugin.jws import parse_detached_jws, verify_rs256

# Made with PyJWT 2.15 (the library Saleor signs with) the way Saleor's `jws_encode` calls it:
# `api_jws.encode(body, key, "RS256", headers={"kid": ..., "crit": ["b64"]},
# is_payload_detached=True)`. Its header is
# {"alg":"RS256","b64":false,"crit":["b64"],"kid":"pyjwt-kid","typ":"JWT"}.
PYJWT_BODY = b'{"issuedAt":"2026-11-20T10:00:00+00:00","order":{"id":"T3JkZXI6MQ=="}}'
PYJWT_JWK = {
    "kty": "RSA",
    "key_ops": ["verify"],
    "kid": "pyjwt-kid",
    "e": "AQAB",
    "n": (
        "oqgAr7FFc-4u4RymMYYoRtkQ1H11Czprj7PWzL_4erG4uQ39KNmoz_1WIhIyeG5WZhUVviB8UQ37o6PhVbMo"
        "FhYe3q6d4afN3AWhZbnf2agFG2GXy8cHNXjS0TzzoA8eeX8gI7Dzre2zs0wIZJohz8nWqdtgtyjOK2lCNm86"
        "Ad8NQ--W52zYUVKNcxAgulNcAvJQ65Hfq-Uo9mSNtAcCmx0ZBR03SLTRDT59tueaZAfyPUY4WpZrwJMJHhPO"
        "JMhm2F9EK0Mfzm_7JTxFclF-rOjMdQeeuWmufc4b1AgbV5zeuyvWWW55a-xiHVtLY29oJncSgttL0_acFS-J"
        "Om6Low"
    ),
}
PYJWT_SIGNATURE = (
    "eyJhbGciOiJSUzI1NiIsImI2NCI6ZmFsc2UsImNyaXQiOlsiYjY0Il0sImtpZCI6InB5and0LWtpZCIsInR5"
    "cCI6IkpXVCJ9..aeEo6VMl45bEU4JFrgd-9gbqtX_S1dFo4VylxZISMI9WCzfZzQWaRB56FuVHzYPE2m9jE4"
    "tHIrPRogEF1VSWXypdAS5pDDRYOJ8wpvJtkfrXE4uqpoI8XYw0_4QLsVq167Co9OVbiRsuLyDnWKjEXYNenW"
    "mk8dDRJStzLZW31HkQSiKo5YouoEPKwgcBooPVsEBirzIOKyJoinTQf2z1IQ9QXTpFrJkXpakwhg_Sl2I1Sa"
    "LAfUliJkTZkVvBAV8YpfwJKF2luhd8XvwsITbA3xBBy3Crbu3NjJl8DZUnWrFFvTpbXgIXywfMM2fouL0NK1"
    "W6g1ZwRO1NaLBrvrxRtw"
)


def pyjwt_key():
    return parse_key_set(json.dumps({"keys": [PYJWT_JWK]}).encode(), "test")["pyjwt-kid"]


def test_a_signature_made_the_way_saleor_makes_it_verifies():
    jws = parse_detached_jws(PYJWT_SIGNATURE, PYJWT_BODY)
    assert jws.kid == "pyjwt-kid"
    verify_rs256(jws, pyjwt_key())


def test_a_changed_body_does_not_verify():
    jws = parse_detached_jws(PYJWT_SIGNATURE, PYJWT_BODY.replace(b"MQ", b"Mg"))
    with pytest.raises(BadSignature, match="does not match the body under key 'pyjwt-kid'"):
        verify_rs256(jws, pyjwt_key())


def test_a_signature_under_another_key_does_not_verify(storefront):
    jws = parse_detached_jws(storefront.sign(PYJWT_BODY, "pyjwt-kid", signer="k1"), PYJWT_BODY)
    with pytest.raises(BadSignature):
        verify_rs256(jws, pyjwt_key())


def test_our_test_signer_signs_as_pyjwt_does(storefront):
    body = b'{"order": {}}'
    key = parse_key_set(json.dumps(storefront.jwks()).encode(), "test")["k1"]
    verify_rs256(parse_detached_jws(storefront.sign(body, "k1"), body), key)


REFUSALS = [
    pytest.param({"alg": "HS256"}, UnsupportedAlgorithm, "alg 'HS256'", id="hmac"),
    pytest.param({"alg": "none"}, UnsupportedAlgorithm, "only RS256", id="none"),
    pytest.param({"alg": "RS512"}, UnsupportedAlgorithm, "only RS256", id="rs512"),
    pytest.param({"alg": None}, UnsupportedAlgorithm, "alg 'None'", id="no-alg"),
    pytest.param({"kid": None}, MissingKeyId, "no usable `kid`", id="no-kid"),
    pytest.param({"kid": ""}, MissingKeyId, "no usable `kid`", id="empty-kid"),
    pytest.param({"kid": 7}, MissingKeyId, "no usable `kid`", id="number-kid"),
    pytest.param({"b64": None}, BadSignature, "b64: false", id="encoded-payload"),
    pytest.param({"b64": True}, BadSignature, "b64: false", id="b64-true"),
    pytest.param({"crit": None}, BadSignature, "no `crit`", id="no-crit"),
    pytest.param({"crit": []}, BadSignature, "listed in `crit`", id="b64-not-critical"),
    pytest.param({"crit": ["b64", "exp"]}, BadSignature, "'exp'", id="unknown-critical"),
]


@pytest.mark.parametrize(("header", "error", "message"), REFUSALS)
def test_headers_we_do_not_accept_are_refused_by_name(storefront, header, error, message):
    body = b"{}"
    with pytest.raises(error, match=message):
        parse_detached_jws(storefront.sign(body, "k1", header=header), body)


@pytest.mark.parametrize(
    "value",
    [
        "abc",  # one part
        "a.b.c",  # an attached payload
        "a..b..c",
        "!!!..abc",  # not base64url
        "e30..abc",  # {} : no alg
        "WzFd..abc",  # [1] : not an object
        "bm90IGpzb24..abc",  # not JSON
        "x" * 2000 + "..abc",
    ],
)
def test_values_that_are_not_a_detached_jws_are_refused(value):
    with pytest.raises((BadSignature, UnsupportedAlgorithm)):
        parse_detached_jws(value, b"{}")


def test_no_header_is_a_missing_signature():
    with pytest.raises(MissingSignature):
        parse_detached_jws("", b"{}")


def test_a_signature_part_that_is_not_base64url_is_refused(storefront):
    protected, _, _ = storefront.sign(b"{}", "k1").partition(".")
    with pytest.raises(BadSignature, match="not base64url"):
        parse_detached_jws(f"{protected}..not*base64", b"{}")
