"""Exports: providers, readers, the Prometheus endpoint, the Pushgateway, set-up and shutdown."""
