"""The executor signs with libsecp256k1 (coincurve), not eth-keys' pure-Python fallback: the
fallback costs ~20x more CPU per signature and was the executor's limit in the chain benchmark
(docs/benchmarks.md §4, docs/decisions.md)."""

from __future__ import annotations

from eth_account import Account
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend

from localinfra.dev_keys import DEV_ACCOUNTS


def test_eth_keys_signs_with_coincurve() -> None:
    assert isinstance(KeyAPI().backend, CoinCurveECCBackend)


def test_a_signature_from_coincurve_recovers_to_the_signer() -> None:
    address, key = DEV_ACCOUNTS[2]  # anvil's public dev key: public test data
    signed = Account.sign_transaction(
        {
            "to": "0x" + "11" * 20,
            "value": 0,
            "gas": 21_000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
            "nonce": 0,
            "chainId": 31337,
            "type": 2,
        },
        key,
    )
    assert Account.recover_transaction(signed.raw_transaction) == address
