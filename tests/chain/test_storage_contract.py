"""Our development Storage contract behaves as Akave's for every call the gateway makes: the
same tests run against both, on a real anvil chain (Akave's skips where its artifacts are not
beside the repo). And the committed artifact is what the source compiles to."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.contract import Contract

from localinfra import solc
from localinfra.anvil import LocalAnvil
from localinfra.dev_keys import DEV_ACCOUNTS
from shared import storage_contract

OWNER_KEY = DEV_ACCOUNTS[5][1]
OTHER_KEY = DEV_ACCOUNTS[6][1]
OWNER = Account.from_key(OWNER_KEY).address
OTHER = Account.from_key(OTHER_KEY).address
ZERO_ID = bytes(32)
CREATE_BUCKET_TOPIC = keccak(text="CreateBucket(bytes32,string,address)")


class Storage:
    """A deployed Storage contract, driven with signed transactions as the gateway will."""

    def __init__(self, chain: LocalAnvil, address: str) -> None:
        self.w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        self.contract: Contract = self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=storage_contract.abi()
        )

    def transact(self, key: str, function: str, *args: Any) -> Any:
        sender = Account.from_key(key).address
        call = getattr(self.contract.functions, function)(*args)
        tx = call.build_transaction(
            {
                "from": sender,
                "nonce": self.w3.eth.get_transaction_count(sender, "pending"),
                "gas": 500_000,  # fixed: estimating would refuse a reverting call
            }
        )
        signed = Account.sign_transaction(tx, key)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)

    def call(self, function: str, *args: Any, sender: str = OWNER) -> Any:
        return getattr(self.contract.functions, function)(*args).call({"from": sender})

    def revert_data(self, function: str, *args: Any, sender: str = OWNER) -> bytes:
        """The raw revert data of a call (custom error selector + arguments)."""
        data = getattr(self.contract.functions, function)(*args)._encode_transaction_data()
        try:
            self.w3.eth.call({"from": sender, "to": self.contract.address, "data": data})
        except Exception as exc:  # web3 raises ContractCustomError / ContractLogicError
            found = getattr(exc, "data", None)
            assert isinstance(found, str), f"no revert data in {exc!r}"
            return bytes.fromhex(found.removeprefix("0x"))
        raise AssertionError(f"{function}{args} did not revert")


@pytest.fixture(params=["ours", "akave"])
def storage(request: pytest.FixtureRequest, anvil_chain: LocalAnvil) -> Storage:
    fixture = "storage_address" if request.param == "ours" else "akave_storage_address"
    return Storage(anvil_chain, request.getfixturevalue(fixture))


def unique_name() -> str:
    return f"bucket-{uuid.uuid4().hex[:12]}"


def expected_id(name: str, owner: str) -> bytes:
    return keccak(name.encode() + bytes.fromhex(owner[2:]))


def test_create_returns_the_id_of_name_and_owner(storage: Storage) -> None:
    name = unique_name()
    assert storage.call("createBucket", name) == expected_id(name, OWNER)
    receipt = storage.transact(OWNER_KEY, "createBucket", name)
    assert receipt.status == 1


def test_view_by_name_and_owner(storage: Storage) -> None:
    name = unique_name()
    receipt = storage.transact(OWNER_KEY, "createBucket", name)
    mined_at = storage.w3.eth.get_block(receipt.blockNumber).timestamp
    bucket = storage.call("getBucketByName", name, OWNER, 0, 0)
    assert tuple(bucket) == (expected_id(name, OWNER), name, mined_at, OWNER, [])
    index, exists = storage.call("getBucketIndexByName", name, OWNER)
    assert exists and index >= 0


def test_missing_and_other_owners_buckets_are_the_zero_struct(storage: Storage) -> None:
    name = unique_name()
    zero = (ZERO_ID, "", 0, "0x0000000000000000000000000000000000000000", [])
    assert tuple(storage.call("getBucketByName", name, OWNER, 0, 0)) == zero
    storage.transact(OWNER_KEY, "createBucket", name)
    assert tuple(storage.call("getBucketByName", name, OTHER, 0, 0, sender=OTHER)) == zero
    assert tuple(storage.call("getBucketByName", name, OTHER, 0, 0)) == zero
    assert storage.call("getBucketIndexByName", name, OTHER) == [0, False]


def test_a_second_create_by_the_same_owner_reverts_with_bucket_already_exists(
    storage: Storage,
) -> None:
    name = unique_name()
    assert storage.transact(OWNER_KEY, "createBucket", name).status == 1
    assert storage.revert_data("createBucket", name) == storage_contract.BUCKET_ALREADY_EXISTS
    assert storage.transact(OWNER_KEY, "createBucket", name).status == 0  # mined, reverted
    # names are unique per owner: another owner may take the same name
    assert storage.transact(OTHER_KEY, "createBucket", name).status == 1
    other = storage.call("getBucketByName", name, OTHER, 0, 0, sender=OTHER)
    assert other[0] == expected_id(name, OTHER) != expected_id(name, OWNER)


def test_the_create_bucket_log(storage: Storage) -> None:
    name = unique_name()
    receipt = storage.transact(OWNER_KEY, "createBucket", name)
    logs = [log for log in receipt.logs if log.topics[0] == CREATE_BUCKET_TOPIC]
    assert len(logs) == 1
    (log,) = logs
    assert log.address == storage.contract.address
    assert [bytes(t) for t in log.topics] == [
        CREATE_BUCKET_TOPIC,
        expected_id(name, OWNER),
        keccak(text=name),
        bytes(12) + bytes.fromhex(OWNER[2:]),
    ]
    (event,) = storage.contract.events.CreateBucket().process_receipt(receipt)
    assert event.args.id == expected_id(name, OWNER) and event.args.owner == OWNER


def test_delete(storage: Storage) -> None:
    name = unique_name()
    storage.transact(OWNER_KEY, "createBucket", name)
    bucket_id = expected_id(name, OWNER)
    index, exists = storage.call("getBucketIndexByName", name, OWNER)
    assert exists
    assert storage.call("deleteBucket", bucket_id, name, index) is True
    assert storage.transact(OWNER_KEY, "deleteBucket", bucket_id, name, index).status == 1
    assert storage.call("getBucketByName", name, OWNER, 0, 0)[0] == ZERO_ID
    assert storage.call("getBucketIndexByName", name, OWNER) == [0, False]
    assert storage.transact(OWNER_KEY, "createBucket", name).status == 1  # the name is free again
    assert storage.call("getBucketByName", name, OWNER, 0, 0)[0] == bucket_id


@pytest.mark.slow
def test_the_committed_artifact_is_what_the_source_compiles_to() -> None:
    committed = json.loads(solc.ARTIFACT.read_text())
    assert solc.render(solc.build()) == solc.ARTIFACT.read_text(), (
        "shared/storage_contract.json is out of date: run python -m localinfra.solc"
    )
    assert committed["compiler"].startswith(f"solcjs {solc.SOLC_VERSION}+")
    assert committed["abi"] == storage_contract.abi()


def error_selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_delete_refusals(storage: Storage) -> None:
    name = unique_name()
    bucket_id = expected_id(name, OWNER)
    assert storage.revert_data("deleteBucket", bucket_id, name, 0) == error_selector(
        "BucketNonexists()"
    )
    storage.transact(OWNER_KEY, "createBucket", name)
    index, _ = storage.call("getBucketIndexByName", name, OWNER)
    refusals = {
        "BucketInvalidOwner()": storage.revert_data(
            "deleteBucket", bucket_id, name, index, sender=OTHER
        ),
        "BucketInvalid()": storage.revert_data("deleteBucket", bucket_id, name + "x", index),
    }
    for signature, data in refusals.items():
        assert data == error_selector(signature), signature
    # a wrong index reverts (Akave's panics out of bounds, ours says BucketInvalid)
    assert storage.revert_data("deleteBucket", bucket_id, name, index + 1000)
    assert storage.call("getBucketByName", name, OWNER, 0, 0)[0] == bucket_id  # still there
