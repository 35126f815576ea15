"""Raw data sources, read lazily by region."""

from ilastikbackend.data.sources import DataSource, DataSourceError, Hdf5Source, open_source

__all__ = ["DataSource", "DataSourceError", "Hdf5Source", "open_source"]
