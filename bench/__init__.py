"""Benchmarks of the gateway on a real Kafka broker and a real PostgreSQL (`make bench`).

Not part of the test run. Each benchmark runs its baseline in the same run and prints ratios;
`python -m bench` runs them all and writes the figures to `.local/bench/`.
"""
