"""The chain client behind the `evm` backend: JSON-RPC, signing keys, and the transaction
manager that keeps many transactions of one key in flight; every signed transaction is followed
to its outcome.

Seams for the executor's job flow:
- `Journal`: awaited with every new signed `Attempt` before it is broadcast (persist before
  broadcast); the job flow turns attempts into events.
- `TransactionManager.create(name, journal)`: sign, record, broadcast, follow to an `Outcome`.
- `TransactionManager.resume(attempts, journal)`: after a restart, follow a job's recorded
  attempts to their outcome, never signing a new create while one of them could be mined;
  `follow(attempts, journal)` holds their nonces at once and returns the outcome's future.
- `TransactionManager.status()`: one `LaneStatus` per key, for /health and the lane gauges.
- `LaneObserver`: told of replacements, re-broadcasts, final transactions and reverts as they
  happen (the executor's chain metrics implement it).
"""
