"""Raw data sources, read lazily by region: HDF5, TIFF (files and slice folders), Zarr and N5."""

from ilastikbackend.data.sources import (
    DataSource,
    DataSourceError,
    Hdf5Source,
    TensorStoreSource,
    TiffSource,
    open_source,
)

__all__ = ["DataSource", "DataSourceError", "Hdf5Source", "TensorStoreSource", "TiffSource", "open_source"]
