"""The notifier: turns BucketCreated/BucketFailed events into signed webhook deliveries."""
