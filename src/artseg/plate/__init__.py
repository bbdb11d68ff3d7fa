"""Run a whole plate: streaming predict with resume, per-image results, plate report, CellProfiler outputs.

One module per concern:

- `names`     Operetta/Harmony file names -> plate, well, field, plane, channel
- `manifest`  the prediction folder's record of finished images (append-only JSONL), its lock
- `outputs`   the files written per image and `cellprofiler.csv`
- `pipeline`  decode / predict / write overlapped on threads, bounded queues
- `scale`     the same work sharded over local processes or a Dask cluster
- `run`       one run end to end: lock, resume, predict, then the tables and the report
- `results`   results.parquet + results.csv
- `report`    the self-contained HTML plate report
- `cli`       `artseg predict` and `artseg report`
"""
