"""citycard_reader against the emulated card, every result checked against
schemas/verify.v1.json. Needs the `citycard` binary (CITYCARD_BIN, or on PATH)
to set up a test city."""

import json
import os
import pathlib
import shutil
import subprocess

import jsonschema
import pytest
from referencing import Registry, Resource

import citycard_reader

ROOT = pathlib.Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas"
BASE = "https://citycard.example.invalid/schemas/"


def validator():
    resources = []
    for name in ("verdict.v1.json", "verify.v1.json", "tap-event.v1.json"):
        resources.append((BASE + name, Resource.from_contents(json.loads((SCHEMAS / name).read_text()))))
    registry = Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / "verify.v1.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


VALIDATOR = validator()


def checked(doc):
    VALIDATOR.validate(doc)
    return doc


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    citycard = os.environ.get("CITYCARD_BIN") or shutil.which("citycard")
    assert citycard, "set CITYCARD_BIN to the citycard binary"
    d = tmp_path_factory.mktemp("city")
    env = dict(os.environ, CITYCARD_PASSPHRASE="test city only")

    def run(*args):
        done = subprocess.run([citycard, *args], cwd=d, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"citycard {' '.join(args)}: exit {done.returncode}: {done.stderr}"

    run("issuer", "init", "--dir", "city", "--city", "Liège", "--issuer-id", "LIEGE", "--card-prefix", "LG")
    run("station", "add", "desk-1", "--dir", "city", "--valid-days", "180")
    run("preparer", "add", "prep-1", "--dir", "city")
    run("partner", "enrol", "library", "--dir", "city", "--attributes", "pseudonym,resident,name,age_over_65",
        "--out", "library.cred")
    run("trust", "export", "--dir", "city", "--out", "liege.bundle")
    (d / "alex.json").write_text(json.dumps({"resident_id": "F-0001", "name": "Alex Moreau",
                                             "birth_date": "1958-03-14", "address": "Rue Léopold 12"}))
    run("personalise", "--dir", "city", "--station", "desk-1", "--reader", "emulated:cards",
        "--prepare-with", "prep-1", "--resident", "alex.json")
    return d


def test_genuine(city):
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state",
                                       city / "liege.bundle", city / "library.cred"))
    assert r["verdict"] == "genuine" and r["code"] == 0
    assert r["attributes"] == {"name": "Alex Moreau", "resident": True, "age_over_65": True}
    assert len(r["pseudonym"]) == 32
    again = citycard_reader.verify(f"emulated:{city}/cards/card-000001.state",
                                   city / "liege.bundle", city / "library.cred")
    assert again["pseudonym"] == r["pseudonym"]


def test_less_than_granted(city):
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state", city / "liege.bundle",
                                       city / "library.cred", attributes=["resident"]))
    assert r["attributes"] == {"resident": True}
    assert "pseudonym" not in r


def test_more_than_granted_is_unauthorised(city):
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state", city / "liege.bundle",
                                       city / "library.cred", attributes=["birth_date"]))
    assert (r["verdict"], r["code"], r["not_granted"]) == ("unauthorised", 14, ["birth_date"])
    assert citycard_reader.VERDICT_CODES[r["verdict"]] == r["code"]


def test_errors_are_documents(city):
    r = checked(citycard_reader.verify(f"emulated:{city}/nothing.card", city / "liege.bundle",
                                       city / "library.cred", wait_secs=0))
    assert (r["error"], r["code"]) == ("no_card", 1)
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state", city / "alex.json",
                                       city / "library.cred"))
    assert (r["error"], r["code"]) == ("trust_unusable", 3)
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state", city / "liege.bundle",
                                       city / "library.cred", root_fingerprint="00" * 32))
    assert (r["error"], r["code"]) == ("trust_unusable", 3)
    r = checked(citycard_reader.verify(f"emulated:{city}/cards/card-000001.state", city / "liege.bundle",
                                       city / "library.cred", stale="sometimes"))
    assert (r["error"], r["code"]) == ("usage", 2)
