"""`make bench`: reproducible benchmarks of Switchyard on the embedded stack.

`python -m bench.run` seeds its own warehouse, starts its own Temporal dev server, webhook
simulator and workers on free ports under `.state/bench`, and compares Switchyard's full
sync with a plain Python loop (the machine's floor) and with dlt; results go to
`bench/results.{json,md,png}`.
"""
