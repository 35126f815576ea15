"""One reader module per format family; the registry (``ilastikbackend.data.registry``) imports them on use."""
