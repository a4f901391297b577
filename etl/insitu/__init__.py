"""In situ station data: parsers of ISMN downloads and of the generic CSV format, and their loader.

- ``sources``: find the files in folders and zip archives, refusing unsafe zip members;
- ``ismn_stm``: ``.stm`` data files (header+values and CEOP), the usual lines read at once by
  ``tokens`` (vectorised); ``static_csv``: static variables;
  ``csv_format``: the generic CSV stations and observations tables (see ``CSV_FORMAT.md``);
- ``load``: write parsed files into PostGIS (``sql/003_insitu.sql``), idempotently;
- ``surface``: the surface soil moisture rule and the analysts' queries.

``service.ingest`` wires them together, one transaction per file.
"""
