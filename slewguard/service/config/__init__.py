"""The daemon's configuration: one pydantic tree read from YAML plus environment overrides.

Every model forbids unknown keys and describes every field; units are in the names. Environment
variables ``SLEWGUARD_<SECTION>__<KEY>`` (``__`` between levels) override the file: text verbatim
(a password may start with ``[`` or be ``null``), flow YAML or JSON only for list and mapping
fields. Secrets belong there: ``SLEWGUARD_MQTT__PASSWORD``, ``SLEWGUARD_SINKS__INFLUX__TOKEN``.
``load_config`` raises ``ConfigError`` listing every error with its key path.

One module per section (``mqtt``, ``sensors``, ``model``, ``evidence``, ``ingest``, ``sinks``,
``http``, ``log``, ``alerts``); ``root`` holds ``ServiceConfig``, ``env`` the overrides and
``load`` the YAML reading and error messages. Import a section's classes from its module.

Example:
    >>> sensor = {"topic_filter": "plant/+/+/+/+/vib", "bearing": "slew-4pc-1000"}
    >>> cfg = config_from_dict({"site": "yard1", "sensors": [sensor]},
    ...                        env={"SLEWGUARD_MQTT__PORT": "1884"})
    >>> cfg.mqtt.port
    1884
    >>> try:
    ...     config_from_dict({"site": "yard1", "sensors": [sensor], "mqtt": {"prot": 1}}, env={})
    ... except ConfigError as exc:
    ...     print(exc.errors[0][:60])
    mqtt.prot: Extra inputs are not permitted (allowed: client_i
"""

from __future__ import annotations

from slewguard.service.config.base import ConfigError
from slewguard.service.config.load import config_from_dict, load_config
from slewguard.service.config.root import ServiceConfig

__all__ = ["ConfigError", "ServiceConfig", "config_from_dict", "load_config"]
