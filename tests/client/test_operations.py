"""The SDK's methods are plain, typed methods that repeat their request builder's signature.

``app/client/operations.py`` writes each API method once for both clients; its signature must match
the builder in ``app/client/calls.py`` it hands its arguments to, or a parameter would be dropped or
passed to the wrong place. These checks need no guard: they read signatures.
"""

from __future__ import annotations

import inspect

import pytest

from app.client import AsyncGuardClient, GuardClient
from app.client import calls as client_calls
from app.client.operations import Operations

BUILDERS = {op.__name__: op for op in client_calls.OPERATIONS}


def _without_self(method) -> list[inspect.Parameter]:
    return list(inspect.signature(method).parameters.values())[1:]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_each_method_repeats_its_builders_signature(name):
    method = getattr(Operations, name)
    assert _without_self(method) == list(inspect.signature(BUILDERS[name]).parameters.values())
    assert method.__doc__, f"{name} has no docstring"


def test_every_method_is_defined_in_the_class_body_not_attached_later():
    written = {
        name
        for name, value in vars(Operations).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert written == set(BUILDERS)
    for client in (GuardClient, AsyncGuardClient):
        assert all(getattr(client, name) is getattr(Operations, name) for name in BUILDERS)


def test_every_builder_is_listed():
    builders = {
        name
        for name, value in vars(client_calls).items()
        if inspect.isfunction(value)
        and value.__module__ == client_calls.__name__
        and inspect.signature(value).return_annotation == "Call"
    }
    assert builders - {"record_batch"} == set(BUILDERS)
