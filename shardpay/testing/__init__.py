"""Tools to test shardpay and programs built on it, shipped with the package.

* :mod:`shardpay.testing.model`: the reference model of the semantics, a
  plain single-process oracle (``python -m shardpay.testing.model FILE``).
* :mod:`shardpay.testing.generate`: deterministic input files by scenario
  (``shardpay generate ROWS OUT --seed S``).
* :mod:`shardpay.testing.strategies`: hypothesis strategies for input files
  and rows (needs ``pip install 'shardpay[test]'``).
"""
