"""Code every gateway service needs: event contract, fold, settings, database and Kafka access."""
