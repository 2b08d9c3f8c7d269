"""YAML files handed to the guard and its CLI are loaded with bounds (app/security/safe_yaml.py).

A 400-byte "billion laughs" config made ``config validate`` (and ``serve``, which reads the same file)
spin for good; an alias inside its own anchor or 5,000 nested brackets ended in a RecursionError
traceback. Now each is "not valid YAML" naming the problem and its line: exit 2, no traceback. The
CLI's ``--recovery-file`` and ``channels add --from-file`` say the same before sending anything.
Anchors, aliases and merge keys of ordinary size still work."""

from __future__ import annotations

import pytest
import yaml

from app.security.safe_yaml import MAX_DEPTH, load_yaml
from tests.foundation.test_cli import run

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE = {
    "laughs": (LAUGHS, "expands to more than"),
    "cycle": ("a: &a [*a]\n", "an alias refers to a node that contains it"),
    "deep": ("a: " + "[" * 5000 + "]" * 5000 + "\n", f"nested deeper than {MAX_DEPTH} levels"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_config_validate_refuses_a_hostile_file(tmp_path, kind):
    text, reason = HOSTILE[kind]
    path = tmp_path / "guard.yaml"
    path.write_text(text)
    result = run("config", "validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not valid YAML" in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_cli_files_are_refused_before_anything_is_sent(tmp_path, kind):
    text, reason = HOSTILE[kind]
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    unused = {"PIPELINE_URL": "http://127.0.0.1:9", "PIPELINE_TOKEN": "not-used"}
    for args in (
        [
            "components",
            "add",
            "etl",
            "--check-kind",
            "heartbeat",
            "--period",
            "1h",
            "--recovery-file",
            str(path),
        ],
        ["channels", "add", "--from-file", str(path)],
    ):
        result = run(*args, env=unused)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        # typer draws the usage error in a box that wraps long lines: read it without the frame.
        output = " ".join((result.stdout + result.stderr).replace("│", " ").split())
        assert "not valid YAML" in output and "Traceback" not in output, output


def test_ordinary_anchors_and_merge_keys_still_load():
    text = "defaults: &d {interval: 30s, timeout: 5s}\nweb: {<<: *d, url: x}\nboth: [*d, *d]\n"
    assert load_yaml(text) == yaml.safe_load(text)
    wide = "items:\n" + "".join(f"  - {{name: c{i}, labels: {{team: data}}}}\n" for i in range(2000))
    assert load_yaml(wide) == yaml.safe_load(wide)
    nested = "a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2) + "\n"
    assert load_yaml(nested) == yaml.safe_load(nested)
