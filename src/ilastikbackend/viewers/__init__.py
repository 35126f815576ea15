"""Clients that look at the services: the volumina data source (the browser viewer is served by the gateway)."""
