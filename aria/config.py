"""Configuration: JSON-schema validation with messages that name the bad key."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

__all__ = ["ConfigError", "load_schema", "validate_config"]


class ConfigError(ValueError):
    """Raised for an invalid workflow configuration."""


def load_schema() -> dict:
    return json.loads(resources.files("aria").joinpath("schemas/config.schema.json").read_text())


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_config(config: dict, *, source: str = "config") -> dict:
    """Validate ``config`` against the schema; return it unchanged if valid.

    Raises
    ------
    ConfigError
        Listing every problem, one per line; unknown keys are named with their
        full dotted path and the allowed keys.
    """
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            unknown = sorted(set(err.instance) - set(allowed))
            for key in unknown:
                problems.append(
                    f"unknown key '{_where([*err.path, key])}' (allowed here: {', '.join(allowed) or 'none'})")
        else:
            problems.append(f"{_where(err.path)}: {err.message}")
    if not problems:
        methods = config["methods"]
        for m in methods["run"]:
            if m in ("trak", "tracin") and m not in methods:
                problems.append(f"methods.run lists '{m}' but methods.{m} is missing")
        kind = config["corpus"]["kind"]
        if kind not in config["corpus"]:
            problems.append(f"corpus.kind is '{kind}' but corpus.{kind} is missing")
        elif kind == "demo":
            from aria.symbolic.corpus import quotas
            demo = config["corpus"]["demo"]
            cols = demo["collections"]
            for (name, n), n_eval in zip(cols.items(), quotas(demo["n_eval"], len(cols))):
                if n_eval >= n:
                    problems.append(f"corpus.demo.collections.{name}: {n} pieces leave none for "
                                    f"training after its {n_eval} eval pieces")
        hom = config["homogeneity"]
        if hom["main_k"] not in hom["ks"]:
            problems.append(f"homogeneity.main_k ({hom['main_k']}) must be one of homogeneity.ks {hom['ks']}")
        if config["queries"]["prompt_tokens"] >= config["segments"]["block_tokens"]:
            problems.append("queries.prompt_tokens must be smaller than segments.block_tokens")
        if config["model"]["d_model"] % config["model"]["n_heads"]:
            problems.append("model.d_model must be divisible by model.n_heads")
    if problems:
        raise ConfigError(f"invalid {source}:\n  - " + "\n  - ".join(problems))
    return config
