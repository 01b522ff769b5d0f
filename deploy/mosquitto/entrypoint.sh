#!/bin/sh
# Write the password file from the environment, then run the broker.
set -eu
mkdir -p /mosquitto/config
: > /mosquitto/config/passwd
mosquitto_passwd -b /mosquitto/config/passwd "$MQTT_USER" "$MQTT_PASSWORD"
mosquitto_passwd -b /mosquitto/config/passwd "$MQTT_SIM_USER" "$MQTT_SIM_PASSWORD"
chown mosquitto:mosquitto /mosquitto/config/passwd && chmod 0700 /mosquitto/config/passwd
exec mosquitto -c /mosquitto/mosquitto.conf
