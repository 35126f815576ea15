"""The HTTP services: data provider, pixel classification, gateway, and the block worker."""
