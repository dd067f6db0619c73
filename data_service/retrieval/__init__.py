"""Retrieval-augmented pairs: passages from a corpus, found by BM25 for each prompt at prepare time, and
put before the prompt in each pairs row, where they are read but take no loss.

``options`` checks the preparation options, ``corpus`` reads the passages, ``leaks`` finds the passages
built from val examples, ``index`` builds and searches the BM25 index, ``context`` makes each row's
context and the ``retrieval`` stats.
"""
