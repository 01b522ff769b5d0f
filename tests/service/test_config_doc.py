"""docs/configuration.md is generated from the config models and must match them."""

import typing
from pathlib import Path

import yaml
from pydantic import BaseModel

from slewguard.service import config_doc
from slewguard.service.config import ServiceConfig, config_from_dict
from slewguard.service.config.sinks import SinkConfig
from slewguard.service.sinks import registry

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
REGENERATE = "python -m slewguard.service.config_doc > docs/configuration.md"


def _models(model: type[BaseModel], seen: list) -> list[type[BaseModel]]:
    """Every model reachable from ``model`` through its field annotations (walked here, not by
    the generator, so a section the generator skips fails the test)."""
    if model in seen:
        return seen
    seen.append(model)
    for field in model.model_fields.values():
        stack = [field.annotation]
        while stack:
            annotation = stack.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                _models(annotation, seen)
            stack.extend(typing.get_args(annotation))
    return seen


def test_committed_page_is_current():
    assert PAGE.is_file(), f"docs/configuration.md is missing: run `{REGENERATE}`"
    assert PAGE.read_text(encoding="utf-8") == config_doc.render(), (
        f"docs/configuration.md is stale: run `{REGENERATE}` and commit it")


def test_every_field_of_every_section_is_documented_with_its_description():
    page = config_doc.render()
    models = _models(ServiceConfig, [])
    assert len(models) >= 12  # top level, mqtt, tls, sensors, bearing, model, ..., webhooks
    # a sinks entry is documented once per type, with that type's keys
    models = [m for m in models if m is not SinkConfig]
    for key in registry.TYPES:
        assert f"## sinks.&lt;name&gt; with type: {key} {{#sinks-name-{key}}}" in page
        models.append(registry.config_class(key))
    for model in models:
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in page, f"{model.__name__}.{name} missing"
            assert field.description, f"{model.__name__}.{name} has no description"
            first_words = " ".join(field.description.split()[:3])
            assert config_doc._escape(first_words) in page, f"{model.__name__}.{name}"


def test_defaults_and_limits_come_from_the_fields():
    page = config_doc.render()
    assert "| `port` | integer (>= 1, <= 65535) | `1883` |" in page
    assert "| `site` | text (length >= 1, matching `^[A-Za-z0-9_.-]+$`) | **required** |" in page
    assert "Environment: `SLEWGUARD_SENSORS__<N>__<KEY>`" in page
    assert "Environment: `SLEWGUARD_ALERTS__WEBHOOKS__<N>__<KEY>`" in page


def test_the_pages_minimal_config_is_valid():
    yaml_block = config_doc.HEADER.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = config_from_dict(yaml.safe_load(yaml_block), env={})
    assert cfg.sensors[0].bearing.preset == "slew-4pc-1000"
