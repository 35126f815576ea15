"""ilastik pixel classification as a service."""
