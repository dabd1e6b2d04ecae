"""shardpay: exact, multi-core payment-transaction batch engine.

CSV transactions (deposit, withdrawal, dispute, resolve, chargeback) in,
one balance row per client account out. See ``../shared/SPEC.md`` for the
contract and ``shardpay.engine`` for the process architecture.
"""
