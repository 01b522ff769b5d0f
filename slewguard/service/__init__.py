"""The edge daemon: MQTT in, diagnosis out, to InfluxDB and Prometheus, losing nothing."""
