// SPDX-License-Identifier: MIT
// The gateway's development stand-in for Akave's Storage contract: the same ABI for every call
// the gateway makes (createBucket, getBucketByName, getBucketIndexByName, deleteBucket, the
// CreateBucket/DeleteBucket events and the bucket errors), written for this project from those
// interface facts alone. Buckets only: no files, no access control, no upgrade proxy.
pragma solidity 0.8.37;

contract Storage {
    struct Bucket {
        bytes32 id;
        string name;
        uint256 createdAt;
        address owner;
        bytes32[] files;
    }

    error BucketAlreadyExists();
    error BucketInvalid();
    error BucketInvalidOwner();
    error BucketNonempty();
    error BucketNonexists();

    event CreateBucket(bytes32 indexed id, string indexed name, address indexed owner);
    event DeleteBucket(bytes32 indexed id, string indexed name, address indexed owner);

    mapping(bytes32 => Bucket) private buckets;
    // Each owner's bucket ids; deleteBucket takes the id's position here (swap and pop).
    mapping(address => bytes32[]) private ownerBucketIds;

    // Names are unique per owner: the id is keccak256(name bytes ‖ owner's 20 address bytes).
    function bucketId(string memory bucketName, address owner) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes(bucketName), owner));
    }

    function createBucket(string calldata bucketName) external returns (bytes32) {
        bytes32 id = bucketId(bucketName, msg.sender);
        if (buckets[id].id != bytes32(0)) revert BucketAlreadyExists();
        Bucket storage bucket = buckets[id];
        bucket.id = id;
        bucket.name = bucketName;
        bucket.createdAt = block.timestamp;
        bucket.owner = msg.sender;
        ownerBucketIds[msg.sender].push(id);
        emit CreateBucket(id, bucketName, msg.sender);
        return id;
    }

    // A missing bucket (or one of another owner) is the zero struct, not a revert.
    function getBucketByName(
        string calldata bucketName,
        address owner,
        uint256 fileOffset,
        uint256 fileLimit
    ) external view returns (Bucket memory) {
        Bucket storage bucket = buckets[bucketId(bucketName, owner)];
        Bucket memory result;
        if (bucket.id == bytes32(0)) return result;
        result.id = bucket.id;
        result.name = bucket.name;
        result.createdAt = bucket.createdAt;
        result.owner = bucket.owner;
        uint256 total = bucket.files.length;
        uint256 start = fileOffset < total ? fileOffset : total;
        uint256 count = fileLimit < total - start ? fileLimit : total - start;
        result.files = new bytes32[](count);
        for (uint256 i = 0; i < count; i++) result.files[i] = bucket.files[start + i];
        return result;
    }

    function getBucketIndexByName(
        string calldata bucketName,
        address owner
    ) external view returns (uint256, bool) {
        bytes32 id = bucketId(bucketName, owner);
        bytes32[] storage ids = ownerBucketIds[owner];
        for (uint256 i = 0; i < ids.length; i++) {
            if (ids[i] == id) return (i, true);
        }
        return (0, false);
    }

    function deleteBucket(
        bytes32 id,
        string calldata bucketName,
        uint256 index
    ) external returns (bool) {
        Bucket storage bucket = buckets[id];
        if (bucket.id == bytes32(0)) revert BucketNonexists();
        if (bucket.owner != msg.sender) revert BucketInvalidOwner();
        if (bucketId(bucketName, msg.sender) != id) revert BucketInvalid();
        if (bucket.files.length != 0) revert BucketNonempty();
        bytes32[] storage ids = ownerBucketIds[msg.sender];
        if (index >= ids.length || ids[index] != id) revert BucketInvalid();
        ids[index] = ids[ids.length - 1];
        ids.pop();
        delete buckets[id];
        emit DeleteBucket(id, bucketName, msg.sender);
        return true;
    }
}
