"""Extract, transform, load: the grid, source adapters, readers, regridding, in situ parsers, the synthetic world."""
